"""Replay a stored decision exactly, or against another ruleset version (what-if).

An exact replay re-runs the stored inputs on the stored ruleset version with the recorded model and
tool answers (matched by action and request; never a live call) and compares the new trace with the
stored one event by event, naming the first divergence - as Temporal's replayer does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.clock import FixedClock
from engine.documents import Document
from engine.errors import InvalidInput
from engine.loop import Decision, Engine, HumanInput, Limits
from engine.ports import ModelGateway, ToolConnector
from engine.record import DecisionRecord
from engine.recorded import ReplayAnswers

# Not compared per event: timings, and the winner mark, which is set at the end of a decision and so is
# compared there (outcome and rule), not at the proposal's early place in the trace.
VOLATILE = ("latency_ms", "won")


class _SameId:
    def __init__(self, decision_id: str) -> None:
        self.decision_id = decision_id

    def new_id(self) -> str:
        return self.decision_id


def stable(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in VOLATILE}


@dataclass(slots=True)
class Divergence:
    index: int  # position in the trace (0-based); -1 for a difference in the outcome only
    what: str
    expected: Any
    got: Any


@dataclass(slots=True)
class ReplayResult:
    identical: bool
    divergence: Divergence | None
    record: Decision | None
    unanswered: list[dict[str, object]] = field(default_factory=list)


@dataclass(slots=True)
class WhatIf:
    decision_id: str
    old: dict[str, Any]  # outcome, decision, reason, rule
    new: dict[str, Any]
    fired_only_before: list[str]
    fired_only_after: list[str]
    unanswered: list[dict[str, object]]
    error: str = ""
    live: list[dict[str, object]] = field(default_factory=list)
    record: DecisionRecord | None = None  # the candidate's whole decision, when asked for (keep=True)

    @property
    def changed(self) -> bool:
        return bool(self.error) or self.old != self.new


def _summary(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"outcome": record["outcome"], "decision": record["decision"], "reason": record["reason"],
            "rule": record["rule"]}


def facts_of(record: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A stored decision's input facts in the shape Decide takes them."""
    facts: dict[str, list[Any]] = {}
    for item in record["inputs"]:
        facts.setdefault(item["type"], []).append(item["values"])
    return facts


def stored_limits(record: Mapping[str, Any]) -> Limits:
    """The limits a stored decision ran under (what replay and resumption run it under again)."""
    stored = record.get("limits")
    limits = stored if isinstance(stored, Mapping) else {}

    def number(key: str) -> Any:
        value = limits.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    step_limit = number("step_limit")
    out = Limits(step_limit=int(step_limit) if step_limit is not None else None, max_calls=number("max_calls"),
                 max_cost_usd=number("max_cost_usd"))
    combinations = number("max_combinations")  # recorded only when not the default
    if combinations is not None:
        out.max_combinations = int(combinations)
    return out


async def _rerun(engine: Engine, record: Mapping[str, Any], live_models: ModelGateway | None = None,
                 live_tools: ToolConnector | None = None, documents: Sequence[Document] = ()
                 ) -> tuple[Decision, ReplayAnswers]:
    answers = ReplayAnswers(list(record["trace"]), live_models, live_tools)
    validated = engine.validate_input(facts_of(record), allow_empty=bool(record.get("documents")))
    clock = FixedClock(float(record.get("started_at") or 0.0))
    limits = stored_limits(record)
    limits.merged_rows = merged_rows(engine, record)
    d = await engine.run(validated, answers, answers, clock, _SameId(str(record["decision_id"])),
                         limits, human_inputs(record), str(record.get("resumes") or ""),
                         _in_order(record, documents), list(record.get("documents") or []))
    return d, answers


def merged_rows(engine: Engine, record: Mapping[str, Any]) -> bool:
    """Was this decision made before a multi-hit table's facts carried their ``row`` (so equal rows were one
    fact)? Its replay asserts them as they were then."""
    return any(e.get("kind") == "fact" and e.get("by") in engine.multi_rows and "row" not in (e.get("values") or {})
               for e in record.get("trace") or ())


def human_inputs(record: Mapping[str, Any]) -> list[HumanInput]:
    """The reviewers' answers a stored (resumed) decision received, in order."""
    return [HumanInput(str(e["type"]), dict(e["values"]), str(e.get("by", ""))) for e in record["trace"]
            if e.get("kind") == "fact" and e.get("source") == "human"]


def first_divergence(expected: Mapping[str, Any], got: Mapping[str, Any]) -> Divergence | None:
    old_trace, new_trace = expected["trace"], got["trace"]
    for i in range(max(len(old_trace), len(new_trace))):
        old = old_trace[i] if i < len(old_trace) else None
        new = new_trace[i] if i < len(new_trace) else None
        if old == new:  # the same with its volatile fields too (most events have none): nothing to strip
            continue
        a = stable(old) if old is not None else None
        b = stable(new) if new is not None else None
        if a != b:
            return Divergence(i, "trace event", a, b)
    for key in ("outcome", "decision", "reason", "rule", "fired"):
        if expected[key] != got[key]:
            return Divergence(-1, key, expected[key], got[key])
    return None


def _in_order(record: Mapping[str, Any], documents: Sequence[Document]) -> list[Document]:
    """The record's documents, in the record's order (the store hands them back by id)."""
    by_id = {d.id: d for d in documents}
    return [by_id[ref["id"]] for ref in record.get("documents") or () if ref.get("id") in by_id]


async def replay(engine: Engine, record: Mapping[str, Any], documents: Sequence[Document] = ()) -> ReplayResult:
    """Re-run ``record`` on ``engine`` (which must hold the record's ruleset version). A record that
    read documents needs them (by id, from the store); without them, its extractions diverge."""
    if engine.ruleset.version != record["version"]:
        raise ValueError("replay needs the record's own ruleset version; use what_if for another")
    d, answers = await _rerun(engine, record, documents=documents)
    divergence = first_divergence(record, d.to_dict())
    return ReplayResult(divergence is None, divergence, d, answers.unanswered)


async def what_if(engine: Engine, record: Mapping[str, Any], live_models: ModelGateway | None = None,
                  live_tools: ToolConnector | None = None, documents: Sequence[Document] = (),
                  keep: bool = False) -> WhatIf:
    """Run a stored decision's inputs on another ruleset version, reusing recorded answers; a call never
    recorded is ``unanswered``, or made live through the ports given."""
    try:
        d, answers = await _rerun(engine, record, live_models, live_tools, documents)
    except InvalidInput as e:
        return WhatIf(str(record["decision_id"]), _summary(record), {}, [], [], [],
                      error=f"the stored inputs do not fit this ruleset: {e.message}")
    before, after = Counter(record["fired"]), Counter(d.fired)
    return WhatIf(str(record["decision_id"]), _summary(record), _summary(d.to_dict()),
                  sorted((before - after).elements()), sorted((after - before).elements()), answers.unanswered,
                  live=answers.live, record=d.to_dict() if keep else None)
