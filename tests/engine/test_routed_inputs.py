"""A table whose inputs are expressions computes them by a rule of the engine's own (TABLE#inputs): it is in
the trace like every firing, but `fired` and test coverage hold only what the author wrote."""

from __future__ import annotations

import asyncio

from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from engine.testing import run_suite

SOURCE = """\
ruleset: routed
facts:
  loan: {amount: number, years: int}
  band: {level: {enum: [small, large]}}
input: [loan]
tables:
  - name: size
    hit: first
    inputs: ["=loan.amount / loan.years"]
    outputs: [band.level]
    rows:
      - ["< 1000", small]
      - ["-", large]
rules:
  - name: large-to-review
    when: band.level == "large"
    then: {decide: {route: review}}
tests:
  - name: a large yearly amount goes to review
    given: {loan: {amount: 50000, years: 5}}
    expect: {decision: {route: review}, fired: ["size#2", large-to-review]}
  - name: a small one decides nothing
    given: {loan: {amount: 3000, years: 5}}
    expect: {outcome: no_decision, fired: ["size#1"]}
"""


def test_fired_lists_the_rows_and_the_trace_keeps_the_engines_own_rule() -> None:
    rs = load_ruleset(SOURCE, "routed.yaml")
    engine = Engine(rs)
    assert engine.internal == {"size#inputs"}
    answers = RecordedAnswers({})
    d = asyncio.run(engine.decide({"loan": {"amount": 50000, "years": 5}}, answers, answers, FixedClock(),
                                  SequentialIds()))
    assert d.fired == ["size#2", "large-to-review"]
    assert [e["rule"] for e in d.trace if e["kind"] == "fired"] == ["size#inputs", "size#2", "large-to-review"]


def test_the_engines_own_rule_is_neither_expected_nor_uncovered() -> None:
    suite = asyncio.run(run_suite(load_ruleset(SOURCE, "routed.yaml")))
    assert all(not r.failures for r in suite.results), [r.failures for r in suite.results]
    assert suite.uncovered == []
