"""A rule that joins facts may have to consider the product of its patterns' fact counts, each combination
built by durable-rules before any condition runs: over Limits.max_combinations the decision fails at once,
naming the join, instead of growing the worker (a three-way self-join over 1,000 facts is 10^9)."""

from __future__ import annotations

import asyncio
import json

from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import MAX_COMBINATIONS, Decision, Engine, Limits
from engine.recorded import RecordedAnswers
from engine.replay import replay

SOURCE = """\
ruleset: joins
facts:
  c: {n: int}
  d: {n: int}
input: [c]
rules:
  - name: pairs
    when: c as a, c as b, a.n > b.n
    then: {decide: {x: pair}}
  - name: copy
    when: c.n < 0
    then: {assert: {d: {n: 1}}}
"""


def decide(n: int, limits: Limits | None = None) -> Decision:
    engine = Engine(load_ruleset(SOURCE, "joins.yaml"))
    answers = RecordedAnswers({})
    return asyncio.run(engine.decide({"c": [{"n": i} for i in range(n)]}, answers, answers, FixedClock(),
                                     SequentialIds(), limits))


def test_under_the_limit_the_join_runs_and_the_record_keeps_its_shape() -> None:
    d = decide(10, Limits(max_combinations=100))
    assert d.outcome == "decided" and d.limits["max_combinations"] == 100
    assert "max_combinations" not in decide(3).limits  # the default is not written into records


def test_over_the_limit_the_decision_fails_naming_the_join() -> None:
    d = decide(11, Limits(max_combinations=100))
    assert d.outcome == "failed"
    assert d.reason == "a rule joining c x c would consider 121 combinations of facts, over the limit of 100"
    assert d.fired == []


def test_the_default_bounds_a_self_join_of_a_thousand_facts() -> None:
    assert MAX_COMBINATIONS == 1_000_000
    assert "combinations" not in decide(1000).reason  # 10^6: allowed (the step limit stops it here)
    three = SOURCE.replace("c as a, c as b, a.n > b.n", "c as a, c as b, c as e, a.n > b.n and b.n > e.n")
    engine = Engine(load_ruleset(three, "joins.yaml"))
    answers = RecordedAnswers({})
    d = asyncio.run(engine.decide({"c": [{"n": i} for i in range(101)]}, answers, answers, FixedClock(),
                                  SequentialIds()))
    assert d.reason == ("a rule joining c x c x c would consider 1,030,301 combinations of facts, over the limit "
                        "of 1,000,000")


def test_a_decision_under_a_configured_limit_replays_under_it() -> None:
    d = decide(11, Limits(max_combinations=100))
    record = json.loads(json.dumps(d.to_dict()))  # as stored
    engine = Engine(load_ruleset(SOURCE, "joins.yaml"))
    assert asyncio.run(replay(engine, record)).identical
