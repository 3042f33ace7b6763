"""Rulesets of a compliance team's real size decide correctly, and no input can stall a decision.

Each large case runs in a child process under a timeout (scale_probe.py): past durable-rules' limits the
core hangs with the GIL held instead of failing, which a test in this process could never report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.compile import SHARD_RULES, SHARD_SLOTS, compile_ruleset
from engine.errors import CompileErrors
from tests.engine.scale_probe import TABLE_PROBES
from tests.helpers import decide, ruleset
from tests.scale import CHANNELS, COUNTRIES, SPAN, inputs

ROOT = Path(__file__).resolve().parents[2]


def probe(case: str, timeout: float = 240) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "tests.engine.scale_probe", case], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    return results


def test_260_rules_on_one_fact_type_run() -> None:
    inside, outside = probe("ranges_260")
    assert inside["fired"] == [f"r{i}" for i in range(260)] and inside["decision"] == {"r": "r0"}
    assert outside == {"outcome": "no_decision", "decision": {}, "fired": []}


def test_600_distinct_equality_tests_on_one_field_run() -> None:
    assert [r["fired"] for r in probe("codes_600")] == [["r0"], ["r599"], ["r77"], []]


def expected_fired(n: int, facts: dict[str, Any]) -> list[str]:
    """What the generated ruleset (tests/scale.py) must fire, evaluated directly in Python."""
    txn, customer = facts["txn"], facts["customer"]
    width = SPAN / (n // 6 + 1)
    hits = []
    for i in range(n):
        kind = i % 6
        lo = round((i // 6) * width, 2)
        hi = round((i // 6) * width + width, 2)
        holds = {
            0: txn["code"] == f"c{i}",
            1: lo <= txn["amount"] < hi and txn["channel"] == CHANNELS[i % 3],
            2: txn["country"] in (COUNTRIES[i % 8], COUNTRIES[(i + 3) % 8]) and txn["score"] == i,
            3: f"t{i}" in txn["tags"],
            4: customer["ref"] == txn["customer_ref"] and txn["code"] == f"c{i}",
            5: txn["amount"] * 2 > customer["limit"] and customer["segment"] == f"s{i}",
        }[kind]
        if holds:
            hits.append(i)
    return [f"r{i}" for i in sorted(hits, key=lambda i: (-(i % 10 - 5), i))]


@pytest.mark.slow
def test_a_10000_rule_ruleset_fires_exactly_the_rules_that_hold_in_agenda_order() -> None:
    results = probe("rules_10000")
    facts = inputs(10_000, 40)
    assert any(r["fired"] for r in results)
    for r, f in zip(results, facts, strict=True):
        want = expected_fired(10_000, f)
        assert r["fired"] == want
        assert r["decision"] == ({"route": "q" + want[0][1:]} if want else {})


@pytest.mark.parametrize("hit", ["unique", "first"])
@pytest.mark.slow
def test_a_10000_row_decision_table_decides_by_its_rows(hit: str) -> None:
    results = probe(f"table_{hit}")
    bands = 10_000 // 3 + 1
    for (band, channel), r in zip(TABLE_PROBES, results, strict=True):
        row = band * 3 + CHANNELS.index(channel)  # 0-based row of the generated table
        if hit == "first" and band == 2 and channel == "web":
            assert r["decision"] == {"route": "early"} and r["fired"] == ["rate#1"]
        elif row < 10_000 and band < bands:
            assert r["decision"] == {"route": f"rate{row}"}
            assert r["fired"] == [f"rate#{row + 1 + (hit == 'first')}"]
        elif hit == "first":
            assert r["decision"] == {"route": "fallback"}
        else:
            assert r["outcome"] == "no_decision"


MSG = """\
ruleset: re
facts:
  msg: {text: {type: str, max_length: 200000}}
input: [msg]
rules:
"""


def test_matches_runs_in_linear_time_on_a_catastrophic_pattern() -> None:
    """With Python's backtracking re this input takes longer than the age of the universe; under RE2 the
    child decides at once (the parent's timeout is what fails if that ever regresses)."""
    code = ("from tests.helpers import decide, ruleset\n"
            f"rs = ruleset({MSG!r} + '  - name: r\\n    when: msg.text matches \"^(a+)+$\"\\n    then:\\n"
            "      decide: {{x: y}}\\n')\n"
            "print(decide(rs, {'msg': {'text': 'a' * 100000 + '!'}}).outcome,"
            " decide(rs, {'msg': {'text': 'a' * 100000}}).outcome)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["no_decision", "decided"]


@pytest.mark.parametrize(("pattern", "column"), [(r"(a)\\1", 29), ("(?=a)b", 29), ("(?<!x)y", 29), ("a{2,1}", 29)])
def test_a_pattern_re2_cannot_run_is_bad_regex_at_its_place(pattern: str, column: int) -> None:
    text = MSG + f'  - name: r\n    when: msg.text matches "{pattern}"\n    then:\n      decide: {{x: y}}\n'
    with pytest.raises(CompileErrors) as e:
        ruleset(text)
    err = e.value.errors[0]
    assert err.code == "bad_regex" and "RE2" in err.hint
    assert (err.where.line, err.where.column) == (7, column)


def test_matches_keeps_search_semantics_case_flags_and_unicode() -> None:
    rs = ruleset(MSG + '  - name: r\n    when: msg.text matches "(?i)^über\\\\d+"\n    then:\n      decide: {x: y}\n')
    assert decide(rs, {"msg": {"text": "ÜBER42 rest"}}).outcome == "decided"
    assert decide(rs, {"msg": {"text": "x über42"}}).outcome == "no_decision"
    rs = ruleset(MSG + '  - name: r\n    when: msg.text matches "b+c"\n    then:\n      decide: {x: y}\n')
    assert decide(rs, {"msg": {"text": "aaabbbcdd"}}).outcome == "decided"
    # Python's \Z (end of text), which RE2 spells \z, keeps its meaning
    rs = ruleset(MSG + '  - name: r\n    when: msg.text matches "end\\\\Z"\n    then:\n      decide: {x: y}\n')
    assert decide(rs, {"msg": {"text": "the end"}}).outcome == "decided"
    assert decide(rs, {"msg": {"text": "the end."}}).outcome == "no_decision"


def test_every_network_of_a_large_ruleset_is_proved_to_fit() -> None:
    rs = ruleset(MSG.replace("rules:\n", "") + "rules:\n" + "".join(
        f'  - name: r{i}\n    when: msg.text == "v{i}" or msg.text contains "w{i}"\n    then:\n      decide: {{x: y}}\n'
        for i in range(300)))
    compiled = compile_ruleset(rs)
    assert compiled.indexed and len(compiled.shards) >= 300 // SHARD_RULES
    for shard in compiled.shards:
        assert len(shard.rules) <= SHARD_RULES and len(shard.slots) <= SHARD_SLOTS
