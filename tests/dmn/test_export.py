"""`baton dmn export`: tables, input facts and the decisions that read them as DMN 1.5 with DMNDI shapes; what
DMN cannot hold is listed; a table ruleset's export imports back and decides as the ruleset did."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FixedClock, SequentialIds
from engine.dmn.export import export_dmn
from engine.dmn.importer import import_dmn
from engine.dmn.tck import result_of
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from tests.helpers import decide, ruleset

ROOT = Path(__file__).resolve().parents[2]
NS = "{https://www.omg.org/spec/DMN/20230324/MODEL/}"

RULESET = """
ruleset: export-me
facts:
  claim:
    amount: {type: number, min: 0}
    tier: {enum: [standard, gold, platinum]}
    filed: date
  risk:
    level: {enum: [high, medium, low]}
input: [claim]
tables:
  - name: risk-tier
    hit: unique
    inputs: [claim.amount, claim.tier]
    outputs: [risk.level]
    rows:
      - [">= 50000", "-", high]
      - ["[1000..50000)", "gold, platinum", low]
      - ["[1000..50000)", standard, medium]
      - ["< 1000", "not(platinum)", low]
      - ["< 1000", platinum, medium]
  - name: route
    hit: first
    inputs: [risk.level, claim.filed]
    outputs: [decide.queue, decide.reason]
    rows:
      - [high, "-", senior, "high risk"]
      - ["-", "< 2020-01-01", archive, "old claim"]
      - ["-", "-", standard, "the rest"]
"""


def test_export_lays_out_inputs_and_decisions_and_lists_what_it_leaves_out() -> None:
    rs = load_ruleset((ROOT / "rulesets" / "credit-limit.yaml").read_text(), "credit-limit.yaml")
    text, left_out = export_dmn(rs)
    root = ET.fromstring(text)
    assert root.tag == f"{NS}definitions"
    decisions = root.findall(f"{NS}decision")
    assert {d.get("name") for d in decisions} == {"band"}  # flags reads an expression input: listed below
    shapes = root.findall(".//{https://www.omg.org/spec/DMN/20230324/DMNDI/}DMNShape")
    assert {s.get("dmnElementRef") for s in shapes} == {d.get("id") for d in decisions} | {
        i.get("id") for i in root.findall(f"{NS}inputData")}
    assert any("rule 'flagged'" in x for x in left_out)
    assert any("table 'limit'" in x and "expression" in x for x in left_out)
    assert any("table 'flags'" in x and "expression" in x for x in left_out)


def _decide_imported(text: str, facts: dict[str, Any]) -> dict[str, Any]:
    imported = import_dmn(text)
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    d = asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(), SequentialIds()))
    result = result_of(imported, d, "route")
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("claim", [
    {"amount": 80000, "tier": "gold", "filed": "2024-05-01"},
    {"amount": 5000, "tier": "standard", "filed": "2019-05-01"},
    {"amount": 5000, "tier": "gold", "filed": "2024-05-01"},
    {"amount": 10, "tier": "platinum", "filed": "2024-05-01"},
    {"amount": 10, "tier": "standard", "filed": "2018-05-01"},
])
def test_a_table_ruleset_exports_and_imports_back_deciding_the_same(claim: dict[str, Any]) -> None:
    rs = ruleset(RULESET)
    text, left_out = export_dmn(rs)
    assert left_out == []
    original = decide(rs, {"claim": claim})
    assert _decide_imported(text, {"input": {}, "claim": claim}) == {
        "queue": original.decision["queue"], "reason": original.reason}
