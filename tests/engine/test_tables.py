"""Decision tables: hit policies, cells, overlap and gap detection, and rows traced as TABLE#N."""

from __future__ import annotations

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
    assert "claim.amount = 1000, claim.tier = standard" in gaps[0].message
    assert "claim.amount > 1000, claim.tier = standard; and 1 more" in gaps[0].message
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
    (("hit: first", "hit: any"), "bad_value", "hit must be one of"),
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
