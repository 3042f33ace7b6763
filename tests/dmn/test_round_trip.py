"""The round trip on every example ruleset in rulesets/: `baton dmn export`, then `baton dmn import` of the
result. For each table export could express, the re-imported decision produces, on each of the example's own
test inputs, the same table facts as the original - the rows' outputs that matched, in order; everything
export could not express is listed in what it left out, by name, never dropped silently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FixedClock, SequentialIds
from engine.dmn.export import export_dmn
from engine.dmn.importer import import_dmn
from engine.dmn.tck import facts_for, result_of
from engine.language.loader import load_ruleset
from engine.language.tables import Table
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from engine.testing import run_test

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "rulesets").glob("*.yaml"))


def _original_table_facts(t: Table, record: Any) -> list[dict[str, object]]:
    """What the table produced in the original run: its matched rows' outputs, in the order they fired."""
    rows = {t.rule_name(r): r for r in t.rows}
    fields = [c.field for c in t.outputs]
    if t.head == "decide":  # a decide table proposes: the fired rows' literal outputs
        return [dict(zip(fields, rows[name].outputs, strict=True)) for name in record.fired if name in rows]
    return [{f: e["values"].get(f) for f in fields} for e in record.trace
            if e.get("kind") == "fact" and e.get("by") in rows]


def _reimported_table_facts(t: Table, imported: Any, record: Any) -> list[dict[str, object]]:
    name = t.name if t.head == "decide" else t.head
    fields = [c.field for c in t.outputs]
    value = result_of(imported, record, name)
    if imported.decisions[name].multi:
        assert isinstance(value, list), value
        values = value
    else:
        values = [] if value is None else [value]
    return [v if isinstance(v, dict) else {fields[0]: v} for v in values]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_export_then_import_keeps_every_expressible_table_and_lists_the_rest(path: Path) -> None:
    rs = load_ruleset(path.read_text(encoding="utf-8"))
    xml, left_out = export_dmn(rs)
    said = "\n".join(left_out)
    # nothing silently dropped: every rule that is not a table's row, every model and tool action is listed
    table_rules = {t.rule_name(r) for t in rs.tables for r in t.rows} | {
        f"{t.name}#{x}" for t in rs.tables for x in ("inputs", "sum", "count", "min", "max")}
    for rule in rs.rules:
        if rule.name not in table_rules:
            assert f"rule {rule.name!r}" in said, rule.name
    for action in [*rs.models, *rs.tools]:
        assert repr(action) in said, action
    imported = import_dmn(xml)
    assert not imported.skipped
    exported = [t for t in rs.tables if (t.name if t.head == "decide" else t.head) in imported.decisions]
    for t in rs.tables:
        assert t in exported or f"table {t.name!r}" in said, t.name
    assert bool(exported) == bool(rs.tables) or all(f"table {t.name!r}" in said for t in rs.tables)
    if exported:
        assert _compare(rs, imported, exported) >= len(exported)  # the examples' tests do reach the tables


def _compare(rs: Any, imported: Any, exported: list[Table]) -> int:
    """Each example test whose facts are all the tables' inputs, run through the original and the re-imported
    ruleset: the exported tables' facts must agree. Returns how many (test, table) pairs were compared."""
    engine = Engine(rs)
    back = Engine(load_ruleset(imported.yaml))
    compared = 0
    for test in rs.tests:
        original = asyncio.run(run_test(engine, test)).record
        if original is None or not isinstance(test.given, dict):
            continue
        inputs = {k: v for k, v in test.given.items() if k in imported.inputs}
        if len(inputs) != len(test.given):
            continue  # a test giving facts that are not the tables' inputs (a model's answer): nothing to compare
        recorded = RecordedAnswers({})
        again = asyncio.run(back.decide(facts_for(imported, inputs), recorded, recorded, FixedClock(),
                                        SequentialIds()))
        for t in exported:
            assert _reimported_table_facts(t, imported, again) == _original_table_facts(t, original), (
                test.name, t.name)
            compared += 1
    return compared


def test_the_credit_limit_round_trip_covers_its_one_literal_table() -> None:
    """credit-limit's risk-band is a literal table (exported); limit has expression outputs and flags an
    expression input (both listed); the round trip then compares risk-band on every test of the example."""
    rs = load_ruleset((ROOT / "rulesets" / "credit-limit.yaml").read_text(encoding="utf-8"))
    xml, left_out = export_dmn(rs)
    imported = import_dmn(xml)
    assert "band" in imported.decisions
    assert any(x.startswith("table 'limit'") and "expression" in x for x in left_out)
    assert any(x.startswith("table 'flags'") and "expression" in x for x in left_out)
    assert not any("flags#inputs" in x for x in left_out)  # the table's own routed inputs are not a rule
    # every one of the example's tests gives only the applicant: risk-band is compared on each of them
    assert _compare(rs, imported, [t for t in rs.tables if t.name == "risk-band"]) == len(rs.tests) >= 10
