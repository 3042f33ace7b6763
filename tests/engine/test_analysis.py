"""Static analysis: each warning is raised where it should be, and not where it should not."""

from __future__ import annotations

import pytest

from tests.helpers import ruleset

HEAD = """
ruleset: lint
facts:
  claim:
    amount: {type: number, min: 0}
    tier: {enum: [standard, gold]}
    flagged: bool
    region: str
  customer:
    tier: {enum: [standard, gold]}
  note:
    text: str
input: [claim, customer]
rules:
"""


def warnings(rules: str, extra: str = "") -> list[tuple[str, str, int]]:
    rs = ruleset(HEAD + rules + extra)
    return [(w.code, w.message, w.where.line) for w in rs.warnings]


def rule(name: str, when: str, then: str = "{decide: {route: x}}", priority: int = 0) -> str:
    return f"  - name: {name}\n    priority: {priority}\n    when: {when}\n    then: {then}\n"


@pytest.mark.parametrize("when", [
    "claim.amount > 100 and claim.amount < 50",
    "claim.amount >= 10 and claim.amount < 10",
    "claim.amount == 5 and claim.amount != 5",
    'claim.tier == "gold" and claim.tier != "gold"',
    'claim.tier in ["gold"] and claim.tier == "standard"',
    'claim.region == "EU" and claim.region == "US"',
    "claim.flagged and not claim.flagged",
    'claim.amount > 10 and (claim.tier == "gold" or claim.flagged) and claim.amount < 5',
])
def test_contradictions_never_fire(when: str) -> None:
    found = warnings(rule("dead", f"'{when}'"))
    assert [(c, line) for c, _, line in found] == [("never_fires", 14)]
    assert "'dead' can never fire" in found[0][1]


@pytest.mark.parametrize("when", [
    "claim.amount > 100 and claim.amount < 500",
    "claim.amount >= 10 and claim.amount <= 10",
    'claim.tier != "gold" and claim.tier != "standard" or claim.amount > 5',  # an or: not read as a conjunction
    'claim.tier == "gold" and customer.tier == "standard"',  # two facts, two fields
    "claim.amount * 2 > 100 and claim.amount < 10",  # arithmetic is not read: no claim
])
def test_satisfiable_conditions_are_not_flagged(when: str) -> None:
    assert warnings(rule("alive", f"'{when}'")) == []


def test_shadowed_by_higher_priority_superset() -> None:
    found = warnings(rule("wide", "claim.amount > 1000", priority=10) +
                     rule("narrow", "'claim.amount >= 5000 and claim.tier == \"gold\"'"))
    assert [(c, line) for c, _, line in found] == [("shadowed", 18)]
    assert "'narrow' never wins" in found[0][1] and "'wide'" in found[0][1]


def test_shadowed_by_earlier_rule_of_equal_priority_only() -> None:
    earlier = rule("first", "exists claim") + rule("second", "claim.amount > 5")
    assert [c for c, _, _ in warnings(earlier)] == ["shadowed"]
    later = rule("second", "claim.amount > 5") + rule("first", "exists claim")
    assert warnings(later) == []


@pytest.mark.parametrize("rules", [
    # the wider rule is lower priority: the narrow one wins when both fire
    rule("wide", "claim.amount > 1000") + rule("narrow", "claim.amount > 5000", priority=5),
    # not a superset: the wide rule needs a customer fact the narrow one does not
    rule("wide", "exists customer and exists claim", priority=5) + rule("narrow", "claim.amount > 5000"),
    # the narrow rule also asserts a fact: firing still matters
    rule("wide", "exists claim", priority=5) + rule("narrow", "claim.amount > 5", then="[{assert: {note: {text: a}}}, "
                                                    "{decide: {route: y}}]") + rule("use", "exists note", priority=9),
    # the wider rule only asserts: it proposes nothing
    rule("wide", "exists claim", then="{assert: {note: {text: a}}}", priority=5) +
    rule("narrow", "claim.amount > 5") + rule("use", "exists note", then="{escalate: {queue: q}}"),
    # not-exists in the wider rule is not read: no claim
    rule("wide", "exists claim and not exists note", priority=5) + rule("narrow", "claim.amount > 5") +
    rule("make", "exists customer", then="{assert: {note: {text: a}}}"),
])
def test_not_shadowed(rules: str) -> None:
    assert [c for c, _, _ in warnings(rules)] == []


def test_unused_fact_and_action() -> None:
    extra = """
models:
  summarise:
    group: fast
    produces: note
    prompt: "{{ claim.amount }}"
tools:
  fetch:
    connector: lookup
    table: customers
    params: {id: claim.region}
    produces: customer
"""
    found = warnings(rule("a", "exists claim", then="{assert: {note: {text: a}}}") +
                     rule("b", "exists customer"), extra)
    codes = sorted((c, line) for c, _, line in found)
    assert codes == [("unused_action", 24), ("unused_action", 29), ("unused_fact", 10)]
    # reading the fact in a prompt or an effect template counts as a use
    used_in_prompt = extra.replace('"{{ claim.amount }}"', '"{{ claim.amount }} {{ note.text }}"')
    found = warnings(rule("a", "exists claim", then="[{assert: {note: {text: a}}}, summarise, fetch]") +
                     rule("b", "exists customer"), used_in_prompt)
    assert found == []
    effect = rule("a", "exists claim", then="[{assert: {note: {text: a}}}, summarise, fetch]")
    effect += "  - name: e\n    when: exists customer\n    then: {effect: {name: log, with: {t: '{{ note.text }}'}}}\n"
    assert warnings(effect, extra) == []


def test_example_rulesets_are_clean() -> None:
    from pathlib import Path

    from engine.language.loader import load_ruleset

    for path in sorted(Path("rulesets").glob("*.yaml")):
        rs = load_ruleset(path.read_text(), str(path))
        assert rs.warnings == [], path
