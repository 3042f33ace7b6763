"""The shape of a decision record and of its trace events: what the engine produces, the store keeps (and
hashes), replay re-runs, and every door and reader (gRPC, console, CLI, logs, metrics) reads. Typed so
that a change of shape is seen by mypy wherever a field is read, not found by an auditor years later.

A record is plain JSON data (dicts, lists, strings, numbers) - TypedDicts, not classes - because it is
canonicalised and hashed as stored, and records written by every earlier Baton must still read as one.
Fields added over time are ``NotRequired``: older records lack them."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

EventKind = Literal["fact", "fired", "call", "proposal", "effect", "stopped"]


# One step of a decision, in order; ``kind`` says which group of fields below it has. (The functional form:
# an effect's arguments are stored under "with", a Python keyword.)
TraceEvent = TypedDict("TraceEvent", {
    "kind": Required[str],  # an EventKind
    "round": int,
    "step": int,
    "rule": str,
    # fact: a fact asserted (input, document, model/tool answer, rule, reviewer)
    "seq": int,
    "type": str,  # fact: its type; call: "model" or "tool"
    "values": dict[str, Any],
    "source": str,  # input, document, call, rule, human
    "by": str,  # who answered (a reviewer)
    "provenance": dict[str, Any],  # where in a document a fact was read
    # fired: a rule firing and the facts it matched
    "facts": dict[str, int],  # each pattern's binding name -> the seq of the fact it matched
    "branch": int,  # which branch of an `or` condition
    "aggregates": dict[str, Any],  # the aggregate values the firing saw
    "definitions": dict[str, Any],  # the values of the definitions (define:) its condition names
    # call: a model or tool call
    "call": int,
    "action": str,
    "request": dict[str, Any],
    "status": str,  # ok, failed, cancelled
    "attempts": int,
    "latency_ms": float,
    "answer": Any,
    "failure": dict[str, Any],  # kind, error
    "carried": bool,  # answered from the escalated decision this one resumes (paid for there)
    "meta": dict[str, Any],  # model, tokens, cost_usd, ...
    # proposal: a rule's proposed outcome
    "verb": str,  # decide, escalate, ...
    "payload": dict[str, Any],
    "reason": str,
    "priority": int,
    "won": bool,
    "superseded": bool,  # a summary rule's proposal replaced by its own later one (same facts, new totals)
    # stopped: a final rule fired and the decision stopped
    "stopped_by": str,
    # effect: something to do once the decision is stored
    "n": int,
    "name": str,
    "with": dict[str, Any],
    "if_wins": bool,  # done only if the rule's proposal wins
    "cancelled": bool,
}, total=False)


class InputFact(TypedDict):
    type: str
    values: dict[str, Any]


class DocumentRef(TypedDict):
    id: str  # SHA-256 of the content
    name: str
    media_type: str
    pages: int
    chars: int


class DecisionRecord(TypedDict):
    decision_id: str
    ruleset: str
    version: str  # the ruleset version's content hash
    inputs: list[InputFact]
    outcome: str  # decided, escalated, no_decision, failed
    decision: dict[str, Any]
    reason: str
    rule: str  # the rule whose proposal won
    fired: list[str]
    trace: list[TraceEvent]
    steps: int
    rounds: int
    calls: int
    cost_usd: float
    tokens: int
    latency_ms: float
    started_at: float
    finished_at: float
    limits: dict[str, Any]
    escalation: dict[str, Any]  # queue, reason, expects, sla_s, rule
    resumes: str  # the escalated decision this one resumes
    documents: NotRequired[list[DocumentRef]]  # only when it read some
    queued_ms: NotRequired[float]  # the wait in the server before the engine ran (set by the door)
    caller: NotRequired[str]  # as stored: who asked
    idempotency_key: NotRequired[str | None]  # as stored
