"""RULESETS.md items 15-18 and 20: named values, definitions, final rules, text and lists, powers and months,
summary rules - one behaviour per test."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock, SequentialIds
from engine.compile import compile_ruleset
from engine.errors import CompileErrors
from engine.explain import why
from engine.language import dates
from engine.language.check import text_of
from engine.language.diff import diff_sources
from engine.language.schema import ruleset_schema
from engine.language.source import parse_yaml, plain
from engine.loop import Decision, Engine
from engine.recorded import RecordedAnswers
from engine.replay import replay
from tests.helpers import ruleset

HEAD = """\
ruleset: vocab
facts:
  customer:
    ref: str
    country: str
    tier: {enum: [standard, gold]}
  claim:
    ref: str
    region: str
    amount: number
    year: int
    loss_date: date
    reported_on: date
  policy:
    ref: str
    start: date
    end: date
    deductible: number
  alert:
    customer: str
    reason: str
    score: number
  assessment:
    label: str
input: [customer, claim, policy, alert]
values:
  high_risk_countries: [IR, KP, SY, CU]
  reporting_threshold: 10000
  amnesty_ends: 2026-03-31
  amnesty_text: "2026-03-31"
  quarter_days: [2026-03-31, 2026-06-30]
define:
  in_force: policy.start <= claim.loss_date and claim.loss_date <= policy.end
  late: days(claim.loss_date, claim.reported_on) > 30
  net_loss: claim.amount - policy.deductible
  big: claim.amount >= reporting_threshold
  high_score: alert.score > 50
models:
  assess:
    group: fast
    produces: assessment
    prompt: "Assess {{ claim.ref }}"
rules:
"""
LINE = HEAD.count("\n") + 1  # the first rule's line
DAY = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC).timestamp()


def customer(ref: str = "c1", country: str = "GB", tier: str = "standard") -> dict[str, Any]:
    return {"ref": ref, "country": country, "tier": tier}


def claim(ref: str = "k1", amount: float = 20_000, loss: str = "2026-01-10", reported: str = "2026-01-20",
          region: str = "north", year: int = 2026) -> dict[str, Any]:
    return {"ref": ref, "region": region, "amount": amount, "year": year, "loss_date": loss, "reported_on": reported}


def policy(ref: str = "p1", start: str = "2025-01-01", end: str = "2026-12-31", deductible: float = 500
           ) -> dict[str, Any]:
    return {"ref": ref, "start": start, "end": end, "deductible": deductible}


def alert(reason: str, score: float = 60, who: str = "c1") -> dict[str, Any]:
    return {"customer": who, "reason": reason, "score": score}


def engine(rules: str) -> Engine:
    return Engine(ruleset(HEAD + rules))


def run(rules: str | Engine, facts: dict[str, Any], answers: dict[str, Any] | None = None) -> Decision:
    e = rules if isinstance(rules, Engine) else engine(rules)
    recorded = RecordedAnswers(answers or {})
    return asyncio.run(e.decide(facts, recorded, recorded, FixedClock(DAY), SequentialIds()))


def errors(rules: str, head: str = HEAD) -> list[tuple[str, int, int, str]]:
    with pytest.raises(CompileErrors) as info:
        ruleset(head + rules)
    return [(e.code, e.where.line, e.where.column, e.message) for e in info.value.errors]


def decides(value: str, facts: dict[str, Any], when: str = "exists claim") -> object:
    d = run(f"  - name: r\n    when: '{when}'\n    then: {{decide: {{v: '{value}'}}}}\n", facts)
    assert d.outcome == "decided", d.reason
    return d.decision["v"]


# -- 15. named values -----------------------------------------------------------------------------------

def test_a_named_value_stands_for_its_value_anywhere_an_expression_goes() -> None:
    rules = """\
  - name: sanctioned
    priority: 10
    when: customer.country in high_risk_countries
    then: {decide: {route: refer, threshold: "=reporting_threshold", countries: "=high_risk_countries"}}
  - name: large
    when: claim.amount >= reporting_threshold and claim.loss_date < amnesty_ends
    then: {decide: {route: report}}
"""
    d = run(rules, {"customer": customer(country="KP")})
    assert d.decision == {"route": "refer", "threshold": 10000, "countries": ["IR", "KP", "SY", "CU"]}
    assert run(rules, {"customer": customer(country="GB")}).outcome == "no_decision"
    assert run(rules, {"claim": claim(amount=10_000, loss="2026-03-30")}).fired == ["large"]
    assert run(rules, {"claim": claim(amount=10_000, loss="2026-03-31")}).fired == []
    assert run(rules, {"claim": claim(amount=9_999)}).fired == []


def test_an_unquoted_date_value_is_a_date_and_a_quoted_one_is_text() -> None:
    assert decides("=amnesty_ends", {"claim": claim()}, "claim.loss_date < amnesty_ends") == "2026-03-31"
    assert decides("=add_days(amnesty_ends, 1)", {"claim": claim()}) == "2026-04-01"
    assert decides("=amnesty_text + \"!\"", {"claim": claim()}) == "2026-03-31!"
    assert decides("=len(quarter_days)", {"claim": claim()}, "claim.loss_date < add_days(amnesty_ends, 1)") == 2
    assert errors("  - {name: r, when: claim.loss_date < amnesty_text, then: {decide: {a: 1}}}\n")[0][0] == \
        "type_mismatch"


def test_a_named_value_is_compiled_as_the_literal_written_out() -> None:
    named = ruleset(HEAD + "  - {name: r, when: customer.country in high_risk_countries, then: {decide: {a: 1}}}\n")
    by_hand = ruleset(HEAD + """  - {name: r, when: 'customer.country in ["IR", "KP", "SY", "CU"]', """
                      "then: {decide: {a: 1}}}\n")
    for indexed in (False, True):
        a, b = compile_ruleset(named, indexed=indexed), compile_ruleset(by_hand, indexed=indexed)
        assert [s.engine_json for s in a.shards] == [s.engine_json for s in b.shards]
    assert same_conditions(named, by_hand)


def same_conditions(a: Any, b: Any) -> bool:
    """Two rulesets' rules have the same checked condition trees, branch by branch, part by part."""
    from engine.language.expr import render

    def shape(rs: Any) -> list[object]:
        return [[(br.bindings, [render(p) for p in br.parts]) for br in r.condition.branches] for r in rs.rules]

    return shape(a) == shape(b)


def test_a_name_that_is_already_something_else_is_a_name_clash() -> None:
    head = HEAD.replace("  reporting_threshold: 10000\n", "  reporting_threshold: 10000\n  claim: 3\n  round: 2\n"
                        "  late: 5\n")
    found = errors("  - {name: r, when: exists claim, then: {decide: {a: 1}}}\n", head)
    assert [(c, m.split(" is")[0]) for c, _, _, m in found] == [
        ("name_clash", "'claim'"), ("name_clash", "'round'"), ("name_clash", "'late'")]
    clash_line = head.splitlines().index("  claim: 3") + 1
    assert found[0][1:3] == (clash_line, 3)
    assert "fact type" in found[0][3] and "function" in found[1][3] and "named value" in found[2][3]
    found = errors("  - {name: r, when: 'claim as big, exists policy', then: {decide: {a: 1}}}\n")
    assert found[0][0] == "name_clash"


def test_an_unknown_name_is_reported_where_it_is_written_with_a_suggestion() -> None:
    with pytest.raises(CompileErrors) as info:
        ruleset(HEAD + "  - name: r\n    when: claim.amount > reporting_treshold\n    then: {decide: {a: 1}}\n")
    (e,) = info.value.errors
    assert (e.code, e.where.line, e.where.column) == ("unknown_name", LINE + 1, 26)
    assert e.hint == "did you mean 'reporting_threshold'?"


def test_values_are_part_of_the_version_and_a_diff_names_the_rules_that_use_them() -> None:
    rules = """\
  - {name: sanctioned, when: customer.country in high_risk_countries, then: {decide: {a: 1}}}
  - {name: late-claims, when: late and in_force, then: {decide: {a: 2}}}
  - {name: other, when: exists claim, then: {decide: {a: 3}}}
"""
    before = HEAD + rules
    after = before.replace("[IR, KP, SY, CU]", "[IR, KP, SY, CU, RU]").replace("> 30", "> 45")
    assert ruleset(before).version != ruleset(after).version
    changes = {c.name: c for c in diff_sources(before, after)}
    assert changes["high_risk_countries"].what == "value"
    assert changes["high_risk_countries"].details[-1] == "used by rule sanctioned"
    assert changes["late"].what == "definition" and changes["late"].details[-1] == "used by rule late-claims"
    assert set(changes) == {"high_risk_countries", "late"}


def test_the_schema_knows_values_definitions_and_final() -> None:
    validator = jsonschema.Draft7Validator(ruleset_schema())
    doc = plain(parse_yaml(HEAD + "  - {name: r, when: late, final: true, then: {decide: {a: 1}}}\n", "x.yaml"))
    assert list(validator.iter_errors(doc)) == []
    cases: list[tuple[dict[str, object], str]] = [
        ({"values": {"x": {"a": 1}}}, "values/x"), ({"define": {"x": [1]}}, "define/x"),
        ({"rules": [{"name": "r", "when": "w", "then": "assess", "final": "yes"}]}, "rules/0")]
    for bad, where in cases:
        paths = ["/".join(map(str, e.absolute_path)) for e in validator.iter_errors({**doc, **bad})]
        assert any(p.startswith(where) for p in paths), paths


def test_tables_use_values_and_definitions_and_a_diff_names_the_table() -> None:
    table = """\
  - {name: r, when: exists customer, then: {decide: {route: none}}}
tables:
  - name: sizes
    hit: first
    when: big
    inputs: [claim.amount]
    outputs: [decide.route]
    rows:
      - ["> reporting_threshold * 5", huge]
      - ["-", big]
"""
    e = engine(table)
    assert run(e, {"claim": claim(amount=60_000)}).decision == {"route": "huge"}
    assert run(e, {"claim": claim(amount=20_000)}).decision == {"route": "big"}
    assert run(e, {"claim": claim(amount=2_000)}).outcome == "no_decision"
    changes = diff_sources(HEAD + table, HEAD.replace("reporting_threshold: 10000", "reporting_threshold: 20000")
                           + table)
    assert [c.details[-1] for c in changes] == ["used by table sizes"]


# -- 16. definitions ------------------------------------------------------------------------------------

def test_a_definition_means_its_expression_written_there_in_brackets() -> None:
    rules = """\
  - name: covered
    when: in_force and not late
    then: {decide: {route: pay, payout: "=min(net_loss, 15000)"}}
  - name: not-covered
    when: not in_force and exists policy
    then: {decide: {route: decline}}
"""
    facts = {"claim": claim(), "policy": policy()}
    assert run(rules, facts).decision == {"route": "pay", "payout": 15000}
    assert run(rules, {**facts, "claim": claim(amount=1000)}).decision == {"route": "pay", "payout": 500}
    # not in_force is not (start <= loss and loss <= end): true when the loss is after the end
    assert run(rules, {**facts, "policy": policy(end="2025-12-31")}).decision == {"route": "decline"}
    assert run(rules, {**facts, "claim": claim(reported="2026-03-01")}).fired == []


def test_a_definition_may_be_written_as_a_computed_value_is() -> None:
    head = HEAD.replace("define:\n", "define:\n  doubled: '=claim.amount * 2'\n  wrong: '=claim.amout'\n")
    (e,) = errors("  - {name: r, when: exists claim, then: {decide: {a: =doubled, b: =wrong}}}\n", head)
    line = head.splitlines().index("  wrong: '=claim.amout'") + 1
    assert e[:3] == ("unknown_field", line, 18)
    ok = head.replace("  wrong: '=claim.amout'\n", "")
    d = run(Engine(ruleset(ok + "  - {name: r, when: doubled > 5, then: {decide: {a: =doubled}}}\n")),
            {"claim": claim(amount=3)})
    assert d.decision == {"a": 6}


def test_a_definition_compiles_to_the_rule_written_out_by_hand() -> None:
    named = ruleset(HEAD + "  - {name: r, when: in_force and not late and big, then: {decide: {a: 1}}}\n")
    by_hand = ruleset(HEAD + "  - {name: r, when: '(policy.start <= claim.loss_date and claim.loss_date <= policy.end)"
                      " and not (days(claim.loss_date, claim.reported_on) > 30) and (claim.amount >= 10000)', "
                      "then: {decide: {a: 1}}}\n")
    for indexed in (False, True):
        a, b = compile_ruleset(named, indexed=indexed), compile_ruleset(by_hand, indexed=indexed)
        assert [s.engine_json for s in a.shards] == [s.engine_json for s in b.shards]
    assert same_conditions(named, by_hand)


NAMED = """\
  - {name: a, priority: 5, when: in_force and not late and big, then: {decide: {route: a, net: "=net_loss"}}}
  - {name: b, when: not in_force or late, then: {decide: {route: b}}}
  - {name: c, priority: -5, when: 'in_force and net_loss * 2 > reporting_threshold', then: {decide: {route: c}}}
"""
BY_HAND = """\
  - name: a
    priority: 5
    when: >-
      (policy.start <= claim.loss_date and claim.loss_date <= policy.end)
      and not (days(claim.loss_date, claim.reported_on) > 30) and (claim.amount >= 10000)
    then: {decide: {route: a, net: "=claim.amount - policy.deductible"}}
  - name: b
    when: >-
      not (policy.start <= claim.loss_date and claim.loss_date <= policy.end)
      or (days(claim.loss_date, claim.reported_on) > 30)
    then: {decide: {route: b}}
  - name: c
    priority: -5
    when: >-
      (policy.start <= claim.loss_date and claim.loss_date <= policy.end)
      and (claim.amount - policy.deductible) * 2 > 10000
    then: {decide: {route: c}}
"""
PAIR: list[Engine] = []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30_000), st.dates(dt.date(2025, 6, 1), dt.date(2026, 6, 1)),
                          st.integers(0, 60)), min_size=1, max_size=3),
       st.lists(st.tuples(st.dates(dt.date(2025, 1, 1), dt.date(2026, 1, 1)), st.integers(0, 500),
                          st.integers(0, 2_000)), min_size=1, max_size=2))
def test_rules_with_definitions_decide_as_the_rules_written_out(claims: list[Any], policies: list[Any]) -> None:
    if not PAIR:
        PAIR.extend([engine(NAMED), engine(BY_HAND)])
    facts = {"claim": [claim(f"k{i}", amount, loss.isoformat(), (loss + dt.timedelta(days=late)).isoformat())
                       for i, (amount, loss, late) in enumerate(claims)],
             "policy": [policy(f"p{i}", start.isoformat(), (start + dt.timedelta(days=length)).isoformat(), ded)
                        for i, (start, length, ded) in enumerate(policies)]}
    named, by_hand = (run(e, facts) for e in PAIR)
    assert (named.outcome, named.decision, named.fired) == (by_hand.outcome, by_hand.decision, by_hand.fired)
    strip = [{k: v for k, v in e.items() if k != "definitions"} for e in named.trace]
    assert strip == by_hand.trace


def test_the_facts_a_definition_names_join_the_rule() -> None:
    rules = """\
  - name: in-force-claim
    when: in_force
    then: {decide: {route: covered, claim: =claim.ref, policy: =policy.ref}}
"""
    d = run(rules, {"claim": [claim("k1", loss="2024-06-01"), claim("k2")],
                    "policy": [policy("p-old", "2024-01-01", "2024-12-31"), policy("p-new")]})
    fired = [e["facts"] for e in d.trace if e["kind"] == "fired"]
    assert len(fired) == 2 and {tuple(sorted(f)) for f in fired} == {("claim", "policy")}  # one per combination
    matched = {(p["payload"]["claim"], p["payload"]["policy"]) for p in d.trace if p["kind"] == "proposal"}
    assert matched == {("k1", "p-old"), ("k2", "p-new")}


def test_inside_an_aggregate_a_definition_means_the_fact_being_counted() -> None:
    rules = """\
  - name: many-high
    when: exists customer and count(alert where high_score) >= 2
    then: {decide: {route: review, high: "=count(alert where high_score)", all: "=count(alert)"}}
"""
    d = run(rules, {"customer": customer(), "alert": [alert("a", 80), alert("b", 10), alert("c", 70)]})
    assert d.decision == {"route": "review", "high": 2, "all": 3}
    assert "definitions" not in d.trace[-2]  # high_score names no fact the rule matched: not shown


def test_a_definition_may_use_values_and_definitions_but_never_itself() -> None:
    head = HEAD.replace("define:\n", "define:\n  loop_a: loop_b and big\n  loop_b: claim.amount > 1 and loop_a\n"
                        "  uses_big: big and claim.region == \"north\"\n")
    found = errors("  - {name: r, when: uses_big, then: {decide: {a: 1}}}\n", head)
    assert [c for c, *_ in found] == ["cyclic_definition", "cyclic_definition"]
    line = head.splitlines().index("  loop_a: loop_b and big") + 1
    assert [(ln, col) for _, ln, col, _ in found] == [(line, 3), (line + 1, 3)]
    assert "loop_a -> loop_b -> loop_a" in found[0][3]
    ok = ruleset(head.replace("  loop_a: loop_b and big\n  loop_b: claim.amount > 1 and loop_a\n", "")
                 + "  - {name: r, when: uses_big, then: {decide: {a: 1}}}\n")
    assert run(Engine(ok), {"claim": claim()}).fired == ["r"]


def test_definitions_that_double_each_other_are_refused_by_size_not_expanded() -> None:
    chain = "".join(f"  d{i}: d{i + 1} + d{i + 1}\n" for i in range(1, 40)) + "  d40: claim.amount\n"
    head = HEAD.replace("define:\n", "define:\n" + chain)
    (e,) = errors("  - {name: r, when: d1 > 5, then: {decide: {a: 1}}}\n", head)
    assert e[0] == "too_large" and "definition 'd27' expands to 16,383 parts" in e[3]  # 2**40 never built


def test_an_error_inside_a_definition_is_reported_at_the_definition_naming_the_rules() -> None:
    head = HEAD.replace("define:\n", "define:\n  wrong: claim.amout > 5\n")
    rules = """\
  - {name: first, when: wrong, then: {decide: {a: 1}}}
  - {name: second, when: wrong and exists policy, then: {decide: {a: 2}}}
"""
    (e,) = errors(rules, head)
    line = head.splitlines().index("  wrong: claim.amout > 5") + 1
    assert e[:3] == ("unknown_field", line, 16)
    assert "in definition 'wrong', used by rule 'first' and rule 'second'" in e[3]
    # an unused definition is checked too
    (e,) = errors("  - {name: r, when: exists claim, then: {decide: {a: 1}}}\n", head)
    assert e[:3] == ("unknown_field", line, 16) and "in definition 'wrong')" in e[3]


def test_the_trace_and_log_why_show_a_definition_by_name_with_its_value() -> None:
    rules = """\
  - name: pay
    when: in_force and not late
    then: {decide: {route: pay, payout: "=net_loss"}}
"""
    rs = ruleset(HEAD + rules)
    d = run(Engine(rs), {"claim": claim(), "policy": policy()})
    (fired,) = [e for e in d.trace if e["kind"] == "fired"]
    assert fired["definitions"] == {"in_force": True, "late": False}
    assert "definitions: in_force = true, late = false" in why(rs, d.to_dict(), "pay")[0]
    d = run(Engine(rs), {"claim": claim(reported="2026-05-01"), "policy": policy()})
    lines = why(rs, d.to_dict(), "pay")
    assert "'not late' is false" in lines[1] and "late = true" in lines[1], lines



def test_a_definition_the_firing_does_not_imply_is_evaluated_for_the_trace() -> None:
    rules = """\
  - name: either
    when: (late or big) and in_force
    then: {decide: {route: look}}
"""
    rs = ruleset(HEAD + rules)
    assert rs.rules[0].condition.implied == ({"in_force": True},)  # late and big stand inside an 'or'
    for c, expected in [(claim(), {"late": False, "big": True}),
                        (claim(amount=10, reported="2026-05-01"), {"late": True, "big": False})]:
        d = run(Engine(rs), {"claim": c, "policy": policy()})
        (fired,) = [e for e in d.trace if e["kind"] == "fired"]
        assert fired["definitions"] == {**expected, "in_force": True}


# -- 17. final ------------------------------------------------------------------------------------------

FINAL = """\
  - name: sanctioned
    priority: 100
    final: true
    when: customer.country in high_risk_countries
    then: {decide: {route: decline}}
  - name: assess-claim
    when: exists claim
    then: assess
  - name: default
    priority: -10
    when: exists claim
    then: {decide: {route: standard}}
"""


def test_a_final_rule_in_round_one_stops_before_any_model_is_called() -> None:
    d = run(FINAL, {"customer": customer(country="IR"), "claim": claim()}, {"assess": {"label": "x"}})
    assert d.fired == ["sanctioned"] and d.decision == {"route": "decline"}
    assert d.calls == 0 and not [e for e in d.trace if e["kind"] == "call"]
    assert d.trace[-1] == {"kind": "stopped", "step": 1, "round": 1, "stopped_by": "sanctioned"}
    d = run(FINAL, {"customer": customer(country="GB"), "claim": claim()}, {"assess": {"label": "x"}})
    assert d.fired == ["assess-claim", "default"] and d.calls == 1 and d.decision == {"route": "standard"}


def test_a_final_rule_in_round_three_keeps_the_answered_calls_and_issues_no_more() -> None:
    rules = """\
  - name: ask
    when: exists claim
    then: assess
  - name: ask-again
    when: assessment.label == "first"
    then: assess2
  - name: stop
    final: true
    when: assessment.label == "second"
    then: {decide: {route: stopped}}
  - name: ask-more
    when: assessment.label == "second"
    then: assess3
  - name: late-rule
    priority: -5
    when: exists claim
    then: {decide: {route: never}}
"""
    head = HEAD.replace("models:\n", "models:\n  assess2: {group: fast, produces: assessment, prompt: two}\n"
                        "  assess3: {group: fast, produces: assessment, prompt: three}\n")
    e = Engine(ruleset(head + rules))
    d = run(e, {"claim": claim()}, {"assess": {"label": "first"}, "assess2": {"label": "second"},
                                    "assess3": {"label": "third"}})
    assert d.fired == ["ask", "late-rule", "ask-again", "stop"]
    assert [c["action"] for c in d.trace if c["kind"] == "call"] == ["assess", "assess2"]  # not assess3
    assert d.trace[-1]["stopped_by"] == "stop" and d.trace[-1]["round"] == 3
    # the outcome is chosen among the proposals made so far: late-rule's, priority -5, loses to stop's (0)
    assert d.decision == {"route": "stopped"}
    assert asyncio.run(replay(e, d.to_dict())).identical


def test_a_final_rule_still_loses_to_a_higher_priority_proposal_made_before_it() -> None:
    rules = """\
  - {name: high, priority: 50, when: exists claim, then: {decide: {route: high}}}
  - {name: stop, priority: 10, final: true, when: exists claim, then: {decide: {route: stop}}}
  - {name: after, priority: 5, when: exists claim, then: {decide: {route: after}}}
"""
    d = run(rules, {"claim": claim()})
    assert d.fired == ["high", "stop"] and d.decision == {"route": "high"}


def test_final_on_a_rule_that_does_not_propose_or_on_a_table_is_bad_final() -> None:
    found = errors("  - {name: r, final: true, when: exists claim, then: assess}\n")
    assert [(c, ln, col) for c, ln, col, _ in found] == [("bad_final", LINE, 15)]
    found = errors("""\
  - {name: r, when: exists claim, then: {decide: {a: 1}}}
tables:
  - name: t
    final: true
    inputs: [claim.amount]
    outputs: [decide.route]
    rows: [["-", x]]
""")
    assert [(c, ln, col) for c, ln, col, _ in found] == [("bad_final", LINE + 3, 5)]


def test_a_final_escalation_resumes_when_the_reviewer_answers() -> None:
    from engine.loop import HumanInput, Limits

    head = HEAD.replace("  assessment:\n", "  approval:\n    ok: bool\n  assessment:\n")
    rules = """\
  - name: review
    priority: 100
    final: true
    when: customer.country in high_risk_countries
    then: {escalate: {queue: compliance, expects: approval}}
  - name: assess-claim
    when: exists customer
    then: assess
  - name: approved
    priority: 200
    when: approval.ok and exists customer
    then: {decide: {route: accept}}
"""
    e = Engine(ruleset(head + rules))
    facts = e.validate_input({"customer": customer(country="IR")})
    recorded = RecordedAnswers({"assess": {"label": "x"}})
    stopped = asyncio.run(e.run(facts, recorded, recorded, FixedClock(DAY), SequentialIds(), Limits()))
    assert stopped.outcome == "escalated" and stopped.calls == 0 and stopped.fired == ["review"]
    resumed = asyncio.run(e.run(facts, recorded, recorded, FixedClock(DAY), SequentialIds(), Limits(),
                                [HumanInput("approval", {"ok": True}, "ana")]))
    assert resumed.outcome == "decided" and resumed.decision == {"route": "accept"}
    # resumed, only what the answer enables fires: the rule the stop cut off stays cut off (no call)
    assert resumed.fired == ["review", "approved"] and resumed.calls == 0
    assert asyncio.run(replay(e, resumed.to_dict())).identical


# -- 18. text, lists, powers, months --------------------------------------------------------------------

def test_plus_joins_strings_and_text_writes_numbers_as_json_does() -> None:
    assert decides('=claim.ref + "-" + claim.region + "-" + text(claim.year)', {"claim": claim()}) == "k1-north-2026"
    assert decides("=text(claim.amount * 1.5)", {"claim": claim(amount=1800)}) == "2700"
    assert decides("=text(claim.amount / 3)", {"claim": claim(amount=1)}) == "0.333333333333333"
    assert [text_of(v) for v in (2700.0, 2700, 0.1 + 0.2, 1e21, 1.5e-7, True, -0.5)] == [
        "2700", "2700", "0.3", "1e+21", "1.5e-7", "true", "-0.5"]
    (e,) = errors('  - {name: r, when: exists claim, then: {decide: {a: "=claim.ref + claim.amount"}}}\n')
    assert e[0] == "type_mismatch" and "text(n)" in ruleset_hint(e)


def ruleset_hint(e: tuple[str, int, int, str]) -> str:
    with pytest.raises(CompileErrors) as info:
        ruleset(HEAD + '  - {name: r, when: exists claim, then: {decide: {a: "=claim.ref + claim.amount"}}}\n')
    return info.value.errors[0].hint


def test_list_aggregates_distinct_sort_join_and_len() -> None:
    facts = {"customer": customer(), "alert": [alert("structuring", 80), alert("cash-volume", 40),
                                               alert("structuring", 90, "c2"), alert("abroad", 70)]}
    assert decides("=list(alert.reason)", facts, "exists customer") == [
        "structuring", "cash-volume", "structuring", "abroad"]  # in the order the facts were asserted
    assert decides("=distinct(list(alert.reason))", facts, "exists customer") == ["structuring", "cash-volume",
                                                                                  "abroad"]
    assert decides("=sort(distinct(list(alert.reason)))", facts, "exists customer") == [
        "abroad", "cash-volume", "structuring"]
    assert decides('=join(distinct(list(alert.reason where alert.score > 50)), ", ")', facts,
                   "exists customer") == "structuring, abroad"
    assert decides("=len(list(alert.reason where alert.customer == customer.ref))", facts, "exists customer") == 3
    assert decides("=sort(list(alert.score))", facts, "exists customer") == [40, 70, 80, 90]
    assert decides("=list(alert where alert.customer == \"c2\")", facts, "exists customer") == [
        {"customer": "c2", "reason": "structuring", "score": 90}]
    assert decides("=list(alert.reason)", {"customer": customer()}, "exists customer") == []
    assert decides('=join(list(alert.reason), "; ")', {"customer": customer()}, "exists customer") == ""
    assert decides("=sort(quarter_days)", {"claim": claim()}) == ["2026-03-31", "2026-06-30"]
    # count, sum, min and max of a list value (one argument that is not a fact field): functions, as in DMN
    assert decides("=max(list(alert.score)) - min(list(alert.score))", facts, "exists customer") == 50
    assert decides("=sum(list(alert.score where alert.customer == customer.ref))", facts, "exists customer") == 190
    assert decides("=count(high_risk_countries) + count(distinct(list(alert.reason)))", facts,
                   "exists customer") == 7
    assert decides("=max(quarter_days)", {"claim": claim()}) == "2026-06-30"
    d = run("  - {name: r, when: exists customer, then: {decide: {top: '=max(list(alert.score))', n: 1}}}\n",
            {"customer": customer()})
    assert d.decision == {"n": 1}  # the max of no values is absent: the field is left out
    assert run("  - {name: r, when: 'exists customer and list(alert.reason) contains \"abroad\"', "
               "then: {decide: {a: 1}}}\n", facts).fired == ["r"]


def test_list_of_whole_facts_leaves_out_the_row_a_collect_table_adds() -> None:
    head = HEAD.replace("  assessment:\n", "  flag:\n    name: str\n  assessment:\n")
    rules = """\
  - {name: r, priority: -1, when: exists claim, then: {decide: {flags: "=list(flag)", rows: "=list(flag.row)"}}}
tables:
  - name: flags
    hit: collect
    inputs: [claim.amount, claim.region]
    outputs: [flag.name]
    rows:
      - ["> 1000", "-", big]
      - ["-", north, north]
"""
    d = run(Engine(ruleset(head + rules)), {"claim": claim()})
    assert d.decision == {"flags": [{"name": "big"}, {"name": "north"}], "rows": [1, 2]}


@pytest.mark.slow
def test_a_list_valued_decision_is_stored_replayed_and_sent_over_grpc_as_a_list() -> None:
    from adapters.doors.grpc import convert

    e = engine("  - {name: r, when: exists customer, then: {decide: {reasons: '=distinct(list(alert.reason))'}}}\n")
    d = run(e, {"customer": customer(), "alert": [alert("structuring"), alert("cash-volume")]})
    record = json.loads(json.dumps(d.to_dict()))  # as stored
    assert record["decision"] == {"reasons": ["structuring", "cash-volume"]}
    assert asyncio.run(replay(e, record)).identical
    message = convert.decision(d.to_dict())
    reasons = message.decision.fields["reasons"]
    assert reasons.WhichOneof("kind") == "list_value"
    assert [v.string_value for v in reasons.list_value.values] == ["structuring", "cash-volume"]


@settings(max_examples=200, deadline=None)
@given(st.integers(-50, 50), st.integers(-9, 9), st.integers(0, 4))
def test_power_binds_tighter_than_times_and_is_right_associative(a: int, b: int, c: int) -> None:
    from engine.language.check import Checker, compile_expr
    from engine.language.expr import parse

    for text, expected in [(f"{a} * ({b}) ** {c}", a * b ** c), (f"({b}) ** {c} ** 2", b ** c ** 2),
                           (f"{a} / 2 ** {c}", a / 2 ** c), (f"({b}) ** {c} + {a}", b ** c + a),
                           (f"(-{abs(b)}) ** {c}", (-abs(b)) ** c), (f"-({abs(b)} ** {c})", -(abs(b) ** c))]:
        node = parse(text)
        checker = Checker({})
        checker.type_of(node)
        assert compile_expr(checker.lower(node), {})({}, None) == expected, text  # type: ignore[arg-type]


def test_minus_before_an_unbracketed_power_is_ambiguous() -> None:
    (e,) = errors("  - name: r\n    when: -claim.amount ** 2 > 5\n    then: {decide: {a: 1}}\n")
    assert e[:3] == ("ambiguous_power", LINE + 1, 11)
    (e,) = errors("  - name: r\n    when: claim.amount * -claim.year ** 2 > 5\n    then: {decide: {a: 1}}\n")
    assert e[:3] == ("ambiguous_power", LINE + 1, 26)
    assert decides("=(-claim.year) ** 2 + -(claim.year ** 2)", {"claim": claim(year=3)}) == 0


def test_a_number_beyond_1e300_fails_the_decision_naming_the_rule() -> None:
    rules = "  - {name: huge, when: claim.amount ** 40 > 1, then: {decide: {a: 1}}}\n"
    d = run(rules, {"claim": claim(amount=1e10)})
    assert d.outcome == "failed" and "rule 'huge'" in d.reason and "1e300" in d.reason
    assert run(rules, {"claim": claim(amount=10)}).outcome == "decided"
    d = run("  - {name: big, when: exists claim, then: {decide: {a: '=claim.amount * 1e300'}}}\n",
            {"claim": claim(amount=10)})
    assert d.outcome == "failed" and "rule 'big'" in d.reason
    assert decides("=2 ** -1", {"claim": claim()}) == 0.5
    assert run("  - {name: r, when: 0 ** -1 > 1 and exists claim, then: {decide: {a: 1}}}\n",
               {"claim": claim()}).outcome == "no_decision"  # undefined, like division by zero: false


@pytest.mark.parametrize(("expr", "expected"), [
    ('add_months(date("2024-01-31"), 1)', "2024-02-29"), ('add_months(date("2023-01-31"), 1)', "2023-02-28"),
    ('add_months(date("2024-03-31"), -1)', "2024-02-29"), ('add_months(date("2024-05-31"), 1)', "2024-06-30"),
    ('add_months(date("2024-12-15"), 1)', "2025-01-15"), ('add_months(date("2024-01-15"), -13)', "2022-12-15"),
    ('add_years(date("2024-02-29"), 1)', "2025-02-28"), ('add_years(date("2024-02-29"), 4)', "2028-02-29"),
    ('add_months(datetime("2024-01-31T22:30:00+01:00"), 1)', "2024-02-29T21:30:00Z"),
])
def test_add_months_and_add_years_land_on_the_month_end(expr: str, expected: str) -> None:
    assert decides(f"={expr}", {"claim": claim()}) == expected


@settings(max_examples=300, deadline=None)
@given(st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)), st.integers(-1200, 1200))
def test_add_months_against_the_calendar(day: dt.date, n: int) -> None:
    got = dt.date.fromisoformat(dates.add_months(day.isoformat(), n))
    months = day.year * 12 + day.month - 1 + n
    assert (got.year, got.month) == (months // 12, months % 12 + 1)
    last = (dt.date(got.year + (got.month == 12), got.month % 12 + 1, 1) - dt.timedelta(days=1)).day
    assert got.day == min(day.day, last)


# -- 20. summary rules ----------------------------------------------------------------------------------

def test_a_summary_rule_with_two_alerts_decides_two() -> None:
    rules = """\
  - name: summary
    when: exists customer and count(alert) >= 1
    then: {decide: {alerts: "=count(alert)", reasons: "=list(alert.reason)"}}
  - name: raise-alert
    when: customer.tier == "gold"
    then: {assert: {alert: {customer: =customer.ref, reason: gold-review, score: 1}}}
"""
    d = run(rules, {"customer": customer(tier="gold"), "alert": [alert("structuring")]})
    assert d.decision == {"alerts": 2, "reasons": ["structuring", "gold-review"]}
    proposals = [e for e in d.trace if e["kind"] == "proposal"]
    assert [(p["payload"]["alerts"], p.get("superseded", False), p["won"]) for p in proposals] == [
        (1, True, False), (2, False, True)]
    # a rule whose facts are the alerts themselves proposes once per alert (item 2): the first wins the tie
    per_alert = "  - {name: each, when: exists alert, then: {decide: {alerts: '=count(alert)'}}}\n"
    d = run(per_alert, {"customer": customer(), "alert": [alert("a"), alert("b")]})
    assert [e["rule"] for e in d.trace if e["kind"] == "fired"] == ["each", "each"]
    assert not any(e.get("superseded") for e in d.trace)
