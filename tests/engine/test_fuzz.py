"""No input reaches a crash path: random facts, answers and conditions give a record or a clear error.

A crash in the C core takes the whole process down, so "the test process is still alive" is the
assertion that matters; each example also checks the shape of what came back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock, SequentialIds
from engine.compile import compile_ruleset
from engine.errors import BatonError, CompileErrors, InvalidInput
from engine.loop import Engine, WorkingMemory
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset

ROOT = Path(__file__).resolve().parents[2]
RULESET = ruleset((ROOT / "rulesets/claims-triage.yaml").read_text(), "claims-triage.yaml")
ENGINE = Engine(RULESET)  # small: one guard-only network
INDEXED = Engine(RULESET, compile_ruleset(RULESET, indexed=True, shard_rules=3, shard_slots=4))  # index and shards

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
    st.sampled_from(["", "staged", "injury", "gold", "standard", "1e+20", "\x00", "\ud800", "a" * 5000,
                     '{"sid": "x"}', "~", "__start"]),
    st.sampled_from([1e20, 1e-05, 1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=4),
                      max_leaves=12)
CLAIM_KEYS = ["claim_ref", "amount", "policy_ref", "description", "customer_tier"]


def claim_like() -> st.SearchStrategy[dict[str, Any]]:
    good = st.fixed_dictionaries({
        "claim_ref": st.text(max_size=20), "amount": st.floats(min_value=0, max_value=1e300) | st.integers(0, 2**60),
        "policy_ref": st.text(max_size=20), "description": st.text(max_size=200),
        "customer_tier": st.sampled_from(["standard", "gold"]),
    })
    mutated = st.tuples(good, st.sampled_from([*CLAIM_KEYS, "extra", "sid", "id"]), values).map(
        lambda t: {**t[0], t[1]: t[2]})
    dropped = st.tuples(good, st.sampled_from(CLAIM_KEYS)).map(lambda t: {k: v for k, v in t[0].items() if k != t[1]})
    return st.one_of(good, mutated, dropped)


answers = st.fixed_dictionaries({
    "classify": st.one_of(values, st.fixed_dictionaries({
        "category": st.sampled_from(["auto", "property", "injury", "other", "bogus"]),
        "confidence": st.floats(allow_nan=True), "fraud_signals": st.lists(st.text(max_size=10), max_size=3)})),
    "lookup_policy": st.one_of(values, st.fixed_dictionaries({
        "policy_ref": st.text(max_size=10), "active": st.booleans(), "coverage_limit": st.floats()})),
})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=st.one_of(values, st.fixed_dictionaries({"claim": st.one_of(claim_like(), st.lists(claim_like(),
                                                                                            max_size=3), values)})),
       recorded=answers)
@pytest.mark.slow
def test_random_requests_never_crash(facts: Any, recorded: dict[str, Any]) -> None:
    outcomes: list[object] = []  # a code, or (outcome, fired), per engine
    for engine in (ENGINE, INDEXED):
        ports = RecordedAnswers(recorded)
        try:
            d = asyncio.run(engine.decide(facts, ports, ports, FixedClock(), SequentialIds()))
        except InvalidInput as e:
            assert e.code and e.where.path.startswith("facts")
            outcomes.append(e.code)
            continue
        assert d.outcome in {"decided", "escalated", "no_decision", "failed"}
        assert engine.pool.live_sessions == 0
        outcomes.append((d.outcome, d.fired))
    assert outcomes[0] == outcomes[1]


tokens = st.sampled_from(["claim", "policy", "assessment", "risk", ".", "amount", "active", "level", "and", "or",
                          "not", "exists", "in", "contains", "matches", "==", "<", ">=", "+", "*", "/", "-", "(",
                          ")", "[", "]", ",", '"x"', "5", "0", "true", "as", "a", "b", "fraud_signals", "'", '"',
                          "\\", "1e400"])


@settings(max_examples=400, deadline=None)
@given(when=st.lists(tokens, min_size=1, max_size=14).map(" ".join) | st.text(max_size=40))
@pytest.mark.slow
def test_random_conditions_compile_or_fail_cleanly(when: str) -> None:
    text = (ROOT / "rulesets/claims-triage.yaml").read_text().split("rules:")[0]
    quoted = when.replace("'", "''")
    try:
        rs = ruleset(text + f"rules:\n  - name: r\n    when: '{quoted}'\n    then: {{decide: {{route: x}}}}\n")
    except CompileErrors as e:
        assert all(err.code and err.where.line >= 1 for err in e.errors)
        return
    except BatonError as e:  # pragma: no cover - would mean an error escaped without a position
        raise AssertionError(f"error without CompileErrors: {e}") from e
    claim = {"claim_ref": "C", "amount": 5, "policy_ref": "P", "description": "d", "customer_tier": "gold"}
    seen = []
    for engine in (Engine(rs), Engine(rs, compile_ruleset(rs, indexed=True, shard_rules=3, shard_slots=4))):
        ports = RecordedAnswers({})
        d = asyncio.run(engine.decide({"claim": claim}, ports, ports, FixedClock(), SequentialIds()))
        assert d.outcome in {"decided", "no_decision"}
        seen.append((d.outcome, d.fired))
    assert seen[0] == seen[1]


def test_deeply_nested_and_huge_inputs_are_rejected_cleanly() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    huge = {"claim_ref": "C", "amount": 1, "policy_ref": "P", "description": "x" * 5_000_000,
            "customer_tier": "gold"}
    ports = RecordedAnswers({})
    for facts, code in (({"claim": deep}, "type_mismatch"), ({"claim": huge}, "too_long"),
                        ({"claim": {**huge, "description": "x", "amount": deep}}, "type_mismatch")):
        try:
            asyncio.run(ENGINE.decide(facts, ports, ports, FixedClock(), SequentialIds()))
        except InvalidInput as e:
            assert e.code == code
        else:
            raise AssertionError("accepted")


def test_a_session_closed_before_any_firing_is_deleted_safely() -> None:
    session = ENGINE.pool.open([(1, "claim", {"claim_ref": "C"})], WorkingMemory())
    session.close()
    assert ENGINE.pool.live_sessions == 0
