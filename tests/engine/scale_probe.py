"""Decisions on rulesets at and past durable-rules' limits, run in a child process by test_scale.py.

Past a limit the engine's core may hang (holding the GIL) rather than fail, so each case runs here,
under a timeout in the parent, and prints what it decided as JSON.
Run: python -m tests.engine.scale_probe CASE
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset
from tests.scale import CHANNELS, SPAN, inputs, ruleset_text, table_text

MSG = """\
ruleset: probe
facts:
  msg: {n: number, code: str}
input: [msg]
rules:
"""


def decide(engine: Engine, facts: Any) -> dict[str, Any]:
    answers = RecordedAnswers({})
    d = asyncio.run(engine.decide(facts, answers, answers, FixedClock(), SequentialIds()))
    return {"outcome": d.outcome, "decision": d.decision, "fired": d.fired}


def case_ranges_260() -> list[dict[str, Any]]:
    """260 rules on one fact type: past the 256 rules one alpha node may hold (error 108 before)."""
    text = MSG + "".join(f"  - name: r{i}\n    when: msg.n > 5 and msg.n < 15\n    then:\n      decide: {{r: r{i}}}\n"
                         for i in range(260))
    engine = Engine(ruleset(text))
    return [decide(engine, {"msg": {"n": n, "code": "x"}}) for n in (10, 20)]


def case_codes_600() -> list[dict[str, Any]]:
    """600 distinct equality tests on one field: past the 512 the core's hash set holds (it hung before)."""
    text = MSG + "".join(f'  - name: r{i}\n    when: msg.code == "c{i}"\n    then:\n      decide: {{r: r{i}}}\n'
                         for i in range(600))
    engine = Engine(ruleset(text))
    return [decide(engine, {"msg": {"n": 1, "code": code}}) for code in ("c0", "c599", "c77", "zzz")]


def case_rules_10000() -> list[dict[str, Any]]:
    engine = Engine(ruleset(ruleset_text(10_000)))
    return [decide(engine, f) for f in inputs(10_000, 40)]


TABLE_PROBES = [(0, "web"), (1234, "branch"), (3332, "phone"), (3333, "web"), (3333, "phone"), (2, "web")]


def table_amount(band: int, rows: int = 10_000) -> float:
    return round((band + 0.5) * SPAN / (rows // 3 + 1), 2)


def case_table_rows(hit: str) -> list[dict[str, Any]]:
    text = ruleset_text(0, 0).replace("rules:\n", "") + table_text(10_000, hit)
    if hit == "first":  # an early row that wins over part of band 2, and a catch-all last row
        text = text.replace("    rows:\n", '    rows:\n      - ["[600..750)", "-", early]\n')
        text += '      - ["-", "-", fallback]\n'
    engine = Engine(ruleset(text))
    facts = [{"txn": {"ref": "T", "amount": table_amount(band), "code": "c", "country": "DE", "channel": channel,
                      "tags": [], "customer_ref": "K", "score": 1}} for band, channel in TABLE_PROBES]
    return [decide(engine, f) for f in facts]


CASES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "ranges_260": case_ranges_260, "codes_600": case_codes_600, "rules_10000": case_rules_10000,
    "table_unique": lambda: case_table_rows("unique"), "table_first": lambda: case_table_rows("first")}

if __name__ == "__main__":
    print(json.dumps({"channels": CHANNELS, "results": CASES[sys.argv[1]]()}))
