"""Static analysis: each warning is raised where it should be, and not where it should not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.language import analysis
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


class _EagerWinners(analysis._Winners):
    """The shadowing search as it was before it went lazy: every candidate listed, then sorted."""

    def could_imply(self, narrow: list[Any], before: int) -> Iterator[Any]:
        found = {r.name: r for r in self.general if self.position[r.name] < before}
        if narrow:
            for key, d in narrow[0].domains.items():
                for v in analysis._finite(d) or ():
                    for r in self.filed.get((key, v), ()):
                        if self.position[r.name] < before:
                            found[r.name] = r
                tree = self.trees.get(key)
                point = analysis._inside(d) if tree is not None and d.allowed is None else None
                if tree is not None and point is not None:
                    hits: list[int] = []
                    tree.stab(point, hits)
                    for k in hits:
                        if k < before:
                            found[self.order[k].name] = self.order[k]
        return iter(sorted(found.values(), key=lambda r: self.position[r.name]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([">", ">=", "<", "<=", "in", "band"]), st.integers(0, 40),
                          st.integers(-2, 2), st.sampled_from(["x", "y"])), min_size=1, max_size=150))
def test_the_lazy_shadow_search_names_what_the_eager_one_did(spec: list[tuple[str, int, int, str]]) -> None:
    """Nested, disjoint and mixed ranges, over and under the 64 rules walked in position order."""
    text = []
    for i, (op, n, priority, route) in enumerate(spec):
        when = {"in": f"claim.amount >= {n} and claim.amount <= {n + 5}",
                "band": f"claim.amount > {n} and claim.amount < {n + 1}"}.get(op, f"claim.amount {op} {n}")
        text.append(rule(f"r{i}", when, f"{{decide: {{route: {route}}}}}", priority))
    rs = ruleset(HEAD + "".join(text))
    lazy = [str(w) for w in analysis.analyse_ruleset(rs)]
    original = analysis._Winners
    analysis._Winners = _EagerWinners  # type: ignore[misc]
    try:
        eager = [str(w) for w in analysis.analyse_ruleset(rs)]
    finally:
        analysis._Winners = original  # type: ignore[misc]
    assert lazy == eager


@pytest.mark.parametrize("inside", [3, 64, 66])
def test_a_winner_beyond_the_first_rules_walked_is_still_found(inside: int) -> None:
    """70 disjoint bands: a rule inside band N is shadowed by band N, whether N is among the first 64 walked in
    position order or found by asking the interval tree."""
    bands = "".join(rule(f"b{i}", f"claim.amount >= {10 * i} and claim.amount <= {10 * i + 5}") for i in range(70))
    late = rule("late", f"claim.amount >= {10 * inside + 1} and claim.amount <= {10 * inside + 2}")
    found = [(code, message) for code, message, _ in warnings(bands + late) if code == "shadowed"]
    assert found == [("shadowed", f"rule 'late' never wins: whenever it fires, 'b{inside}' fires too and its "
                      "proposal has the same priority, written earlier,")]
