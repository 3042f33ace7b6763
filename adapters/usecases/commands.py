"""What the use cases take and give, apart from the use cases themselves: a door builds a command and reads an
answer without importing the store, the writer or the engine's network (a CLI command that decides nothing
stays light)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.infra.documents import DEFAULT_MAX_BYTES
from engine.codes import Code
from engine.errors import BatonError, Where
from engine.loop import Engine, Limits
from engine.record import DecisionRecord


@dataclass(frozen=True, slots=True)
class RawDocument:
    """A document as the caller sent it, read by the use case (after the facts are found valid)."""

    name: str
    content: bytes
    media_type: str = ""


@dataclass(slots=True, kw_only=True)
class DecideCommand:
    caller: str
    ruleset: str = ""
    version: str = ""  # a version hash or prefix; "": the one in effect
    facts: Any = field(default_factory=dict)  # {type: fact} or {type: [fact, ...]}, as sent
    # or, from a door whose facts each carry their type: [(type, fact), ...] in the order sent (``facts`` unused)
    typed_facts: Sequence[tuple[str, Any]] | None = None
    key: str | None = None  # the idempotency key
    documents: Sequence[RawDocument] = ()
    deadline_s: float | None = None  # the request's own; None: limits.deadline_s
    request_id: str = ""  # the caller's correlation id, for the decision-log line
    engine: Engine | None = None  # a ruleset version the door chose itself (`baton decide --db FILE`)
    # the same key with another request refused; False where the key names the message itself (intake: a broker
    # message id is re-sent with the same body, and a redelivered message must be answered, never dead-lettered)
    same_request: bool = True
    fresh: bool = False  # known never seen before (a first delivery): no lookup; the store's own check still holds


@dataclass(frozen=True, slots=True)
class Answer:
    record: DecisionRecord
    replayed: bool = False  # an idempotent replay: the decision stored earlier under the same key

    @property
    def out_of_time(self) -> bool:
        """Decided and stored, but failed because its deadline passed (gRPC answers DEADLINE_EXCEEDED)."""
        return self.record["outcome"] == "failed" and str(self.record["reason"]).startswith("deadline")


class Refused(BatonError):
    """A request refused by Decide's own checks; ``stored``: a decision stored before the error, if any."""

    def __init__(self, code: Code, message: str, field_path: str = "", problem: str = "",
                 stored: DecisionRecord | None = None) -> None:
        super().__init__(code.value, message, Where(path=field_path) if field_path else None)
        self.problem = problem or message
        self.stored = stored


def late(what: str = "this request") -> Refused:
    return Refused(Code.DEADLINE_EXCEEDED, f"the call's deadline passed before {what} started: nothing was "
                   f"decided or stored for it")


@dataclass(slots=True, kw_only=True)
class DecideLimits:
    """The configured limits (service config ``limits:``) a decision runs under."""

    engine: Limits = field(default_factory=Limits)  # its deadline_s: the default deadline of a request
    max_inflight: int = 512
    max_document_bytes: int = DEFAULT_MAX_BYTES
    max_batch: int = 1000  # requests in one batch
    batch_parallel: int = 32  # requests of one batch or stream decided at once
