"""RULESETS.md items 11-14: computed values, dates, functions and aggregates - one behaviour per test."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock, SequentialIds
from engine.compile import compile_ruleset
from engine.errors import CompileErrors, InvalidInput
from engine.language import dates
from engine.language.check import round_half_even
from engine.loop import Decision, Engine
from engine.recorded import RecordedAnswers
from engine.replay import replay
from tests.helpers import ruleset

HEAD = """\
ruleset: pol
facts:
  applicant:
    ref: str
    birth: date
    income: number
    email: {type: str, optional: true}
    alt_email: {type: str, optional: true}
    tags: {type: list, items: str}
  loan:
    ref: str
    amount: number
    status: {enum: [open, closed, default]}
    opened: date
  payment:
    customer: str
    amount: number
    at: datetime
  exposure:
    total: {type: number, min: 0, max: 1000000}
    count: int
  fee:
    code: str
    pct: number
input: [applicant, loan, payment]
tools:
  more_loans:
    connector: lookup
    produces: loan
    params: {ref: "=upper(applicant.ref)"}
rules:
"""

DAY = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC).timestamp()


def applicant(**kw: Any) -> dict[str, Any]:
    return {"ref": "a1", "birth": "1990-06-15", "income": 50_000, "tags": [], **kw}


def loan(ref: str, amount: float, status: str = "open", opened: str = "2026-01-10") -> dict[str, Any]:
    return {"ref": ref, "amount": amount, "status": status, "opened": opened}


def run(rules: str, facts: dict[str, Any], answers: dict[str, Any] | None = None, at: float = DAY) -> Decision:
    engine = Engine(ruleset(HEAD + rules))
    recorded = RecordedAnswers(answers or {})
    return asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(at), SequentialIds()))


def fires(when: str, facts: dict[str, Any], at: float = DAY) -> bool:
    rules = f"  - name: r\n    when: '{when}'\n    then: {{decide: {{route: yes}}}}\n"
    return run(rules, facts, at=at).fired == ["r"]


def errors(rules: str) -> list[tuple[str, int, int]]:
    with pytest.raises(CompileErrors) as info:
        ruleset(HEAD + rules)
    return [(e.code, e.where.line, e.where.column) for e in info.value.errors]


LINE = HEAD.count("\n") + 1  # the first rule's line


# -- 12. dates ------------------------------------------------------------------------------------------

def test_date_and_datetime_input_is_normalised_and_bad_dates_name_the_field() -> None:
    d = run("  - name: r\n    when: exists payment\n    then: {decide: {at: =payment.at}}\n",
            {"payment": {"customer": "c", "amount": 1, "at": "2026-03-01T12:00:00+02:00"}})
    assert d.decision == {"at": "2026-03-01T10:00:00Z"}
    assert d.inputs[0]["values"]["at"] == "2026-03-01T10:00:00Z"
    for bad, path in [({"applicant": applicant(birth="2026-02-30")}, "facts.applicant.birth"),
                      ({"applicant": applicant(birth="01/02/2026")}, "facts.applicant.birth"),
                      ({"payment": {"customer": "c", "amount": 1, "at": "2026-03-01T12:00:00"}}, "facts.payment.at"),
                      ({"payment": {"customer": "c", "amount": 1, "at": 1767225600}}, "facts.payment.at")]:
        with pytest.raises(InvalidInput) as info:
            run("  - name: r\n    when: exists applicant\n    then: {decide: {x: 1}}\n", bad)
        assert info.value.where is not None and info.value.where.path == path
    with pytest.raises(InvalidInput) as info:
        run("  - name: r\n    when: exists payment\n    then: {decide: {x: 1}}\n",
            {"payment": {"customer": "c", "amount": 1, "at": "2026-03-01T12:00:00"}})
    assert "offset" in info.value.message


@pytest.mark.parametrize(("when", "expected"), [
    ('applicant.birth < date("1990-06-16")', True),
    ('applicant.birth >= date("1990-06-16")', False),
    ('applicant.birth == date("1990-06-15")', True),
    ('applicant.birth in [date("1990-06-15"), date("2000-01-01")]', True),
    ("days(applicant.birth, decision.date) > 12000", True),
    ("years(applicant.birth, decision.date) == 35", True),
    ("years(applicant.birth, decision.date) >= 18", True),
    ('add_days(applicant.birth, 17) == date("1990-07-02")', True),
    ('add_days(applicant.birth, -15) == date("1990-05-31")', True),
    ('exists applicant and decision.date == date("2026-03-01")', True),
    ('exists applicant and decision.time > datetime("2026-03-01T12:29:59+02:00")', True),
    ('exists applicant and decision.time < datetime("2026-03-01T10:30:00.000001Z")', True),
    ('exists applicant and date(decision.time) == decision.date', True),
    ('exists applicant and date("2026-03-01") == decision.date', True),
])
def test_date_conditions(when: str, expected: bool) -> None:
    assert fires(when, {"applicant": applicant()}) is expected


def test_datetimes_compare_as_instants_whatever_their_offset_and_fraction() -> None:
    rules = ("  - name: r\n    when: payment as p, payment as q, p.at < q.at\n"
             "    then: {decide: {first: =p.customer}}\n")
    facts = {"payment": [{"customer": "late", "amount": 1, "at": "2026-03-01T10:00:00.5+00:00"},
                         {"customer": "early", "amount": 1, "at": "2026-03-01T11:00:00+01:00"}]}
    d = run(rules, facts)
    assert d.decision == {"first": "early"}  # 10:00:00Z is before 10:00:00.5Z
    assert len(d.fired) == 1


def test_days_years_and_add_days_by_the_calendar() -> None:
    assert dates.days_between("2026-03-01", "2026-02-01", "date") == -28
    assert dates.days_between("2026-03-01T10:00:00Z", "2026-03-03T09:59:59Z", "datetime") == 1
    assert dates.days_between("2026-03-03T09:59:59Z", "2026-03-01T10:00:00Z", "datetime") == -1  # toward zero
    # a 29 February birthday is reached on 1 March in other years
    assert dates.years_between("2008-02-29", "2026-02-28", "date") == 17
    assert dates.years_between("2008-02-29", "2026-03-01", "date") == 18
    assert dates.years_between("2008-02-29", "2028-02-29", "date") == 20
    assert dates.years_between("2026-03-01", "2008-02-29", "date") == -18
    assert dates.years_between("2000-03-01T10:00:00Z", "2018-03-01T09:59:59Z", "datetime") == 17
    assert dates.add_days("2024-02-28", 1, "date") == "2024-02-29"
    assert dates.add_days("2026-03-01T10:00:00Z", -1, "datetime") == "2026-02-28T10:00:00Z"


def _age_by_counting(a: dt.date, b: dt.date) -> int:
    """Whole years by stepping through anniversaries (29 February's falls on 1 March in common years)."""
    def anniversary(year: int) -> dt.date:
        try:
            return a.replace(year=year)
        except ValueError:
            return dt.date(year, 3, 1)
    if b < a:
        return -_age_by_counting(b, a)
    n = 0
    while a.year + n + 1 <= 9999 and anniversary(a.year + n + 1) <= b:
        n += 1
    return n


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)),
       st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_days_and_years_agree_with_the_calendar(a: dt.date, b: dt.date) -> None:
    assert dates.days_between(a.isoformat(), b.isoformat(), "date") == (b - a).days
    assert dates.years_between(a.isoformat(), b.isoformat(), "date") == _age_by_counting(a, b)


def test_decision_date_comes_from_the_record_so_a_replay_on_a_later_day_is_identical() -> None:
    rules = ("  - name: adult\n    when: years(applicant.birth, decision.date) >= 18\n"
             "    then: {decide: {route: adult, on: =decision.date, at: =decision.time}}\n")
    engine = Engine(ruleset(HEAD + rules))
    recorded = RecordedAnswers({})
    birth = {"applicant": applicant(birth="2008-03-01")}
    d = asyncio.run(engine.decide(birth, recorded, recorded, FixedClock(DAY), SequentialIds()))
    assert d.decision == {"route": "adult", "on": "2026-03-01", "at": "2026-03-01T10:30:00Z"}
    before = asyncio.run(engine.decide(birth, recorded, recorded, FixedClock(DAY - 86_400), SequentialIds()))
    assert before.outcome == "no_decision"  # the day before the 18th birthday
    result = asyncio.run(replay(engine, d.to_dict()))  # replayed "today", years later
    assert result.identical and result.record is not None
    assert result.record.decision == d.decision


# -- 13. functions --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "value"), [
    ("len(applicant.ref)", 2), ("len(applicant.tags)", 3), ('lower("AbC")', "abc"), ("upper(applicant.ref)", "A1"),
    ("abs(-3.5)", 3.5), ("min(3, 1, 2)", 1), ("max(3, 1, 2)", 3), ('min("b", "a")', "a"),
    ('max(applicant.birth, date("2000-01-01"))', "2000-01-01"),
    ("round(2.5)", 2), ("round(3.5)", 4), ("round(2.675, 2)", 2.68), ("round(1234.5, -2)", 1200),
    ("round(-2.5)", -2), ("coalesce(applicant.email, applicant.alt_email, \"none\")", "b@x"),
    ("min(applicant.income * 0.1, 25000)", 5000), ("applicant.income / 4", 12500),
])
def test_functions(expr: str, value: object) -> None:
    rules = f"  - name: r\n    when: exists applicant\n    then: {{decide: {{v: '={expr}'}}}}\n"
    d = run(rules, {"applicant": applicant(tags=["x", "y", "z"], alt_email="b@x")})
    assert d.decision == {"v": value}
    assert type(d.decision["v"]) is type(value)


@settings(max_examples=400, deadline=None)
@given(st.decimals(min_value=-10**9, max_value=10**9, allow_nan=False, places=4), st.integers(-3, 4))
def test_round_is_half_even_on_the_written_number(n: Decimal, k: int) -> None:
    as_float = float(n)
    expected = Decimal(repr(as_float)).quantize(Decimal(1).scaleb(-k), rounding=ROUND_HALF_EVEN)
    assert round_half_even(as_float, k) == float(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10**6, 10**6), min_size=2, max_size=5), st.integers(-10**6, 10**6))
def test_functions_agree_with_python(xs: list[int], y: int) -> None:
    args = ", ".join(str(x) for x in xs)
    rules = (f"  - name: r\n    when: exists applicant\n    then: {{decide: {{lo: '=min({args})', hi: '=max({args})',"
             f" a: '=abs({y})', s: '={xs[0]} - {xs[1]} * 2'}}}}\n")
    d = run(rules, {"applicant": applicant()})
    assert d.decision == {"lo": min(xs), "hi": max(xs), "a": abs(y), "s": xs[0] - xs[1] * 2}


def test_absent_optional_fields() -> None:
    assert fires("len(applicant.email) > 0", {"applicant": applicant()}) is False
    assert fires('coalesce(applicant.email, "x") == "x"', {"applicant": applicant()}) is True
    d = run("  - name: r\n    when: exists applicant\n    then: {decide: {e: =applicant.email, n: 1}}\n",
            {"applicant": applicant()})
    assert d.decision == {"n": 1}  # an absent value leaves the field out


# -- 11. computed values ------------------------------------------------------------------------------

def test_computed_values_in_decide_assert_reason_and_tool_params() -> None:
    rules = """\
  - name: fetch
    when: exists applicant
    then: more_loans
  - name: total
    when: exists applicant
    then:
      assert: {exposure: {total: "=sum(loan.amount)", count: "=count(loan)"}}
  - name: decide
    priority: -1
    when: exists exposure
    then:
      decide: {route: review, total: =exposure.total, reason: '=lower("OVER")'}
"""
    d = run(rules, {"applicant": applicant(), "loan": [loan("l1", 100), loan("l2", 50.25)]},
            answers={"more_loans": []})
    call = next(e for e in d.trace if e["kind"] == "call")
    assert call["request"]["params"] == {"ref": "A1"}
    assert d.decision == {"route": "review", "total": 150.25}
    assert d.reason == "over"
    facts = [e["values"] for e in d.trace if e["kind"] == "fact" and e["type"] == "exposure"]
    assert facts == [{"total": 150.25, "count": 2}]


def test_a_computed_value_outside_the_field_fails_the_decision_naming_the_field() -> None:
    rules = """\
  - name: total
    when: exists applicant
    then:
      assert: {exposure: {total: "=applicant.income * -1", count: 1}}
"""
    d = run(rules, {"applicant": applicant()})
    assert d.outcome == "failed"
    assert "exposure.total" in d.reason and "minimum" in d.reason
    d = run("  - name: r\n    when: exists applicant\n    then: {decide: {x: =applicant.income / 0}}\n",
            {"applicant": applicant()})
    assert d.outcome == "failed" and "decide.x" in d.reason


def test_compile_errors_of_computed_values() -> None:
    rules = """\
  - name: table-row
    when: exists fee
    then:
      decide: {code: fee.code, pct: "=fee.pct"}
"""
    assert errors(rules) == [("ambiguous_value", LINE + 3, 22)]
    rules = """\
  - name: r
    when: exists applicant
    then:
      assert: {exposure: {total: "=applicant.ref", count: 1}}
"""
    assert errors(rules) == [("type_mismatch", LINE + 3, 36)]
    rules = """\
  - name: r
    when: exists applicant
    then:
      decide: {x: "=loan.amount"}
"""
    assert errors(rules) == [("unbound_fact", LINE + 3, 21)]
    rules = """\
  - name: r
    when: exists applicant
    then:
      decide: {x: "=median(applicant.income)"}
"""
    assert errors(rules) == [("unknown_function", LINE + 3, 21)]


# -- 14. aggregates -------------------------------------------------------------------------------------

def test_aggregates_with_and_without_filters() -> None:
    loans = [loan("l1", 100, "default"), loan("l2", 250_000), loan("l3", 30, "default"), loan("l4", 5, "closed")]
    facts = {"applicant": applicant(), "loan": loans}
    assert fires('exists applicant and count(loan where loan.status == "default") >= 2', facts)
    assert not fires('exists applicant and count(loan where loan.status == "default") >= 3', facts)
    assert fires("exists applicant and sum(loan.amount) > 250000", facts)
    assert fires('exists applicant and sum(loan.amount where loan.status == "open") == 250000', facts)
    assert fires("exists applicant and max(loan.amount) == 250000 and min(loan.amount) == 5", facts)
    assert fires('exists applicant and min(loan.opened) == date("2026-01-10")', facts)
    # the filter may name the facts the rule matched
    assert fires("exists applicant and count(loan where loan.ref == applicant.ref) == 0", facts)
    # with no facts: count and sum are 0; a comparison with min/max is false
    alone = {"applicant": applicant()}
    assert fires("exists applicant and count(loan) == 0 and sum(loan.amount) == 0", alone)
    assert not fires("exists applicant and max(loan.amount) > 0", alone)
    assert fires("exists applicant and not (max(loan.amount) > 0)", alone)  # the comparison is false


def test_an_aggregate_rule_fires_again_when_a_round_adds_facts() -> None:
    rules = """\
  - name: fetch
    when: exists applicant
    then: more_loans
  - name: exposure
    when: exists applicant and sum(loan.amount) > 100
    then:
      decide: {route: review, total: "=sum(loan.amount)"}
"""
    d = run(rules, {"applicant": applicant(), "loan": [loan("l1", 150)]},
            answers={"more_loans": [[loan("l2", 20), loan("l3", 30)]]})  # one call answering two loans
    fired = [e for e in d.trace if e["kind"] == "fired" and e["rule"] == "exposure"]
    assert [e["aggregates"] for e in fired] == [{"sum(loan.amount)": 150}, {"sum(loan.amount)": 200}]
    assert [e["round"] for e in fired] == [1, 2]
    # item 20: the re-firing on the same applicant replaces its own earlier proposal, kept as superseded
    assert d.decision == {"route": "review", "total": 200}
    proposals = [e for e in d.trace if e["kind"] == "proposal"]
    assert [(p["payload"]["total"], p.get("superseded", False), p["won"]) for p in proposals] == [
        (150, True, False), (200, False, True)]
    # an unchanged value does not fire it again
    d = run(rules, {"applicant": applicant(), "loan": [loan("l1", 150)]},
            answers={"more_loans": [loan("l1", 150)]})
    assert d.fired.count("exposure") == 1


def test_forward_chained_facts_re_fire_an_aggregate_in_the_same_round() -> None:
    rules = """\
  - name: fee-a
    when: applicant.income > 0
    then:
      assert: {fee: {code: a, pct: 1}}
  - name: fee-b
    when: applicant.income > 1
    then:
      assert: {fee: {code: b, pct: 2}}
  - name: fees
    priority: 5
    when: exists applicant and count(fee) > 0
    then:
      decide: {n: "=count(fee)", pct: "=sum(fee.pct)"}
"""
    d = run(rules, {"applicant": applicant()})
    assert d.fired == ["fee-a", "fees", "fee-b", "fees"]
    shown = [e.get("aggregates") for e in d.trace if e["kind"] == "fired" and e["rule"] == "fees"]
    assert shown == [{"count(fee)": 1}, {"count(fee)": 2}]


def test_aggregate_compile_errors() -> None:
    assert errors("  - name: r\n    when: count(loan) >= 2\n    then: {decide: {x: 1}}\n") == \
        [("aggregate_only", LINE + 1, 11)]
    assert errors("  - name: r\n    when: exists applicant and sum(loan.status) > 1\n    then: {decide: {x: 1}}\n") \
        == [("type_mismatch", LINE + 1, 36)]
    assert errors("  - name: r\n    when: 'exists loan and loan.opened < \"2026-01-01\"'\n"
                  "    then: {decide: {x: 1}}\n")[0][0] == "type_mismatch"
    assert errors("  - name: r\n    when: 'exists loan and loan.opened < date(\"2026-02-30\")'\n"
                  "    then: {decide: {x: 1}}\n") == [("bad_date", LINE + 1, 48)]
    assert errors("  - name: r\n    when: exists loan and lenght(loan.ref) > 1\n    then: {decide: {x: 1}}\n") == \
        [("unknown_function", LINE + 1, 27)]
    assert errors("  - name: r\n    when: exists loan and days(loan.opened, 3) > 1\n    then: {decide: {x: 1}}\n") \
        == [("type_mismatch", LINE + 1, 45)]


def test_many_facts_with_aggregates_decide_in_one_pass_each() -> None:
    rules = """\
  - name: total
    when: exists applicant and sum(loan.amount) > 1000 and count(loan where loan.status == "open") >= 2
    then:
      decide: {route: review, total: "=sum(loan.amount)"}
  - name: per-loan
    when: loan.amount > 0 and count(loan) > 998
    then:
      assert: {fee: {code: many, pct: 1}}
"""
    d = run(rules, {"applicant": applicant(), "loan": [loan(f"l{i}", 10) for i in range(999)]})
    assert d.decision == {"route": "review", "total": 9_990}
    assert d.fired.count("per-loan") == 999


def test_the_indexed_engine_fires_aggregates_and_dates_as_the_single_network_does() -> None:
    rules = """\
  - name: fetch
    when: exists applicant
    then: more_loans
  - name: fee-a
    when: applicant.income > 0
    then:
      assert: {fee: {code: a, pct: 1}}
  - name: exposure
    when: exists applicant and sum(loan.amount) > 100
    then:
      decide: {route: review, total: "=sum(loan.amount)"}
  - name: defaults
    priority: 3
    when: 'loan.status == "default" and count(loan where loan.status == "default") >= 2'
    then:
      decide: {route: reject}
  - name: recent
    when: 'loan.opened >= add_days(decision.date, -60) and loan.amount > 10'
    then:
      assert: {fee: {code: recent, pct: 2}}
  - name: fees
    priority: 5
    when: exists applicant and count(fee) > 0
    then:
      decide: {n: "=count(fee)"}
"""
    rs = ruleset(HEAD + rules)
    facts = {"applicant": applicant(), "loan": [loan("l1", 150, "default"), loan("l0", 5, "open", "2025-01-01")]}
    answers = {"more_loans": [[loan("l2", 20, "default"), loan("l3", 30)]]}
    fired = []
    for compiled in (compile_ruleset(rs, indexed=False, shard_rules=1000, shard_slots=1000),
                     compile_ruleset(rs, indexed=True, shard_rules=2, shard_slots=4)):
        engine = Engine(rs, compiled)
        recorded = RecordedAnswers(answers)
        d = asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(DAY), SequentialIds()))
        fired.append([(e["rule"], e["facts"], e.get("aggregates")) for e in d.trace if e["kind"] == "fired"])
    assert fired[0] == fired[1]
    assert [r for r, _, _ in fired[0]].count("defaults") == 2


TABLE = """\
ruleset: fees
facts:
  policy:
    ref: str
    start: date
    premium: {type: number, min: 0}
  fee:
    code: str
    amount: number
input: [policy]
tables:
  - name: fees
    hit: first
    inputs: [policy.start, policy.premium]
    outputs: [fee.code, fee.amount]
    rows:
      - ['< date("2020-01-01")',                      "-",        legacy,  0]
      - ['[date("2020-01-01")..date("2025-01-01"))',  ">= 1000",  big,     "=round(policy.premium * 0.015, 2)"]
      - ['[2020-01-01..2025-01-01)',                  "-",        small,   "=max(policy.premium * 0.02, 5)"]
      - ['>= 2025-01-01',                             "-",        new,     "=policy.premium / 100"]
rules:
  - name: charge
    when: exists fee
    then:
      decide: {code: =fee.code, amount: =fee.amount}
"""


@pytest.mark.parametrize(("start", "premium", "decision"), [
    ("2019-12-31", 5000, {"code": "legacy", "amount": 0}),
    ("2020-01-01", 1234.5, {"code": "big", "amount": 18.52}),
    ("2024-12-31", 100, {"code": "small", "amount": 5}),
    ("2025-01-01", 250, {"code": "new", "amount": 2.5}),
])
def test_decision_tables_compare_dates_and_compute_outputs(start: str, premium: float,
                                                           decision: dict[str, object]) -> None:
    rs = ruleset(TABLE)
    assert not [w for w in rs.warnings if w.code in ("table_gap", "unreachable_row")]
    recorded = RecordedAnswers({})
    d = asyncio.run(Engine(rs).decide({"policy": {"ref": "p", "start": start, "premium": premium}}, recorded,
                                      recorded, FixedClock(DAY), SequentialIds()))
    assert d.decision == decision


def test_date_tables_report_gaps_and_overlaps_in_dates() -> None:
    gap = TABLE.replace("'< date(\"2020-01-01\")'", "'< date(\"2019-06-01\")'")
    rs = ruleset(gap)
    warning = next(w for w in rs.warnings if w.code == "table_gap")
    assert 'no row covers policy.start in [date("2019-06-01")..date("2020-01-01"))' in warning.message
    overlap = TABLE.replace("hit: first", "hit: unique")
    with pytest.raises(CompileErrors) as info:
        ruleset(overlap)
    assert "rows 2 and 3 overlap" in str(info.value)
    bad = TABLE.replace("'>= 2025-01-01'", "'>= 2025-13-01'")
    with pytest.raises(CompileErrors) as info:
        ruleset(bad)
    assert info.value.errors[0].code == "bad_cell" and "not a date" in info.value.errors[0].message
    wrong = TABLE.replace('"=policy.premium / 100"', '"=policy.ref"')
    with pytest.raises(CompileErrors) as info:
        ruleset(wrong)
    assert info.value.errors[0].code == "type_mismatch"
    ambiguous = TABLE.replace("new,     ", "policy.ref, ")
    with pytest.raises(CompileErrors) as info:
        ruleset(ambiguous)
    assert info.value.errors[0].code == "ambiguous_value"


@pytest.mark.slow
def test_table_export_and_import_keep_date_cells_and_expressions(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from adapters.doors.cli.main import app

    path = tmp_path / "fees.yaml"
    path.write_text(TABLE)
    runner = CliRunner()
    exported = runner.invoke(app, ["table", "export", str(path), "fees"])
    assert exported.exit_code == 0, exported.output
    assert 'date(""2020-01-01"")' in exported.output and "=round(policy.premium * 0.015, 2)" in exported.output
    csv_path = tmp_path / "fees.csv"
    csv_path.write_text(exported.output.replace("0.015", "0.0125"))
    imported = runner.invoke(app, ["table", "import", str(path), "fees", str(csv_path)])
    assert imported.exit_code == 0, imported.output
    rs = ruleset(path.read_text())
    recorded = RecordedAnswers({})
    d = asyncio.run(Engine(rs).decide({"policy": {"ref": "p", "start": "2021-05-05", "premium": 2000}}, recorded,
                                      recorded, FixedClock(DAY), SequentialIds()))
    assert d.decision == {"code": "big", "amount": 25}
    assert rs.tables[0].to_rows() == ruleset(TABLE.replace("0.015", "0.0125")).tables[0].to_rows()


def test_why_shows_the_aggregate_values_a_rule_fired_with() -> None:
    from engine.explain import why

    rules = """\
  - name: exposure
    when: exists applicant and sum(loan.amount) > 100
    then:
      decide: {route: review}
  - name: quiet
    when: 'exists applicant and count(loan where loan.status == "default") > 0'
    then:
      decide: {route: never}
"""
    rs = ruleset(HEAD + rules)
    recorded = RecordedAnswers({})
    d = asyncio.run(Engine(rs).decide({"applicant": applicant(), "loan": [loan("l1", 150)]}, recorded, recorded,
                                      FixedClock(DAY), SequentialIds()))
    assert why(rs, d.to_dict(), "exposure") == ["'exposure' fired at step 1 (round 1) on applicant #1 with "
                                                "sum(loan.amount) = 150"]
    lines = why(rs, d.to_dict(), "quiet")
    assert 'count(loan where loan.status == "default") > 0\' is false' in lines[-1]


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                                               dt.timezone(dt.timedelta(hours=-8))])))
def test_the_engines_own_calendar_agrees_with_pythons(moment: dt.datetime) -> None:
    """engine/ reads no clock and so imports no datetime: its integer calendar must agree with Python's."""
    day = moment.date()
    assert dates.canonical_date(day.isoformat()) == day.isoformat()
    assert dates.days_from_civil(day.year, day.month, day.day) == (day - dt.date(1970, 1, 1)).days
    assert dates.civil_from_days((day - dt.date(1970, 1, 1)).days) == (day.year, day.month, day.day)
    utc = moment.astimezone(dt.UTC)
    if not 1 <= utc.year <= 9999:
        return
    def iso(u: dt.datetime) -> str:
        return u.replace(tzinfo=None, microsecond=0).isoformat() + (f".{u.microsecond:06d}" if u.microsecond
                                                                    else "") + "Z"

    assert dates.canonical_datetime(moment.isoformat()) == iso(utc)
    stamp = utc.timestamp()
    assert dates.from_timestamp(stamp)[1] == iso(dt.datetime.fromtimestamp(stamp, dt.UTC))


def test_computed_numbers_carry_no_binary_noise() -> None:
    rules = ("  - name: r\n    when: exists applicant\n    then: {decide: {a: '=applicant.income * 1.1', "
             "b: '=0.1 + 0.2', c: '=applicant.income / 3'}}\n")
    d = run(rules, {"applicant": applicant(income=100)})
    assert d.decision == {"a": 110, "b": 0.3, "c": 33.3333333333333}
