"""A resumed decision answers the escalated decision's calls from its record: those calls were paid for once,
by the escalated decision. The resumption's cost and tokens are its own live calls only - in the record, the
calls table, cost by ruleset and Prometheus - while the carried cost still counts against its budget, and the
resumption replays identically."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa

from adapters.infra import metrics
from adapters.infra.fakes import Unconfigured
from adapters.infra.store.sql import CALLS, SqlStore
from adapters.infra.store.writer import GroupWriter
from adapters.usecases.decisions import DecisionPath
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from engine.clock import FixedClock, SequentialIds
from engine.ports import CallRequest, CallResult
from engine.record import DecisionRecord
from engine.recorded import ReplayAnswers
from engine.replay import replay

RULESET = """
ruleset: priced-review
facts:
  request: {ref: str}
  score: {value: number}
  approval: {ref: str, by: str}
  confirmation: {ok: bool}
input: [request]
settings:
  budget: {max_cost_usd: BUDGET}
models:
  rate:
    group: fast
    produces: score
    prompt: "Rate {{ request.ref }}"
  confirm:
    group: fast
    produces: confirmation
    prompt: "Confirm {{ request.ref }} approved by {{ approval.by }}"
rules:
  - name: rate-it
    when: exists request
    then: rate
  - name: needs-approval
    when: exists score and not exists approval
    then:
      escalate: {queue: review, reason: "needs a person", expects: approval}
  - name: confirm-approval
    when: exists approval
    then: confirm
  - name: confirmed
    priority: 10
    when: confirmation.ok == true
    then:
      decide: {action: go, reason: "approved and confirmed"}
  - name: not-confirmed
    priority: 10
    when: failure.action == "confirm"
    then:
      decide: {action: hold, reason: "confirmation failed"}
"""
PRICES = {"rate": ({"value": 0.4}, 0.25, 100), "confirm": ({"ok": True}, 0.1, 40)}


class PricedModels:
    """A model gateway that charges for every call, as a real one reports it in the call's meta."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def complete(self, call: CallRequest) -> CallResult:
        self.calls.append(call.action)
        answer, cost, tokens = PRICES[call.action]
        return CallResult(answer=answer, meta={"model": "m-1", "cost_usd": cost, "total_tokens": tokens})


def resume(tmp_path: Path, db_url: str, budget: float) -> tuple[SqlStore, PricedModels, DecisionRecord,
                                                                 DecisionRecord]:
    (tmp_path / "rulesets").mkdir()
    (tmp_path / "rulesets" / "priced-review.yaml").write_text(
        textwrap.dedent(RULESET).lstrip().replace("BUDGET", str(budget)))
    store = SqlStore(db_url)
    registry = RulesetRegistry(store)
    registry.load_directory(tmp_path / "rulesets")
    writer = GroupWriter(store)
    models = PricedModels()
    escalations = Escalations(store, writer, registry, models, Unconfigured("tool"), FixedClock(1_700_000_000),
                              SequentialIds("r-"), path=DecisionPath(writer))

    async def run() -> tuple[DecisionRecord, DecisionRecord]:
        engine = registry.engine("priced-review")
        d = await engine.decide({"request": {"ref": "R-1"}}, models, Unconfigured("tool"),
                                FixedClock(1_700_000_000), SequentialIds("e-"))
        escalated = d.to_dict()
        await writer.save(escalated, "caller")
        _, resumed = await escalations.resolve(d.decision_id, {"ref": "R-1", "by": "carol"}, "reviewer")
        return escalated, resumed

    try:
        escalated, resumed = asyncio.run(run())
    finally:
        writer.close()
    return store, models, escalated, resumed


def test_a_resumption_pays_only_for_its_own_calls(tmp_path: Path, db_url: str) -> None:
    store, models, escalated, resumed = resume(tmp_path, db_url, budget=1.0)
    assert escalated["outcome"] == "escalated" and escalated["cost_usd"] == pytest.approx(0.25)
    assert models.calls == ["rate", "confirm"]  # the rate call was not made again
    assert resumed["outcome"] == "decided" and resumed["decision"]["action"] == "go"
    assert resumed["cost_usd"] == pytest.approx(0.1) and resumed["tokens"] == 40
    calls = [e for e in resumed["trace"] if e["kind"] == "call"]
    assert [(c["action"], c.get("carried", False)) for c in calls] == [("rate", True), ("confirm", False)]
    assert calls[0]["meta"]["cost_usd"] == 0.25  # what it cost is still on record, where it was carried from
    [row] = store.cost_by_ruleset()
    assert row["decisions"] == 2 and row["cost_usd"] == pytest.approx(0.35) and row["tokens"] == 140
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(CALLS.c.action, CALLS.c.cost_usd, CALLS.c.tokens).where(
            CALLS.c.decision_id == resumed["decision_id"]).order_by(CALLS.c.call_no)).all()
    assert [tuple(r) for r in rows] == [("rate", 0.0, 0), ("confirm", 0.1, 40)]
    assert store.verify()[1] is None and store.verify_one(resumed["decision_id"]) is None
    stored = store.get(resumed["decision_id"])
    assert stored is not None
    engine = RulesetRegistry(store).engine_for(resumed["version"])
    result = asyncio.run(replay(engine, stored))
    assert result.identical, result.divergence


def test_carried_cost_still_counts_against_the_budget(tmp_path: Path, db_url: str) -> None:
    # 0.25 spent before escalating: a 0.2 budget refuses the resumption's live call, though cost_usd is 0
    _, models, _, resumed = resume(tmp_path, db_url, budget=0.2)
    assert models.calls == ["rate"]
    assert resumed["decision"]["action"] == "hold" and resumed["cost_usd"] == 0
    [failed] = [e for e in resumed["trace"] if e["kind"] == "call" and e["action"] == "confirm"]
    assert failed["failure"]["kind"] == "budget"


def test_carried_calls_are_not_counted_again_in_metrics() -> None:
    record = cast(DecisionRecord, {"ruleset": "r", "outcome": "decided", "latency_ms": 1.0, "fired": [], "trace": [
        {"kind": "call", "type": "model", "action": "a", "status": "ok", "request": {"group": "g"}, "carried": True,
         "meta": {"model": "carried-model", "cost_usd": 5.0, "total_tokens": 9}},
        {"kind": "call", "type": "model", "action": "b", "status": "ok", "request": {"group": "g"},
         "meta": {"model": "live-model", "cost_usd": 1.0, "total_tokens": 3}}]})  # what observe reads
    before = {m: metrics.COST.labels("r", m)._value.get() for m in ("carried-model", "live-model")}
    metrics.observe(record)
    assert metrics.COST.labels("r", "carried-model")._value.get() == before["carried-model"]
    assert metrics.COST.labels("r", "live-model")._value.get() == before["live-model"] + 1.0


def test_replay_answers_keep_the_carried_mark() -> None:
    trace: list[dict[str, object]] = [
        {"kind": "call", "action": "a", "request": {"x": 1}, "status": "ok", "answer": {}, "carried": True},
        {"kind": "call", "action": "b", "request": {"x": 1}, "status": "ok", "answer": {}}]
    plain = ReplayAnswers(trace)
    assert [plain.by_request[k][0].carried for k in plain.by_request] == [True, False]
    resuming = ReplayAnswers(trace, carried=True)
    assert all(r[0].carried for r in resuming.by_request.values())
