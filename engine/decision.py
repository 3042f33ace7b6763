"""What a decision is run under (``Limits``) and what it leaves (``Decision``, the record), a reviewer's
answer (``HumanInput``), and the exception that ends a decision as failed (``StopDecision``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.record import DecisionRecord, DocumentRef, InputFact, TraceEvent

Values = dict[str, object]
Event = TraceEvent


MAX_COMBINATIONS = 1_000_000


@dataclass(slots=True)
class Limits:
    step_limit: int | None = None  # None: the ruleset's (default 1,000 firings)
    deadline_s: float | None = None  # None: the ruleset's, or no deadline
    max_calls: int | None = None  # model calls per decision; None: the ruleset's budget, or none
    max_cost_usd: float | None = None  # model cost per decision; None: the ruleset's budget, or none
    mask_pii: bool = True  # prompts are recorded with pii fields masked
    # replaying a decision made before multi-hit tables' facts carried `row` (equal rows were one fact then)
    merged_rows: bool = False
    # combinations of facts one multi-pattern rule may have to consider (the product of its patterns' fact
    # counts): durable-rules builds each one, about 350 bytes apiece, before any guard runs - a self-join of
    # three over 1,000 facts is 10^9 of them. Over it the decision fails, naming the rule's fact types.
    max_combinations: int = MAX_COMBINATIONS

    def with_deadline(self, deadline_s: float | None) -> Limits:
        """These limits with another deadline (what ``dataclasses.replace`` gives, made directly: a service
        makes one per decision)."""
        return Limits(self.step_limit, deadline_s, self.max_calls, self.max_cost_usd, self.mask_pii,
                      self.merged_rows, self.max_combinations)


DEFAULT_LIMITS = Limits()  # read, never changed, by a decision given no limits


@dataclass(slots=True)
class Decision:
    """The decision record: everything needed to explain and replay one decision."""

    decision_id: str
    ruleset: str
    version: str
    inputs: list[InputFact]
    outcome: str = "no_decision"
    decision: Values = field(default_factory=dict)
    reason: str = ""
    rule: str = ""
    fired: list[str] = field(default_factory=list)
    trace: list[Event] = field(default_factory=list)
    steps: int = 0
    rounds: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    latency_ms: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    limits: dict[str, object] = field(default_factory=dict)
    escalation: dict[str, object] = field(default_factory=dict)  # queue, reason, expects, sla_s, rule
    resumes: str = ""  # the id of the escalated decision this one resumes
    documents: list[DocumentRef] = field(default_factory=list)  # id, name, media_type, pages, chars (no text)

    def to_dict(self) -> DecisionRecord:
        out: DecisionRecord = {
            "decision_id": self.decision_id, "ruleset": self.ruleset, "version": self.version,
            "inputs": self.inputs, "outcome": self.outcome, "decision": self.decision, "reason": self.reason,
            "rule": self.rule, "fired": self.fired, "trace": self.trace, "steps": self.steps,
            "rounds": self.rounds, "calls": self.calls, "cost_usd": self.cost_usd, "tokens": self.tokens,
            "latency_ms": self.latency_ms, "started_at": self.started_at, "finished_at": self.finished_at,
            "limits": self.limits, "escalation": self.escalation, "resumes": self.resumes,
        }
        if self.documents:  # only when there are some: records without documents stay as they were
            out["documents"] = self.documents
        return out


@dataclass(frozen=True, slots=True)
class HumanInput:
    """A reviewer's answer: a validated fact, and who gave it."""

    type: str
    values: Values
    by: str


class StopDecision(Exception):
    """Ends a decision as failed with ``reason`` (a limit passed, a value that cannot be computed, ...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
