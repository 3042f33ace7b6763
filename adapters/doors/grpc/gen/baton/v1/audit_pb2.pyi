from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyLogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyLogResponse(_message.Message):
    __slots__ = ("intact", "checked", "decision_id", "chain_seq", "problem")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    checked: int
    decision_id: str
    chain_seq: int
    problem: str
    def __init__(self, intact: _Optional[bool] = ..., checked: _Optional[int] = ..., decision_id: _Optional[str] = ..., chain_seq: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...
