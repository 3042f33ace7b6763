"""The decision loop: rounds, concurrent calls, answers as facts, failures, limits, determinism, cleanup."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import durable_rules_engine as core
import pytest

from adapters.infra.system import SystemClock
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine, Limits
from engine.ports import CallRequest, CallResult
from engine.recorded import RecordedAnswers
from tests.helpers import decide, ruleset, strip_timing

ROOT = Path(__file__).resolve().parents[2]

CALLS = """\
ruleset: calls
facts:
  claim: {ref: str, amount: number}
  policy: {ref: str, active: bool}
  verdict: {label: {enum: [ok, bad]}, confidence: number}
input: [claim]
models:
  judge:
    group: fast
    produces: verdict
    prompt: "Judge claim {{ claim.ref }} of {{ claim.amount }}"
tools:
  lookup:
    connector: sql
    query: select ref, active from policies where ref = :ref
    params: {ref: claim.ref}
    produces: policy
rules:
  - name: ask
    when: exists claim
    then: [judge, lookup]
  - name: ask-again
    when: exists claim
    then: judge
  - name: good
    when: verdict.label == "ok" and policy.active
    then: {decide: {route: pay}}
  - name: model-down
    priority: 50
    when: failure.action == "judge"
    then: {escalate: {queue: review, reason: model unavailable}}
  - name: no-policy
    when: exists claim and not exists policy
    then: {decide: {route: reject}}
"""


class SlowPorts:
    """A model gateway and tool connector that answer after a delay, counting concurrency."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.calls: list[CallRequest] = []

    async def _answer(self, call: CallRequest, answer: object) -> CallResult:
        self.calls.append(call)
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(self.delay)  # kept: a slow port is the behaviour under test
        self.active -= 1
        return CallResult(answer=answer, meta={"cost_usd": 0.001, "total_tokens": 10})

    async def complete(self, call: CallRequest) -> CallResult:
        return await self._answer(call, {"label": "ok", "confidence": 0.9})

    async def call(self, call: CallRequest) -> CallResult:
        return await self._answer(call, {"ref": "C1", "active": True})


def test_calls_in_a_round_run_concurrently_and_once_per_request() -> None:
    engine = Engine(ruleset(CALLS))
    ports = SlowPorts(0.3)
    start = time.monotonic()
    d = asyncio.run(engine.decide({"claim": {"ref": "C1", "amount": 5}}, ports, ports, SystemClock(),
                                  SequentialIds()))
    elapsed = time.monotonic() - start
    assert ports.peak == 2 and len(ports.calls) == 2  # judge fired twice with one request: called once
    assert elapsed < 0.55, elapsed  # two 0.3 s calls side by side, not 0.6 s in a row
    assert d.outcome == "decided" and d.decision == {"route": "pay"}
    assert d.fired == ["ask", "ask-again", "no-policy", "good"]
    assert ports.calls[0].request == {"group": "fast", "prompt": "Judge claim C1 of 5", "produces": "verdict"}
    assert ports.calls[1].request["params"] == {"ref": "C1"}
    assert d.calls == 2 and d.cost_usd == pytest.approx(0.002) and d.tokens == 20
    facts = [(e["type"], e["source"], e["round"]) for e in d.trace if e["kind"] == "fact"]
    assert facts == [("claim", "input", 1), ("verdict", "model", 2), ("policy", "tool", 2)]


def test_failed_call_becomes_a_failure_fact_and_the_escalation_wins() -> None:
    rs = ruleset(CALLS)
    d = decide(rs, {"claim": {"ref": "C1", "amount": 5}},
               {"judge": {"failure": {"kind": "timeout", "error": "no answer in 10s"}},
                "lookup": {"ref": "C1", "active": True}})
    assert d.outcome == "escalated" and d.decision == {"queue": "review"} and d.rule == "model-down"
    failure = next(e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure")
    assert failure["values"] == {"action": "judge", "kind": "timeout", "error": "no answer in 10s"}


def test_an_answer_that_does_not_fit_its_type_is_a_failure_not_a_fact() -> None:
    d = decide(ruleset(CALLS), {"claim": {"ref": "C1", "amount": 5}},
               {"judge": {"label": "excellent", "confidence": 2}, "lookup": {"ref": "C1", "active": True}})
    assert d.rule == "model-down"
    failure = next(e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure")["values"]
    assert failure["kind"] == "invalid_answer" and "judge.answer.label" in failure["error"]


def test_tool_answer_of_no_rows_asserts_nothing() -> None:
    d = decide(ruleset(CALLS), {"claim": {"ref": "C1", "amount": 5}},
               {"judge": {"label": "ok", "confidence": 1}, "lookup": [[]]})
    assert d.decision == {"route": "reject"}


def test_deadline_fails_the_decision_and_records_cancelled_calls() -> None:
    engine = Engine(ruleset(CALLS))
    ports = SlowPorts(5.0)
    start = time.monotonic()
    d = asyncio.run(engine.decide({"claim": {"ref": "C1", "amount": 5}}, ports, ports, SystemClock(),
                                  SequentialIds(), Limits(deadline_s=0.2)))
    assert time.monotonic() - start < 1.0
    assert d.outcome == "failed" and "deadline" in d.reason
    assert [e["status"] for e in d.trace if e["kind"] == "call"] == ["cancelled", "cancelled"]


def test_same_inputs_and_answers_give_identical_records_100_times() -> None:
    engine = Engine(ruleset((ROOT / "rulesets/claims-triage.yaml").read_text(), "claims-triage.yaml"))
    test = engine.ruleset.tests[0]
    records = []
    for _ in range(100):
        recorded = RecordedAnswers(test.answers)
        d = asyncio.run(engine.decide(test.given, recorded, recorded, FixedClock(), SequentialIds()))
        records.append(json.dumps(strip_timing(d.to_dict()), sort_keys=True))
    assert len(set(records)) == 1


def test_a_thousand_decisions_leave_no_live_engine_sessions() -> None:
    engine = Engine(ruleset(CALLS))
    answers = {"judge": {"label": "ok", "confidence": 0.5}, "lookup": {"ref": "C1", "active": True}}
    for i in range(1000):
        facts = {"claim": {"ref": f"C{i}", "amount": i}}
        if i % 7 == 0:
            d = decide(engine, facts, answers, Limits(step_limit=1))  # stops mid-agenda
            assert d.outcome == "failed"
        else:
            assert decide(engine, facts, answers).outcome == "decided"
    assert engine.pool.live_sessions == 0
    handle = engine.pool.handles[0].handle
    for sid in ("s1", f"s{engine.pool.counter}"):
        with pytest.raises(core.error):
            core.get_state(handle, sid)


@pytest.mark.slow
def test_more_than_a_thousand_live_sessions_use_more_engine_handles() -> None:
    engine = Engine(ruleset(CALLS))
    ports = SlowPorts(0.2)

    async def many() -> list[str]:
        coros = [engine.decide({"claim": {"ref": f"C{i}", "amount": i}}, ports, ports, SystemClock(),
                               SequentialIds()) for i in range(2500)]
        return [d.outcome for d in await asyncio.gather(*coros)]

    assert set(asyncio.run(many())) == {"decided"}
    assert len(engine.pool.handles) >= 3 and engine.pool.live_sessions == 0


def test_an_effect_of_a_proposing_rule_is_sent_only_if_its_proposal_wins() -> None:
    from tests.helpers import decide as decide_with
    from tests.helpers import ruleset as load

    rs = load("""
    ruleset: effects
    facts:
      claim: {amount: number}
    rules:
      - name: pay
        when: claim.amount < 100
        then:
          - effect: {name: payments, with: {amount: "{{ claim.amount }}"}}
          - decide: {route: pay}
      - name: fraud
        priority: 10
        when: claim.amount == 13
        then: {decide: {route: fraud}}
      - name: audit
        when: exists claim
        then: {effect: {name: audit-log}}
    """)
    won = decide_with(rs, {"claim": {"amount": 5}})
    effects = {e["name"]: e for e in won.trace if e["kind"] == "effect"}
    assert won.decision == {"route": "pay"} and not effects["payments"].get("cancelled")
    assert effects["payments"]["if_wins"] and "if_wins" not in effects["audit-log"]
    lost = decide_with(rs, {"claim": {"amount": 13}})
    effects = {e["name"]: e for e in lost.trace if e["kind"] == "effect"}
    assert lost.decision == {"route": "fraud"} and effects["payments"]["cancelled"] is True
    assert not effects["audit-log"].get("cancelled")


def test_limits_with_a_new_deadline_keep_every_other_limit() -> None:
    import dataclasses

    from engine.loop import Limits

    # a field added to Limits must be added to with_deadline too (and here)
    assert [f.name for f in dataclasses.fields(Limits)] == ["step_limit", "deadline_s", "max_calls", "max_cost_usd",
                                                            "mask_pii", "merged_rows", "max_combinations"]
    limits = Limits(step_limit=7, deadline_s=1.0, max_calls=3, max_cost_usd=0.5, mask_pii=False, merged_rows=True,
                    max_combinations=99)
    assert limits.with_deadline(2.5) == dataclasses.replace(limits, deadline_s=2.5)
    assert limits.with_deadline(None) == dataclasses.replace(limits, deadline_s=None)
