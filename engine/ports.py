"""The ports: everything the pure core needs from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class CallRequest:
    """A model or tool call the engine wants made. ``request`` is what identifies it and is recorded
    (PII masked); ``payload`` is what the gateway sends when it differs (the unmasked prompt). Not frozen:
    the loop makes one per call, and a frozen dataclass sets each field through ``object.__setattr__``;
    nothing changes one after it is made."""

    action: str
    kind: str  # "model" | "tool"
    request: dict[str, object]
    produces: str
    schema: dict[str, object]
    retries: int
    timeout_s: float
    payload: dict[str, object] = field(default_factory=dict, compare=False)
    check: Callable[[object], str] | None = field(default=None, compare=False)  # "" when the answer fits
    secrets: tuple[str, ...] = field(default=(), compare=False)  # PII values to mask in anything stored

    @property
    def sent(self) -> dict[str, object]:
        return self.payload or self.request


@dataclass(slots=True)
class CallResult:
    """The outcome of a call: an answer (a record, a list of records, or None) or a failure."""

    answer: object = None
    failure_kind: str = ""  # "" on success; timeout | error | invalid_answer | budget | unanswered | ...
    error: str = ""
    attempts: int = 1
    meta: dict[str, object] = field(default_factory=dict)  # model used, tokens, cost_usd, fallbacks...
    # answered from the record of the escalated decision this one resumes: paid for there, so its cost and
    # tokens are not this decision's (they still count against its budget)
    carried: bool = False

    @property
    def ok(self) -> bool:
        return not self.failure_kind


class ModelGateway(Protocol):
    async def complete(self, call: CallRequest) -> CallResult: ...


class ToolConnector(Protocol):
    async def call(self, call: CallRequest) -> CallResult: ...


@runtime_checkable
class ImmediateAnswers(Protocol):
    """A port that answers from memory (recorded answers): the loop skips scheduling a task."""

    def answer_now(self, call: CallRequest) -> CallResult | None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, seconds since the epoch (for timestamps in records)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (for latencies and deadlines)."""
        ...


class IdFactory(Protocol):
    def new_id(self) -> str: ...
