"""The 'Precise semantics' of RULESETS.md, one behaviour per test: given facts and answers, expect
an outcome and a trace."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from tests.helpers import decide, ruleset

FACTS = """\
ruleset: sem
facts:
  claim:
    ref: str
    amount: number
    tier: {enum: [standard, gold]}
    tags: {type: list, items: str}
    note: {type: str, optional: true}
    score: {type: number, optional: true}
  policy:
    ref: str
    active: bool
    limit: number
  flag:
    name: str
input: [claim, policy]
"""


def claim(ref: str = "C1", amount: float = 100, tier: str = "standard", tags: list[str] | None = None,
          **extra: object) -> dict[str, object]:
    return {"ref": ref, "amount": amount, "tier": tier, "tags": tags or [], **extra}


def fired_for(when: str, facts: dict[str, object]) -> list[str]:
    rs = ruleset(FACTS + f"rules:\n  - name: r\n    when: '{when}'\n    then: {{decide: {{route: yes}}}}\n")
    return decide(rs, facts).fired


@pytest.mark.parametrize(("when", "fires"), [
    ("claim.amount == 100", True), ("claim.amount == 100.0", True), ("claim.amount != 100", False),
    ("claim.amount < 100", False), ("claim.amount <= 100", True), ("claim.amount > 99.5", True),
    ("claim.amount >= 101", False),
    ('claim.ref == "C1" and claim.tier == "standard"', True), ('claim.ref == "C1" and claim.tier == "gold"', False),
    ('claim.ref == "X" or claim.tier == "standard"', True), ("not claim.amount > 1000", True),
    ('claim.tier in ["gold", "standard"]', True), ('claim.tier not in ["gold", "standard"]', False),
    ("claim.amount in [1, 2, 100]", True),
    ('claim.tags contains "staged"', True), ('claim.tags contains "other"', False),
    ('claim.ref contains "1"', True), ('claim.ref contains "2"', False),
    ('claim.ref matches "\\d"', True), ('claim.ref matches "^c"', False), ('claim.ref matches "(?i)^c"', True),
    ("claim.amount * 2 + 1 == 201", True), ("claim.amount / 4 - 5 == 20", True), ("-claim.amount < 0", True),
    ("claim.amount / 0 > 1", False), ("not (claim.amount / 0 > 1)", False),
    ("exists claim", True), ("exists claim and not exists policy", True),
    ("exists claim and not exists flag", True),
    ('claim.note == "x"', False), ('claim.note != "x"', False), ("claim.score < 5 or claim.amount > 1", True),
])
def test_operators(when: str, fires: bool) -> None:
    assert fired_for(when, {"claim": claim(tags=["staged", "late"])}) == (["r"] if fires else [])


def test_optional_field_present_compares() -> None:
    assert fired_for('claim.note == "x"', {"claim": claim(note="x")}) == ["r"]


def test_join_across_types_and_aliases_for_two_facts_of_one_type() -> None:
    rs = ruleset(FACTS + """\
rules:
  - name: covered
    when: claim.amount <= policy.limit and policy.active and claim.ref == policy.ref
    then: {decide: {route: pay}}
  - name: pair
    when: claim as a, claim as b, a.amount > b.amount
    then: {assert: {flag: {name: pair}}}
""")
    d = decide(rs, {"claim": [claim("C1", 10), claim("C2", 500)],
                    "policy": [{"ref": "C1", "active": True, "limit": 100},
                               {"ref": "C2", "active": True, "limit": 100}]})
    assert d.fired == ["covered", "pair"]
    fired = [e for e in d.trace if e["kind"] == "fired"]
    assert fired[0]["facts"] == {"claim": 1, "policy": 3}
    assert fired[1]["facts"] == {"a": 2, "b": 1}


def test_priority_then_rule_order_then_recency() -> None:
    rs = ruleset(FACTS + """\
rules:
  - name: low
    priority: -5
    when: exists claim
    then: {decide: {route: low}}
  - name: tie-first
    when: exists claim
    then: {decide: {route: first}}
  - name: tie-second
    when: exists claim
    then: {decide: {route: second}}
  - name: high
    priority: 7
    when: exists claim
    then: {decide: {route: high}}
""")
    d = decide(rs, {"claim": [claim("A"), claim("B")]})
    assert d.fired == ["high", "high", "tie-first", "tie-first", "tie-second", "tie-second", "low", "low"]
    newest_first = [e["facts"]["claim"] for e in d.trace if e["kind"] == "fired" and e["rule"] == "high"]
    assert newest_first == [2, 1]
    assert (d.outcome, d.decision, d.rule) == ("decided", {"route": "high"}, "high")
    won = [e for e in d.trace if e["kind"] == "proposal" and e["won"]]
    assert len(won) == 1 and won[0]["rule"] == "high" and won[0]["step"] == 1


def test_outcome_ties_go_to_rule_written_first_and_escalate_can_win() -> None:
    rs = ruleset(FACTS + """\
rules:
  - name: late-writer
    priority: 0
    when: claim.amount > 1 and exists policy
    then: {decide: {route: a}}
  - name: early
    priority: 0
    when: exists claim
    then: {escalate: {queue: review, reason: check}}
""")
    d = decide(rs, {"claim": claim(), "policy": {"ref": "C1", "active": True, "limit": 1}})
    assert d.outcome == "decided" and d.rule == "late-writer"
    d = decide(rs, {"claim": claim()})
    assert (d.outcome, d.decision, d.reason) == ("escalated", {"queue": "review"}, "check")
    rs2 = ruleset(FACTS + "rules:\n  - name: r\n    when: claim.amount > 10000\n    then: {decide: {route: x}}\n")
    assert decide(rs2, {"claim": claim()}).outcome == "no_decision"


def test_or_across_types_fires_once_per_branch_and_within_a_type_is_plain() -> None:
    rs = ruleset(FACTS + """\
rules:
  - name: either
    when: claim.amount > 50 or policy.limit > 50
    then: {decide: {route: x}}
  - name: same-type
    when: claim.amount > 50 or claim.tier == "gold"
    then: {decide: {route: y}}
""")
    both = decide(rs, {"claim": claim(amount=100, tier="gold"), "policy": {"ref": "P", "active": True, "limit": 99}})
    assert both.fired == ["either", "either", "same-type"]
    one = decide(rs, {"claim": claim(amount=1), "policy": {"ref": "P", "active": True, "limit": 99}})
    assert one.fired == ["either"]


def test_forward_chaining_and_negation_checked_at_firing_time() -> None:
    rs = ruleset(FACTS + """\
rules:
  - name: derive
    priority: 10
    when: claim.amount > 50
    then: {assert: {flag: {name: big}}}
  - name: unflagged
    when: exists claim and not exists flag
    then: {decide: {route: plain}}
  - name: flagged
    when: flag.name == "big" and exists claim
    then: {decide: {route: big}}
""")
    big = decide(rs, {"claim": claim(amount=100)})
    assert big.fired == ["derive", "flagged"]
    assert big.decision == {"route": "big"}
    facts = [e for e in big.trace if e["kind"] == "fact"]
    assert facts[1] == {"kind": "fact", "seq": 2, "type": "flag", "values": {"name": "big"}, "source": "rule",
                        "round": 1, "by": "derive"}
    assert decide(rs, {"claim": claim(amount=1)}).fired == ["unflagged"]


def test_identical_facts_are_one_fact() -> None:
    rs = ruleset(FACTS + "rules:\n  - name: r\n    when: exists claim\n    then: {assert: {flag: {name: x}}}\n"
                 "  - name: again\n    when: exists flag\n    then: {assert: {flag: {name: x}}}\n")
    d = decide(rs, {"claim": [claim(), claim(), {**claim(), "amount": 100.0}]})
    assert d.fired == ["r", "again"]
    assert [e["seq"] for e in d.trace if e["kind"] == "fact"] == [1, 2]


def test_step_limit_fails_with_reason() -> None:
    rs = ruleset(FACTS + "settings: {step_limit: 3}\nrules:\n  - name: r\n    when: exists claim\n"
                 "    then: {decide: {route: x}}\n")
    d = decide(rs, {"claim": [claim(str(i)) for i in range(5)]})
    assert d.outcome == "failed" and "step limit of 3" in d.reason and d.steps == 4


def test_invalid_input_is_rejected_with_the_field_path() -> None:
    rs = ruleset(FACTS + "rules:\n  - name: r\n    when: exists claim\n    then: {decide: {route: x}}\n")
    cases = [
        ({"claim": {**claim(), "amount": "5"}}, "facts.claim.amount", "type_mismatch"),
        ({"claim": {**claim(), "amount": float("nan")}}, "facts.claim.amount", "not_finite"),
        ({"claim": {**claim(), "amount": float("inf")}}, "facts.claim.amount", "not_finite"),
        ({"claim": {**claim(), "amount": True}}, "facts.claim.amount", "type_mismatch"),
        ({"claim": {**claim(), "bogus": 1}}, "facts.claim.bogus", "unknown_field"),
        ({"claim": {k: v for k, v in claim().items() if k != "ref"}}, "facts.claim.ref", "missing_field"),
        ({"claim": {**claim(), "tier": "platinum"}}, "facts.claim.tier", "not_in_enum"),
        ({"claim": {**claim(), "tags": ["a", 1]}}, "facts.claim.tags[1]", "type_mismatch"),
        ({"claim": {**claim(), "ref": "\ud800"}}, "facts.claim.ref", "bad_encoding"),
        ({"claim": [claim(), {**claim(), "ref": 3}]}, "facts.claim[1].ref", "type_mismatch"),
        ({"flag": {"name": "x"}}, "facts.flag", "not_an_input"),
        ({"nope": {}}, "facts.nope", "unknown_fact_type"),
        ({}, "facts", "no_facts"),
        ({"claim": "x"}, "facts.claim", "type_mismatch"),
    ]
    for facts, path, code in cases:
        with pytest.raises(InvalidInput) as info:
            decide(rs, facts)
        assert (info.value.where.path, info.value.code) == (path, code), facts
