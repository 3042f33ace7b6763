import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RulesetInfo(_message.Message):
    __slots__ = ("name", "version", "description", "rules", "tests", "loaded_at", "published_at", "published_by", "active")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    rules: int
    tests: int
    loaded_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    published_by: str
    active: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., rules: _Optional[int] = ..., tests: _Optional[int] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_by: _Optional[str] = ..., active: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("valid", "errors", "name", "version")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[CompileError]
    name: str
    version: str
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[CompileError, _Mapping]]] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class PublishRulesetRequest(_message.Message):
    __slots__ = ("source", "file_name")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    source: str
    file_name: str
    def __init__(self, source: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class PublishRulesetResponse(_message.Message):
    __slots__ = ("ruleset",)
    RULESET_FIELD_NUMBER: _ClassVar[int]
    ruleset: RulesetInfo
    def __init__(self, ruleset: _Optional[_Union[RulesetInfo, _Mapping]] = ...) -> None: ...

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
