"""The indexed, sharded engine fires exactly what the guard-only reference fires, in the same order.

The reference is the engine as it was before the index: one network whose patterns test the fact type
and string/boolean equalities, every condition checked as a guard when the activation fires
(``compile_ruleset(indexed=False)`` with one unbounded shard) - the engine that made every decision
stored so far, which the indexed engine must replay identically. Random rulesets mix literal tests,
ranges, ``in``, ``contains``, bare booleans, joins (equality and ``<``), arithmetic, negation, ``or``
across types, aliases, priorities and forward chaining; random facts go through the reference, the
engine Baton chooses, the indexed engine, and a cut into tiny shards (3 rules, 4 patterns) so that
the walk across shards is exercised on every example.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock, SequentialIds
from engine.compile import EngineRule, _Cut, compile_ruleset
from engine.errors import CompileErrors
from engine.index import Interval, IntervalTree, LiteralIndex, Segments
from engine.language.check import compile_guard
from engine.language.evaluate import compile_expr
from engine.loop import Decision, Engine
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset

HEADER = """\
ruleset: prop
facts:
  a:
    x: number
    s: {enum: [p, q, r]}
    f: bool
    t: {type: list, items: str}
    o: {type: number, optional: true}
  b:
    x: number
    s: str
  c:
    n: number
input: [a, b]
rules:
"""

A_TESTS = ["a.x > {n}", "a.x <= {n}", "a.x == {n}", "a.x != {n}", 'a.s == "{e}"', 'a.s != "{e}"',
           'a.s in ["{e}", "q"]', 'a.s not in ["{e}"]', "a.f", "not a.f", 'a.t contains "{w}"', "a.o >= {n}",
           "{n} < a.x", "a.x >= -{n}"]
B_TESTS = ["b.x < {n}", "b.x >= {n}", 'b.s == "{w}"', 'b.s contains "{w}"', 'b.s in ["{w}", "k"]']
JOINS = ["a.x == b.x", "a.x < b.x", "a.x + b.x > {n}", 'a.s == b.s', "c.n == a.x"]
EXTRA = ["not exists c", "exists c", "not exists b"]

words = st.sampled_from(["k", "m", "p", "q"])
nums = st.integers(min_value=0, max_value=6)
enums = st.sampled_from(["p", "q", "r"])


@st.composite
def part(draw: st.DrawFn, pool: list[str]) -> str:
    return draw(st.sampled_from(pool)).format(n=draw(nums), e=draw(enums), w=draw(words))


@st.composite
def condition(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(["a", "b", "ab", "or", "self", "c"]))
    if shape == "a":
        parts = ["exists a", *draw(st.lists(part(A_TESTS), max_size=3))]
    elif shape == "b":
        parts = ["exists b", *draw(st.lists(part(B_TESTS), max_size=2))]
    elif shape == "ab":
        parts = ["exists a", "exists b", *draw(st.lists(part(A_TESTS + B_TESTS + JOINS[:4]), max_size=3))]
    elif shape == "or":
        return f"({draw(part(A_TESTS))}) or ({draw(part(B_TESTS))})"
    elif shape == "self":
        return f"a as u, a as v, u.x < v.x and u.s == \"{draw(enums)}\""
    else:
        parts = ["exists a", "exists c", draw(part(JOINS[4:] + A_TESTS))]
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(EXTRA)))
    return " and ".join(parts)


@st.composite
def rulesets(draw: st.DrawFn, most: int = 120) -> str:
    count = draw(st.integers(min_value=1, max_value=most))
    out = [HEADER]
    for i in range(count):
        when = draw(condition())
        action = draw(st.sampled_from(["assert", "decide", "decide"]))
        then = (f"assert: {{c: {{n: {draw(nums)}}}}}" if action == "assert" else
                f"decide: {{route: q{i}}}")
        out.append(f"  - name: r{i}\n    priority: {draw(st.integers(-3, 3))}\n    when: '{when}'\n"
                   f"    then:\n      {then}\n")
    return "".join(out)


a_facts = st.fixed_dictionaries({"x": nums, "s": enums, "f": st.booleans(), "t": st.lists(words, max_size=3)},
                                optional={"o": nums})
b_facts = st.fixed_dictionaries({"x": nums, "s": words})
inputs = st.fixed_dictionaries({"a": st.lists(a_facts, min_size=1, max_size=3),
                                "b": st.lists(b_facts, max_size=3)})


def run(engine: Engine, facts: dict[str, object]) -> Decision:
    answers = RecordedAnswers({})
    facts = {k: v for k, v in facts.items() if v}
    return asyncio.run(engine.decide(facts, answers, answers, FixedClock(), SequentialIds()))


def observed(d: Decision) -> tuple[object, ...]:
    fired = [(e["rule"], e["facts"], e.get("branch")) for e in d.trace if e["kind"] == "fired"]
    return d.outcome, d.decision, fired, d.steps


@settings(max_examples=int(os.environ.get("BATON_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=rulesets(), facts=st.lists(inputs, min_size=1, max_size=3))
@pytest.mark.slow
def test_indexed_and_sharded_engines_fire_exactly_as_the_guard_only_reference(text: str,
                                                                              facts: list[dict[str, object]]) -> None:
    try:
        rs = ruleset(text)
    except CompileErrors:
        return  # e.g. a condition hypothesis built that the checker rightly refuses
    reference = Engine(rs, compile_ruleset(rs, indexed=False, shard_rules=10**6, shard_slots=10**6))
    chosen = Engine(rs)  # guard-only below 32 rules, else indexed
    indexed = Engine(rs, compile_ruleset(rs, indexed=True))
    tiny = Engine(rs, compile_ruleset(rs, indexed=True, shard_rules=3, shard_slots=4))
    for f in facts:
        expected = observed(run(reference, f))
        assert observed(run(chosen, f)) == expected
        assert observed(run(indexed, f)) == expected
        assert observed(run(tiny, f)) == expected
    for e in (reference, chosen, indexed, tiny):
        assert e.pool.live_sessions == 0


@settings(max_examples=int(os.environ.get("BATON_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=rulesets(most=20), facts=st.lists(inputs, min_size=1, max_size=3))
def test_a_guard_only_network_with_flags_fires_exactly_as_the_reference(text: str,
                                                                       facts: list[dict[str, object]]) -> None:
    """Small rulesets run guard-only, their one-pattern rules' literal tests carried by facts as flags
    (compile.py ``_Cut.flag``): what fires, and in what order, is the reference's."""
    try:
        rs = ruleset(text)
    except CompileErrors:
        return
    reference = Engine(rs, compile_ruleset(rs, indexed=False, shard_rules=10**6, shard_slots=10**6))
    chosen = Engine(rs)
    assert not reference.compiled.flags
    if chosen.compiled.indexed:
        return  # `or`s made more than GUARD_ONLY_RULES engine rules: the test above covers it
    for f in facts:
        assert observed(run(chosen, f)) == observed(run(reference, f))


def test_flags_take_the_literal_tests_of_one_pattern_rules_out_of_the_guard() -> None:
    rs = ruleset(HEADER + """\
  - name: big
    when: 'a.x > 3 and a.s != "p" and not a.f'
    then: {decide: {route: big}}
  - name: joined
    when: 'exists a and exists b and a.x > 2 and a.x == b.x'
    then: {decide: {route: joined}}
  - name: plain
    when: 'a.s == "q"'
    then: {decide: {route: plain}}
""")
    compiled = Engine(rs).compiled
    assert [(f, b) for f, b, _ in compiled.flags["a"]] == [("g0", "a")]  # the join keeps its tests as guards
    assert '{"g0":1}' in compiled.shards[0].engine_json
    assert compiled.encode(1, "a", {"x": 4, "s": "q", "f": False, "t": []})["g0"] == 1
    assert "g0" not in compiled.encode(2, "a", {"x": 4, "s": "p", "f": False, "t": []})
    assert "g0" not in compiled.encode(3, "a", {"x": 3, "s": "q", "f": False, "t": []})
    fired = run(Engine(rs), {"a": [{"x": 5, "s": "r", "f": False, "t": []}, {"x": 1, "s": "q", "f": True, "t": []}]})
    assert [e["rule"] for e in fired.trace if e["kind"] == "fired"] == ["big", "plain"]


@given(st.lists(st.tuples(st.integers(-5, 5), st.booleans(), st.integers(-5, 5), st.booleans()), max_size=40),
       st.integers(-7, 7))
@pytest.mark.slow
def test_interval_tree_stabs_exactly_the_intervals_holding_a_point(items: list[tuple[int, bool, int, bool]],
                                                                   x: int) -> None:
    intervals = [Interval(float(lo), lc, float(lo + w), hc, k) for k, (lo, lc, w, hc) in enumerate(items)]
    for lo, _, w, _ in items[:2]:  # one-sided ranges too: x <= hi, x > lo
        intervals.append(Interval(-math.inf, False, float(lo + w), True, len(intervals)))
        intervals.append(Interval(float(lo), False, math.inf, False, len(intervals)))
    expected = [i.slot for i in intervals if i.contains(x)]
    found: list[int] = []
    IntervalTree(intervals).stab(x, found)
    assert sorted(found) == expected
    segments = Segments.build(intervals, 10**6)
    assert segments is not None
    found = []
    segments.stab(x, found)
    assert sorted(found) == expected


@contextmanager
def nothing_shared() -> Iterator[None]:
    """Compile as before evaluators were shared: a guard and an index check of its own for every part."""
    def checks(self: LiteralIndex, nodes: list[object], binding: str, type_name: str) -> tuple[object, ...]:
        return tuple(compile_expr(n, {binding: type_name}) for n in nodes)  # type: ignore[arg-type]

    with mock.patch.object(_Cut, "guard", lambda self, parts, aliases: compile_guard(parts, aliases)), \
            mock.patch.object(_Cut, "share", lambda self, value: value), \
            mock.patch.object(LiteralIndex, "checks", checks):
        yield


@settings(max_examples=int(os.environ.get("BATON_PROPERTY_EXAMPLES", "200")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=rulesets(), facts=st.lists(inputs, min_size=1, max_size=3))
@pytest.mark.slow
def test_engines_whose_rules_share_evaluators_fire_exactly_as_engines_that_do_not(
        text: str, facts: list[dict[str, object]]) -> None:
    """A large ruleset's rules share one guard (and the index one check) for every set of parts that computes
    the same (trees.shape): it must never make two different tests one."""
    try:
        rs = ruleset(text)
    except CompileErrors:
        return
    with nothing_shared():
        alone = [Engine(rs, compile_ruleset(rs, indexed=i, shard_rules=r)) for i, r in ((False, 10**6), (True, 8))]
    shared = [Engine(rs, compile_ruleset(rs, indexed=i, shard_rules=r)) for i, r in ((False, 10**6), (True, 8))]
    for f in facts:
        for a, b in zip(alone, shared, strict=True):
            assert observed(run(b, f)) == observed(run(a, f))


def test_rules_testing_the_same_share_one_guard_and_rules_testing_otherwise_do_not() -> None:
    text = HEADER + "".join(f"  - name: r{i}\n    when: '{w}'\n    then:\n      decide: {{route: q{i}}}\n" for i, w in
                            enumerate(["a.x > b.x + 1", "a.x > b.x + 1", "a.x > b.x + 1.0", "a.x > b.x + 2",
                                       "a.x >= b.x + 1", "a.x > b.x + 1 and a.s == b.s"]))
    compiled = compile_ruleset(ruleset(text), indexed=True)
    guards = [er.guard for er in sorted(compiled.rules.values(), key=lambda er: er.rule.index)
              if isinstance(er, EngineRule) and er.rule.name.startswith("r")]
    assert guards[0] is guards[1]  # the same test at two places
    assert len({id(g) for g in guards[1:]}) == 5  # 1 and 1.0, another literal, another operator, more parts
    with nothing_shared():
        alone = compile_ruleset(ruleset(text), indexed=True)
    assert len({id(er.guard) for er in alone.rules.values() if er.rule.name.startswith("r")}) == 6
