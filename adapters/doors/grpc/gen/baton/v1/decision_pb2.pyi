import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_DECIDED: _ClassVar[Outcome]
    OUTCOME_ESCALATED: _ClassVar[Outcome]
    OUTCOME_FAILED: _ClassVar[Outcome]
    OUTCOME_NO_DECISION: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_DECIDED: Outcome
OUTCOME_ESCALATED: Outcome
OUTCOME_FAILED: Outcome
OUTCOME_NO_DECISION: Outcome

class Fact(_message.Message):
    __slots__ = ("type", "values")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    type: str
    values: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("ruleset", "version", "facts", "idempotency_key", "deadline", "documents")
    RULESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    ruleset: str
    version: str
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    idempotency_key: str
    deadline: _duration_pb2.Duration
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, ruleset: _Optional[str] = ..., version: _Optional[str] = ..., facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("name", "media_type", "content")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    content: bytes
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "ruleset", "version", "outcome", "decision", "reason", "rule", "fired", "cost_usd", "tokens", "latency_ms", "decided_at", "steps", "calls", "idempotent_replay", "documents", "queued_ms")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_REPLAY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_MS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    ruleset: str
    version: str
    outcome: Outcome
    decision: _struct_pb2.Struct
    reason: str
    rule: str
    fired: _containers.RepeatedScalarFieldContainer[str]
    cost_usd: float
    tokens: int
    latency_ms: float
    decided_at: _timestamp_pb2.Timestamp
    steps: int
    calls: int
    idempotent_replay: bool
    documents: _containers.RepeatedCompositeFieldContainer[DocumentRef]
    queued_ms: float
    def __init__(self, decision_id: _Optional[str] = ..., ruleset: _Optional[str] = ..., version: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., decision: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reason: _Optional[str] = ..., rule: _Optional[str] = ..., fired: _Optional[_Iterable[str]] = ..., cost_usd: _Optional[float] = ..., tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[int] = ..., calls: _Optional[int] = ..., idempotent_replay: _Optional[bool] = ..., documents: _Optional[_Iterable[_Union[DocumentRef, _Mapping]]] = ..., queued_ms: _Optional[float] = ...) -> None: ...

class DocumentRef(_message.Message):
    __slots__ = ("id", "name", "media_type", "pages", "chars")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    CHARS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    media_type: str
    pages: int
    chars: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., media_type: _Optional[str] = ..., pages: _Optional[int] = ..., chars: _Optional[int] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class DecideBatchRequest(_message.Message):
    __slots__ = ("requests", "idempotency_key")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DecideRequest]
    idempotency_key: str
    def __init__(self, requests: _Optional[_Iterable[_Union[DecideRequest, _Mapping]]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DecideBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DecideResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DecideResult, _Mapping]]] = ...) -> None: ...

class DecideResult(_message.Message):
    __slots__ = ("index", "idempotency_key", "decision", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    idempotency_key: str
    decision: Decision
    error: _status_pb2.Status
    def __init__(self, index: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class DecideStreamRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: DecideRequest
    def __init__(self, request: _Optional[_Union[DecideRequest, _Mapping]] = ...) -> None: ...

class DecideStreamResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: DecideResult
    def __init__(self, result: _Optional[_Union[DecideResult, _Mapping]] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decision", "record")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    record: _struct_pb2.Struct
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., record: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("ruleset", "outcome", "since", "until", "page_size", "page_token")
    RULESET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ruleset: str
    outcome: Outcome
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, ruleset: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions", "next_page_token")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    next_page_token: str
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class Divergence(_message.Message):
    __slots__ = ("index", "what", "expected", "got")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    GOT_FIELD_NUMBER: _ClassVar[int]
    index: int
    what: str
    expected: _struct_pb2.Value
    got: _struct_pb2.Value
    def __init__(self, index: _Optional[int] = ..., what: _Optional[str] = ..., expected: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., got: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ReplayDecisionResponse(_message.Message):
    __slots__ = ("identical", "divergence")
    IDENTICAL_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    identical: bool
    divergence: Divergence
    def __init__(self, identical: _Optional[bool] = ..., divergence: _Optional[_Union[Divergence, _Mapping]] = ...) -> None: ...

class WhatIfRequest(_message.Message):
    __slots__ = ("decision_id", "source", "version")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    source: str
    version: str
    def __init__(self, decision_id: _Optional[str] = ..., source: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class OutcomeSummary(_message.Message):
    __slots__ = ("outcome", "decision", "reason", "rule")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    decision: _struct_pb2.Struct
    reason: str
    rule: str
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., decision: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reason: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class Unanswered(_message.Message):
    __slots__ = ("action", "request")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    action: str
    request: _struct_pb2.Struct
    def __init__(self, action: _Optional[str] = ..., request: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WhatIfResponse(_message.Message):
    __slots__ = ("changed", "before", "after", "fired_only_before", "fired_only_after", "unanswered")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FIRED_ONLY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FIRED_ONLY_AFTER_FIELD_NUMBER: _ClassVar[int]
    UNANSWERED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    before: OutcomeSummary
    after: OutcomeSummary
    fired_only_before: _containers.RepeatedScalarFieldContainer[str]
    fired_only_after: _containers.RepeatedScalarFieldContainer[str]
    unanswered: _containers.RepeatedCompositeFieldContainer[Unanswered]
    def __init__(self, changed: _Optional[bool] = ..., before: _Optional[_Union[OutcomeSummary, _Mapping]] = ..., after: _Optional[_Union[OutcomeSummary, _Mapping]] = ..., fired_only_before: _Optional[_Iterable[str]] = ..., fired_only_after: _Optional[_Iterable[str]] = ..., unanswered: _Optional[_Iterable[_Union[Unanswered, _Mapping]]] = ...) -> None: ...

class WhyRuleRequest(_message.Message):
    __slots__ = ("decision_id", "rule")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    rule: str
    def __init__(self, decision_id: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class WhyRuleResponse(_message.Message):
    __slots__ = ("fired", "explanation")
    FIRED_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    fired: bool
    explanation: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fired: _Optional[bool] = ..., explanation: _Optional[_Iterable[str]] = ...) -> None: ...
