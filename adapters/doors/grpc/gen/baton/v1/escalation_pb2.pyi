import datetime

from adapters.doors.grpc.gen.baton.v1 import decision_pb2 as _decision_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Escalation(_message.Message):
    __slots__ = ("escalation_id", "decision_id", "ruleset", "queue", "reason", "expects", "expects_schema", "created_at", "sla_at", "status", "resolved_by", "resolved_at", "resumed_decision_id")
    ESCALATION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SLA_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    escalation_id: str
    decision_id: str
    ruleset: str
    queue: str
    reason: str
    expects: str
    expects_schema: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    sla_at: _timestamp_pb2.Timestamp
    status: str
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    resumed_decision_id: str
    def __init__(self, escalation_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., ruleset: _Optional[str] = ..., queue: _Optional[str] = ..., reason: _Optional[str] = ..., expects: _Optional[str] = ..., expects_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sla_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resumed_decision_id: _Optional[str] = ...) -> None: ...

class ListEscalationsRequest(_message.Message):
    __slots__ = ("queue", "status", "page_size")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    status: str
    page_size: int
    def __init__(self, queue: _Optional[str] = ..., status: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListEscalationsResponse(_message.Message):
    __slots__ = ("escalations",)
    ESCALATIONS_FIELD_NUMBER: _ClassVar[int]
    escalations: _containers.RepeatedCompositeFieldContainer[Escalation]
    def __init__(self, escalations: _Optional[_Iterable[_Union[Escalation, _Mapping]]] = ...) -> None: ...

class GetEscalationRequest(_message.Message):
    __slots__ = ("escalation_id",)
    ESCALATION_ID_FIELD_NUMBER: _ClassVar[int]
    escalation_id: str
    def __init__(self, escalation_id: _Optional[str] = ...) -> None: ...

class GetEscalationResponse(_message.Message):
    __slots__ = ("escalation", "facts")
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    escalation: Escalation
    facts: _containers.RepeatedCompositeFieldContainer[_decision_pb2.Fact]
    def __init__(self, escalation: _Optional[_Union[Escalation, _Mapping]] = ..., facts: _Optional[_Iterable[_Union[_decision_pb2.Fact, _Mapping]]] = ...) -> None: ...

class ResolveEscalationRequest(_message.Message):
    __slots__ = ("escalation_id", "answer")
    ESCALATION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    escalation_id: str
    answer: _struct_pb2.Struct
    def __init__(self, escalation_id: _Optional[str] = ..., answer: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ResolveEscalationResponse(_message.Message):
    __slots__ = ("escalation", "decision")
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    escalation: Escalation
    decision: _decision_pb2.Decision
    def __init__(self, escalation: _Optional[_Union[Escalation, _Mapping]] = ..., decision: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ...) -> None: ...
