import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RulesetInfo(_message.Message):
    __slots__ = ("name", "version", "description", "rules", "tests", "loaded_at", "published_at", "published_by", "active", "effective_from", "approved_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    rules: int
    tests: int
    loaded_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    published_by: str
    active: bool
    effective_from: _timestamp_pb2.Timestamp
    approved_by: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., rules: _Optional[int] = ..., tests: _Optional[int] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_by: _Optional[str] = ..., active: _Optional[bool] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approved_by: _Optional[str] = ...) -> None: ...

class ListRulesetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRulesetsResponse(_message.Message):
    __slots__ = ("rulesets",)
    RULESETS_FIELD_NUMBER: _ClassVar[int]
    rulesets: _containers.RepeatedCompositeFieldContainer[RulesetInfo]
    def __init__(self, rulesets: _Optional[_Iterable[_Union[RulesetInfo, _Mapping]]] = ...) -> None: ...

class GetRulesetRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetRulesetResponse(_message.Message):
    __slots__ = ("ruleset", "source")
    RULESET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ruleset: RulesetInfo
    source: str
    def __init__(self, ruleset: _Optional[_Union[RulesetInfo, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class CompileError(_message.Message):
    __slots__ = ("code", "message", "line", "column", "hint")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    line: int
    column: int
    hint: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ..., hint: _Optional[str] = ...) -> None: ...

class ValidateRulesetRequest(_message.Message):
    __slots__ = ("source", "file_name")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    source: str
    file_name: str
    def __init__(self, source: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class ValidateRulesetResponse(_message.Message):
    __slots__ = ("valid", "errors", "name", "version", "warnings")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[CompileError]
    name: str
    version: str
    warnings: _containers.RepeatedCompositeFieldContainer[CompileError]
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[CompileError, _Mapping]]] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., warnings: _Optional[_Iterable[_Union[CompileError, _Mapping]]] = ...) -> None: ...

class PublishRulesetRequest(_message.Message):
    __slots__ = ("source", "file_name", "note", "effective_from")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    source: str
    file_name: str
    note: str
    effective_from: _timestamp_pb2.Timestamp
    def __init__(self, source: _Optional[str] = ..., file_name: _Optional[str] = ..., note: _Optional[str] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishRulesetResponse(_message.Message):
    __slots__ = ("ruleset", "publication")
    RULESET_FIELD_NUMBER: _ClassVar[int]
    PUBLICATION_FIELD_NUMBER: _ClassVar[int]
    ruleset: RulesetInfo
    publication: Publication
    def __init__(self, ruleset: _Optional[_Union[RulesetInfo, _Mapping]] = ..., publication: _Optional[_Union[Publication, _Mapping]] = ...) -> None: ...

class Publication(_message.Message):
    __slots__ = ("id", "ruleset", "version", "status", "submitted_by", "submitted_at", "note", "requested_from", "effective_from", "decided_by", "decided_at", "decision_note")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FROM_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    DECISION_NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    ruleset: str
    version: str
    status: str
    submitted_by: str
    submitted_at: _timestamp_pb2.Timestamp
    note: str
    requested_from: _timestamp_pb2.Timestamp
    effective_from: _timestamp_pb2.Timestamp
    decided_by: str
    decided_at: _timestamp_pb2.Timestamp
    decision_note: str
    def __init__(self, id: _Optional[str] = ..., ruleset: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[str] = ..., submitted_by: _Optional[str] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ..., requested_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_by: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decision_note: _Optional[str] = ...) -> None: ...

class ApproveRulesetRequest(_message.Message):
    __slots__ = ("publication_id", "note")
    PUBLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    publication_id: str
    note: str
    def __init__(self, publication_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ApproveRulesetResponse(_message.Message):
    __slots__ = ("publication",)
    PUBLICATION_FIELD_NUMBER: _ClassVar[int]
    publication: Publication
    def __init__(self, publication: _Optional[_Union[Publication, _Mapping]] = ...) -> None: ...

class RejectRulesetRequest(_message.Message):
    __slots__ = ("publication_id", "note")
    PUBLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    publication_id: str
    note: str
    def __init__(self, publication_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RejectRulesetResponse(_message.Message):
    __slots__ = ("publication",)
    PUBLICATION_FIELD_NUMBER: _ClassVar[int]
    publication: Publication
    def __init__(self, publication: _Optional[_Union[Publication, _Mapping]] = ...) -> None: ...

class ListPublicationsRequest(_message.Message):
    __slots__ = ("ruleset", "status")
    RULESET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ruleset: str
    status: str
    def __init__(self, ruleset: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ListPublicationsResponse(_message.Message):
    __slots__ = ("publications",)
    PUBLICATIONS_FIELD_NUMBER: _ClassVar[int]
    publications: _containers.RepeatedCompositeFieldContainer[Publication]
    def __init__(self, publications: _Optional[_Iterable[_Union[Publication, _Mapping]]] = ...) -> None: ...

class DiffRulesetsRequest(_message.Message):
    __slots__ = ("from_version", "to_version", "to_source")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_SOURCE_FIELD_NUMBER: _ClassVar[int]
    from_version: str
    to_version: str
    to_source: str
    def __init__(self, from_version: _Optional[str] = ..., to_version: _Optional[str] = ..., to_source: _Optional[str] = ...) -> None: ...

class RulesetChange(_message.Message):
    __slots__ = ("kind", "what", "name", "details")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    what: str
    name: str
    details: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., what: _Optional[str] = ..., name: _Optional[str] = ..., details: _Optional[_Iterable[str]] = ...) -> None: ...

class DiffRulesetsResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[RulesetChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[RulesetChange, _Mapping]]] = ...) -> None: ...

class Shadow(_message.Message):
    __slots__ = ("id", "ruleset", "version", "attached_by", "attached_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_BY_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    ruleset: str
    version: str
    attached_by: str
    attached_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., ruleset: _Optional[str] = ..., version: _Optional[str] = ..., attached_by: _Optional[str] = ..., attached_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AttachShadowRequest(_message.Message):
    __slots__ = ("version", "source")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    source: str
    def __init__(self, version: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class AttachShadowResponse(_message.Message):
    __slots__ = ("shadow",)
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...

class DetachShadowRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class DetachShadowResponse(_message.Message):
    __slots__ = ("detached",)
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    detached: bool
    def __init__(self, detached: _Optional[bool] = ...) -> None: ...

class ShadowReportRequest(_message.Message):
    __slots__ = ("version", "since")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ShadowReportResponse(_message.Message):
    __slots__ = ("decisions", "changed", "unanswered", "changes", "ruleset", "version")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    UNANSWERED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    decisions: int
    changed: int
    unanswered: int
    changes: _containers.RepeatedCompositeFieldContainer[ImpactChange]
    ruleset: str
    version: str
    def __init__(self, decisions: _Optional[int] = ..., changed: _Optional[int] = ..., unanswered: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[ImpactChange, _Mapping]]] = ..., ruleset: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ImpactRequest(_message.Message):
    __slots__ = ("source", "last", "since")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    last: int
    since: _timestamp_pb2.Timestamp
    def __init__(self, source: _Optional[str] = ..., last: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ImpactProgress(_message.Message):
    __slots__ = ("done", "total")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ImpactChange(_message.Message):
    __slots__ = ("from_outcome", "to_outcome", "count", "example_decision_ids")
    FROM_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TO_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_DECISION_IDS_FIELD_NUMBER: _ClassVar[int]
    from_outcome: str
    to_outcome: str
    count: int
    example_decision_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_outcome: _Optional[str] = ..., to_outcome: _Optional[str] = ..., count: _Optional[int] = ..., example_decision_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ImpactSummary(_message.Message):
    __slots__ = ("decisions", "changed", "changes", "unanswered")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UNANSWERED_FIELD_NUMBER: _ClassVar[int]
    decisions: int
    changed: int
    changes: _containers.RepeatedCompositeFieldContainer[ImpactChange]
    unanswered: int
    def __init__(self, decisions: _Optional[int] = ..., changed: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[ImpactChange, _Mapping]]] = ..., unanswered: _Optional[int] = ...) -> None: ...

class ImpactResponse(_message.Message):
    __slots__ = ("progress", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: ImpactProgress
    summary: ImpactSummary
    def __init__(self, progress: _Optional[_Union[ImpactProgress, _Mapping]] = ..., summary: _Optional[_Union[ImpactSummary, _Mapping]] = ...) -> None: ...
