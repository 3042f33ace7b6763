"""Decision tables: hit policies, cells, overlap and gap detection, and rows traced as TABLE#N."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.errors import CompileErrors
from tests.helpers import decide, ruleset

FACTS = """
ruleset: tables
facts:
  claim:
    amount: {type: number, min: 0}
    tier: {enum: [standard, gold, platinum]}
    region: str
    vip: bool
  risk:
    level: {enum: [high, medium, low]}
  flag:
    name: str
input: [claim]
"""


def table_ruleset(tables: str, rules: str = "") -> str:
    return FACTS + (rules or "") + tables


RISK = """
tables:
  - name: risk-tier
    hit: {hit}
    inputs: [claim.amount, claim.tier]
    outputs: [risk.level]
    rows:
{rows}
  - name: route
    hit: first
    inputs: [risk.level]
    outputs: [decide.route, decide.reason]
    rows:
      - [high, senior, "high risk"]
      - [medium, standard, "-"]
      - ["-", fast-track, "low risk"]
"""


def claim(amount: float, tier: str = "standard", region: str = "EU", vip: bool = False) -> dict[str, object]:
    return {"claim": {"amount": amount, "tier": tier, "region": region, "vip": vip}}


def rows(*lines: str) -> str:
    return "\n".join(f"      - {line}" for line in lines)


def test_unique_table_feeds_another_table_and_traces_rows() -> None:
    rs = ruleset(table_ruleset(RISK.format(hit="unique", rows=rows(
        '[">= 50000", "-", high]', '["[1000..50000)", "gold, platinum", low]', '["[1000..50000)", standard, medium]',
        '["< 1000", "-", low]'))))
    assert [r.name for r in rs.rules] == [f"risk-tier#{i}" for i in range(1, 5)] + ["route#1", "route#2", "route#3"]
    assert not rs.warnings
    d = decide(rs, claim(80000))
    assert (d.outcome, d.decision, d.reason, d.rule) == ("decided", {"route": "senior"}, "high risk", "route#1")
    assert d.fired == ["risk-tier#1", "route#1"]  # route is hit: first
    d = decide(rs, claim(20000, "standard"))
    assert (d.decision, d.fired) == ({"route": "standard"}, ["risk-tier#3", "route#2"])
    assert d.reason == ""
    d = decide(rs, claim(20000, "platinum"))
    assert (d.decision, d.fired) == ({"route": "fast-track"}, ["risk-tier#2", "route#3"])
    d = decide(rs, claim(1000, "gold"))  # 1000 is inside [1000..50000), not < 1000
    assert d.fired[0] == "risk-tier#2"
    # the trace names the row that matched and the fact it matched
    facts = {e["seq"]: e for e in d.trace if e["kind"] == "fact"}
    fired = [e for e in d.trace if e["kind"] == "fired"]
    assert fired[0]["rule"] == "risk-tier#2" and facts[fired[0]["facts"]["claim"]]["values"]["tier"] == "gold"
    derived = facts[fired[1]["facts"]["risk"]]
    assert (derived["values"], derived["by"]) == ({"level": "low"}, "risk-tier#2")


def test_unique_overlap_is_a_compile_error_naming_both_rows() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(table_ruleset(RISK.format(hit="unique", rows=rows(
            '[">= 50000", "-", high]', '["(40000..60000]", gold, low]', '["< 50000", standard, medium]'))))
    (err,) = [x for x in e.value.errors if x.code == "table_overlap"]
    assert "rows 1 and 2 overlap" in err.message
    assert (err.where.line, err.where.column) == (21, 9)


def test_first_policy_fires_only_the_first_matching_row() -> None:
    rs = ruleset(table_ruleset(RISK.format(hit="first", rows=rows(
        '["> 100000", "-", high]', '["-", gold, low]', '["> 10000", "-", medium]', '["-", "-", low]'))))
    assert decide(rs, claim(200000, "gold")).fired[0] == "risk-tier#1"
    assert decide(rs, claim(50000, "gold")).fired[0] == "risk-tier#2"
    d = decide(rs, claim(50000, "standard"))
    assert d.fired[0] == "risk-tier#3" and d.decision == {"route": "standard"}
    d = decide(rs, claim(5, "standard"))
    assert [f for f in d.fired if f.startswith("risk-tier")] == ["risk-tier#4"]
    assert not [w for w in rs.warnings if w.code == "table_gap"]


def test_priority_policy_picks_the_highest_ranked_output() -> None:
    rs = ruleset(table_ruleset(RISK.format(hit="priority", rows=rows(
        '["-", "-", low]', '["> 10000", "-", medium]', '["> 100000", "-", high]'))))
    assert decide(rs, claim(5)).fired[0] == "risk-tier#1"
    assert decide(rs, claim(50000)).fired[0] == "risk-tier#2"  # enum order: high, medium, low
    assert decide(rs, claim(500000)).fired[0] == "risk-tier#3"
    ranked = ruleset(table_ruleset(RISK.format(hit="priority", rows=rows(
        '["-", "-", low]', '["> 10000", "-", medium]', '["> 100000", "-", high]')).replace(
        "outputs: [risk.level]\n", "outputs: [risk.level]\n    ranking: [low, medium, high]\n", 1)))
    assert decide(ranked, claim(500000)).fired[0] == "risk-tier#1"


def test_collect_policy_asserts_a_fact_per_matching_row() -> None:
    rs = ruleset(FACTS + """
tables:
  - name: flags
    hit: collect
    inputs: [claim.amount, claim.region, claim.vip]
    outputs: [flag.name]
    rows:
      - ["> 10000", "-", "-", large]
      - ["-", "not EU, UK", "-", foreign]
      - ["-", "-", true, vip]
rules:
  - name: count
    when: exists flag
    then: {decide: {route: flagged}}
""")
    d = decide(rs, claim(20000, region="US", vip=True))
    assert [f for f in d.fired if f.startswith("flags")] == ["flags#1", "flags#2", "flags#3"]
    asserted = sorted(e["values"]["name"] for e in d.trace if e["kind"] == "fact" and e["type"] == "flag")
    assert asserted == ["foreign", "large", "vip"]
    d = decide(rs, claim(5, region="UK"))
    assert d.outcome == "no_decision" and not d.fired


def test_collect_cannot_decide() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(FACTS + """
tables:
  - name: t
    hit: collect
    inputs: [claim.amount]
    outputs: [decide.route]
    rows:
      - ["-", x]
""")
    assert e.value.errors[0].code == "bad_value" and "collect" in e.value.errors[0].message


def test_escalate_outputs_and_table_when() -> None:
    rs = ruleset(FACTS + """
tables:
  - name: review
    hit: first
    when: claim.region != "EU"
    inputs: [claim.tier]
    outputs: [escalate.queue, escalate.reason]
    rows:
      - [platinum, vip-desk, "platinum outside EU"]
      - ["-", intl, "-"]
""")
    d = decide(rs, claim(1, "platinum", region="US"))
    assert (d.outcome, d.decision, d.reason) == ("escalated", {"queue": "vip-desk"}, "platinum outside EU")
    assert decide(rs, claim(1, "platinum", region="EU")).outcome == "no_decision"


def test_gap_and_unreachable_row_warnings() -> None:
    rs = ruleset(table_ruleset(RISK.format(hit="first", rows=rows(
        '[">= 1000", gold, high]', '["< 1000", "-", low]', '["< 10", "-", low]'))))
    gaps = [w for w in rs.warnings if w.code == "table_gap"]
    assert len(gaps) == 1
    # merged as cells write them: the point 1000 and everything above it are one interval
    assert gaps[0].message.endswith("no row covers claim.amount >= 1000, claim.tier in [standard, platinum]")
    (dead,) = [w for w in rs.warnings if w.code == "unreachable_row"]
    assert "row 3" in dead.message and dead.where.line == 22
    # the unreachable row is still a rule, and never fires
    assert decide(rs, claim(5)).fired[0] == "risk-tier#2"


def test_no_gap_warning_when_the_field_range_is_covered() -> None:
    # amount has min: 0, so "< 1000" and ">= 1000" cover it; an int field has no values between 9 and 10
    rs = ruleset(FACTS.replace("region: str", "region: str\n    count: int") + """
tables:
  - name: t
    inputs: [claim.amount, claim.count, claim.vip]
    outputs: [risk.level]
    rows:
      - ["< 1000", "<= 9", "-", low]
      - ["< 1000", ">= 10", "-", medium]
      - [">= 1000", "-", "-", high]
""")
    assert [w.code for w in rs.warnings if w.code.startswith("table")] == []


@pytest.mark.parametrize(("cell", "message", "column"), [
    ('"> lots"', "is not a number", 10),
    ('"[10..5]"', "is empty", 10),
    ("diamond", "'diamond' is not one of", 15),
])
def test_bad_cells_are_reported_at_the_cell(cell: str, message: str, column: int) -> None:
    row = f'[{cell}, gold, high]' if column == 10 else f'["-", {cell}, high]'
    with pytest.raises(CompileErrors) as e:
        ruleset(table_ruleset(RISK.format(hit="first", rows=rows(row))))
    (err,) = e.value.errors
    assert err.code == "bad_cell" and message in err.message
    assert (err.where.line, err.where.column) == (20, column)


@pytest.mark.parametrize(("change", "code", "text"), [
    (("[claim.amount, claim.tier]", "[claim.amount, claim.tiers]"), "unknown_field", "has no field 'tiers'"),
    (("[claim.amount, claim.tier]", "[claim.amount, clam.tier]"), "unknown_fact_type", "unknown fact type"),
    (("outputs: [risk.level]", "outputs: [risk.level, decide.route]"), "bad_value", "one fact type"),
    (("hit: first", "hit: anything"), "bad_value", "hit must be one of"),
    (('- ["-", "-", high]', '- ["-", high]'), "bad_shape", "3 cells expected"),
    (('- ["-", "-", high]', '- ["-", "-", severe]'), "not_in_enum", "severe"),
])
def test_table_shape_errors(change: tuple[str, str], code: str, text: str) -> None:
    source = table_ruleset(RISK.format(hit="first", rows=rows('["-", "-", high]')))
    with pytest.raises(CompileErrors) as e:
        ruleset(source.replace(*change, 1))
    assert e.value.errors[0].code == code and text in e.value.errors[0].message
    assert e.value.errors[0].where.line > 0


def test_table_names_do_not_clash_with_rules() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(table_ruleset(RISK.format(hit="first", rows=rows('["-", "-", high]')),
                              rules="rules:\n  - name: route\n    when: exists claim\n"
                                    "    then: {decide: {route: x}}\n"))
    assert e.value.errors[0].code == "duplicate_rule"


def test_table_export_rows_round_trip_as_text() -> None:
    rs = ruleset(table_ruleset(RISK.format(hit="unique", rows=rows(
        '[">= 50000", "-", high]', '["[1000..50000)", "gold, platinum", low]', '["< 50000", standard, medium]',
        '["< 1000", "gold, platinum", low]'))))
    assert rs.tables[0].to_rows() == [
        ["claim.amount", "claim.tier", "risk.level"],
        [">= 50000", "-", "high"], ["[1000..50000)", "gold, platinum", "low"], ["< 50000", "standard", "medium"],
        ["< 1000", "gold, platinum", "low"]]


# -- item 19: decision tables as DMN has them ----------------------------------------------------------

DMN_FACTS = """
ruleset: dmn-tables
facts:
  applicant:
    age: number
    income: number
    min_income: number
    country: str
  policy:
    start: date
    end: date
  claim:
    loss_date: date
  band:
    level: {enum: [high, medium, low]}
    note: {type: str, optional: true}
  fee:
    amount: number
  total:
    value: number
input: [applicant, policy, claim]
"""


def applicant(age: float = 30, income: float = 50000, min_income: float = 20000, country: str = "GB"
              ) -> dict[str, object]:
    return {"applicant": {"age": age, "income": income, "min_income": min_income, "country": country}}


def facts_of(d: object, type_name: str) -> list[dict[str, object]]:
    return [e["values"] for e in d.trace if e["kind"] == "fact" and e["type"] == type_name]  # type: ignore[attr-defined]


def test_comma_lists_of_comparisons_and_not_are_literal_and_analysed() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: age-band
    inputs: [applicant.age, applicant.country]
    outputs: [band.level]
    rows:
      - ["< 18, >= 60", "-", high]
      - ["[18..60)", "not(IR, KP)", low]
      - ["[18..60)", "IR, KP", medium]
""")
    assert not [w for w in rs.warnings if w.code.startswith("table")]
    assert [f["level"] for f in facts_of(decide(rs, applicant(age=17)), "band")] == ["high"]
    assert [f["level"] for f in facts_of(decide(rs, applicant(age=60)), "band")] == ["high"]
    assert [f["level"] for f in facts_of(decide(rs, applicant(age=59)), "band")] == ["low"]
    assert [f["level"] for f in facts_of(decide(rs, applicant(age=30, country="KP")), "band")] == ["medium"]


def test_not_of_a_numeric_list_leaves_the_gap_it_should() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: t
    inputs: [applicant.age]
    outputs: [band.level]
    rows:
      - ["not(< 18, >= 60)", low]
      - ["< 18", high]
""")
    (gap,) = [w for w in rs.warnings if w.code == "table_gap"]
    assert gap.message.endswith("no row covers applicant.age >= 60")


def test_expression_bounds_join_facts_and_are_not_analysed() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: first
    inputs: [applicant.income, claim.loss_date]
    outputs: [band.level]
    rows:
      - ["> applicant.min_income * 2", "[policy.start..policy.end]", low]
      - ["> applicant.min_income", "[policy.start..policy.end]", medium]
      - ["-", "-", high]
""")
    (w,) = [w for w in rs.warnings if w.code.startswith("table")]
    assert w.code == "table_unanalysed" and "applicant.income, claim.loss_date" in w.message
    cover = {"policy": {"start": "2026-01-01", "end": "2026-12-31"}, "claim": {"loss_date": "2026-06-01"}}
    lapsed = {"policy": {"start": "2026-01-01", "end": "2026-03-31"}, "claim": {"loss_date": "2026-06-01"}}
    assert facts_of(decide(rs, {**applicant(income=50000), **cover}), "band") == [{"level": "low"}]
    assert facts_of(decide(rs, {**applicant(income=30000), **cover}), "band") == [{"level": "medium"}]
    assert facts_of(decide(rs, {**applicant(income=50000), **lapsed}), "band") == [{"level": "high"}]


def test_expression_input_column() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: t
    inputs: ["=applicant.income / 1000", applicant.country]
    outputs: [band.level]
    rows:
      - ["< 20", "-", high]
      - ["[20..100)", "-", medium]
      - [">= 100", "-", low]
""")
    assert not [w for w in rs.warnings if w.code.startswith("table")]
    assert facts_of(decide(rs, applicant(income=19999)), "band") == [{"level": "high"}]
    assert facts_of(decide(rs, applicant(income=20000)), "band") == [{"level": "medium"}]


def test_any_rows_may_overlap_only_with_equal_outputs() -> None:
    ok = ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: any
    inputs: [applicant.age]
    outputs: [band.level]
    rows:
      - ["< 30", low]
      - ["< 20", low]
      - [">= 30", high]
""")
    assert facts_of(decide(ok, applicant(age=10)), "band") == [{"level": "low"}]
    with pytest.raises(CompileErrors) as e:
        ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: any
    inputs: [applicant.age]
    outputs: [band.level]
    rows:
      - ["< 30", low]
      - ["< 20", high]
""")
    (err,) = e.value.errors
    assert err.code == "table_conflict" and "rows 1 and 2" in err.message and "applicant.age =" in err.message


@pytest.mark.parametrize("hit", ["unique", "any"])
def test_decide_time_conflict_fails_naming_both_rows(hit: str) -> None:
    rs = ruleset(DMN_FACTS + f"""
tables:
  - name: t
    hit: {hit}
    inputs: [applicant.income]
    outputs: [band.level]
    rows:
      - ["> applicant.min_income", low]
      - ["> 40000", high]
      - ["<= 40000", medium]
""")
    assert [w.code for w in rs.warnings if w.code.startswith("table")] == ["table_unanalysed"]
    d = decide(rs, applicant(income=50000, min_income=20000))
    assert d.outcome == "failed" and "rows 1 and 2" in d.reason
    d = decide(rs, applicant(income=50000, min_income=60000))
    assert facts_of(d, "band") == [{"level": "high"}]


def test_rule_order_and_collect_keep_equal_rows_as_separate_facts() -> None:
    for hit in ("collect", "rule_order"):
        rs = ruleset(DMN_FACTS + f"""
tables:
  - name: fees
    hit: {hit}
    inputs: [applicant.age, applicant.country]
    outputs: [fee.amount]
    rows:
      - [">= 18", "-", 100]
      - ["-", GB, 100]
      - ["< 18", "-", 5]
rules:
  - name: summary
    when: fee.row == 2 and count(fee) >= 2
    then: {{decide: {{total: "=sum(fee.amount)", n: "=count(fee)"}}}}
""")
        d = decide(rs, applicant(age=30))
        assert facts_of(d, "fee") == [{"amount": 100, "row": 1}, {"amount": 100, "row": 2}]
        assert d.fired[:2] == ["fees#1", "fees#2"]
        assert d.decision == {"total": 200, "n": 2}


def test_output_order_sorts_by_the_enum_and_needs_one() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: output_order
    inputs: [applicant.age]
    outputs: [band.level]
    rows:
      - ["-", low]
      - ["> 10", high]
      - ["> 20", medium]
      - ["> 5", high]
""")
    assert [(f["level"], f["row"]) for f in facts_of(decide(rs, applicant(age=30)), "band")] == [
        ("high", 2), ("high", 4), ("medium", 3), ("low", 1)]
    with pytest.raises(CompileErrors) as e:
        ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: output_order
    inputs: [applicant.age]
    outputs: [fee.amount]
    rows:
      - ["-", 1]
""")
    assert [x.code for x in e.value.errors] == ["bad_output_order"]


@pytest.mark.parametrize(("how", "age", "expect"), [
    ("sum", 30, [{"value": 200}]), ("count", 30, [{"value": 2}]), ("min", 30, [{"value": 100}]),
    ("max", 10, [{"value": 5}]), ("count", -1, [{"value": 0}]), ("sum", -1, []), ("max", -1, []),
])
def test_collect_aggregates_count_equal_rows(how: str, age: float, expect: list[dict[str, object]]) -> None:
    rs = ruleset(DMN_FACTS + f"""
tables:
  - name: fees
    hit: collect
    aggregate: {how}
    inputs: [applicant.age]
    outputs: [total.value]
    rows:
      - [">= 18", 100]
      - [">= 18", 100]
      - ["[0..18)", 5]
""")
    d = decide(rs, applicant(age=age))
    assert facts_of(d, "total") == expect
    assert d.fired[-1:] == ([f"fees#{how}"] if expect else [])


def test_aggregate_needs_collect_and_a_number() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: first
    aggregate: sum
    inputs: [applicant.age]
    outputs: [total.value]
    rows:
      - ["-", 1]
""")
    assert e.value.errors[0].code == "bad_value" and "collect" in e.value.errors[0].message


@pytest.mark.slow
def test_ten_thousand_rows_with_expression_cells_compile_and_run() -> None:
    lines = "\n".join(f'      - ["[{k * 10}..{k * 10 + 10})", "> applicant.min_income", {k}]' for k in range(10_000))
    rs = ruleset(DMN_FACTS + f"""
tables:
  - name: big
    inputs: [applicant.age, applicant.income]
    outputs: [fee.amount]
    rows:
{lines}
""")
    d = decide(rs, applicant(age=12345, income=5, min_income=1))
    assert d.fired == ["big#1235"] and facts_of(d, "fee") == [{"amount": 1234}]
    # only the row the literal column selected ran its guard: a wrong income fires nothing
    assert decide(rs, applicant(age=12345, income=0, min_income=1)).fired == []


def test_values_and_definitions_in_cells_and_inputs() -> None:
    rs = ruleset(DMN_FACTS.replace("input: [applicant, policy, claim]", """input: [applicant, policy, claim]
values:
  adult: 18
  home: GB
define:
  spare: applicant.income - applicant.min_income""") + """
tables:
  - name: t
    hit: first
    inputs: [spare, applicant.age, applicant.country]
    outputs: [band.level]
    rows:
      - ["> 10000", ">= adult", home, low]
      - ["> 10000", ">= adult", "-", medium]
      - ["-", "-", "-", high]
""")
    assert facts_of(decide(rs, applicant(age=30, income=50000)), "band") == [{"level": "low"}]
    assert facts_of(decide(rs, applicant(age=30, income=50000, country="FR")), "band") == [{"level": "medium"}]
    assert facts_of(decide(rs, applicant(age=17, income=50000)), "band") == [{"level": "high"}]
    assert facts_of(decide(rs, applicant(age=30, income=25000)), "band") == [{"level": "high"}]


# -- item 22: tables in reviews ------------------------------------------------------------------------

def _big_table(rows: list[str]) -> str:
    return DMN_FACTS + """
tables:
  - name: premium
    hit: first
    inputs: [applicant.age, applicant.country]
    outputs: [fee.amount]
    rows:
""" + "\n".join(f"      - {r}" for r in rows) + "\n"


@pytest.mark.slow
def test_diff_matches_table_rows_by_content() -> None:
    from engine.language.diff import diff_sources

    rows = [f'["[{k}..{k + 1})", "-", {k * 10}]' for k in range(320)]
    before = _big_table(rows)
    missing = _big_table(rows[:100] + rows[101:])
    (change,) = diff_sources(before, missing)
    assert change.details == ['row 101: removed ["[100..101)", "-", 1000]']
    inserted = _big_table([*rows[:5], '["[1000..2000)", GB, 7]', *rows[5:]])
    (change,) = diff_sources(before, inserted)
    assert change.details == ['row 6: added ["[1000..2000)", "GB", 7]']
    repriced = _big_table([*rows[:7], '["[7..8)", "-", 75]', *rows[8:]])
    (change,) = diff_sources(before, repriced)
    assert change.details == ['row 8: ["[7..8)", "-", 70] -> ["[7..8)", "-", 75]']


@pytest.mark.slow
def test_expression_inputs_are_computed_once_per_fact_and_routed() -> None:
    lines = "\n".join(f'      - ["[{k}..{k + 1})", "-", {k}]' for k in range(10_000))
    rs = ruleset(DMN_FACTS + f"""
tables:
  - name: big
    inputs: ["=applicant.income / 1000", applicant.country]
    outputs: [fee.amount]
    rows:
{lines}
""")
    d = decide(rs, applicant(income=5_500_000))
    # the inputs are computed into the table's own fact, whose literal fields the index routes on: one row fires
    assert d.fired == ["big#5501"] and facts_of(d, "fee") == [{"amount": 5500}]
    assert facts_of(d, "t_big_inputs") == [{"c0": 5500, "c1": "GB"}]
    two = decide(rs, {"applicant": [applicant(income=1000)["applicant"], applicant(income=2500)["applicant"]]})
    assert Counter(f["amount"] for f in facts_of(two, "fee")) == Counter([1, 2])


def test_a_routed_first_table_keeps_precedence() -> None:
    rs = ruleset(DMN_FACTS + """
tables:
  - name: t
    hit: first
    inputs: ["=applicant.income / 1000"]
    outputs: [band.level]
    rows:
      - ["> 100", high]
      - ["> 10", medium]
      - ["-", low]
""")
    assert [r.name for r in rs.rules][:1] == ["t#inputs"]
    assert facts_of(decide(rs, applicant(income=500_000)), "band") == [{"level": "high"}]
    assert facts_of(decide(rs, applicant(income=50_000)), "band") == [{"level": "medium"}]
    assert facts_of(decide(rs, applicant(income=5_000)), "band") == [{"level": "low"}]


def test_not_of_an_expression_cell_does_not_match_an_absent_value() -> None:
    rs = ruleset(DMN_FACTS.replace("    note: {type: str, optional: true}", "    note: {type: str, optional: true}\n"
                                   "    score: {type: number, optional: true}") + """
rules:
  - name: band-in
    when: exists applicant
    then: {assert: {band: {level: low}}}
tables:
  - name: t
    hit: collect
    inputs: [band.score]
    outputs: [fee.amount]
    rows:
      - ["not(> applicant.min_income)", 1]
      - ["not(> 5)", 2]
""")
    assert facts_of(decide(rs, applicant()), "fee") == []  # band.score is absent: neither not(...) matches


def test_a_declared_row_field_of_another_kind_is_refused() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(DMN_FACTS.replace("  fee:\n    amount: number",
                                  "  fee:\n    amount: number\n    row: {type: str, optional: true}") + """
tables:
  - name: fees
    hit: collect
    inputs: [applicant.age]
    outputs: [fee.amount]
    rows:
      - ["-", 1]
""")
    assert e.value.errors[0].code == "bad_value" and "fee.row is declared str" in e.value.errors[0].message
