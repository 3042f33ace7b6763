"""`baton decide RULESET --batch FILE.jsonl`: one result line per request line, in order, each error with its
line number; stored, every decision goes through the one path (chained, counted) as `baton decide --db`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from adapters.infra.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = ROOT / "rulesets/demo-answers.json"


def claim(ref: str, amount: Any) -> str:
    return json.dumps({"claim": {"claim_ref": ref, "amount": amount, "policy_ref": "P-1", "description": "whiplash",
                                 "customer_tier": "standard"}})


def counted() -> float:
    return sum(REGISTRY.get_sample_value("baton_decisions_total", {"ruleset": "claims-triage", "outcome": o}) or 0.0
               for o in ("decided", "escalated", "failed", "no_decision"))


def test_a_batch_file_gives_one_line_per_request_in_order_with_errors_by_line_number(tmp_path: Path) -> None:
    batch = tmp_path / "claims.jsonl"
    batch.write_text("\n".join([claim("C-1", 80000), "", claim("C-3", "lots"), '{"claim": ', "[1, 2]",
                                claim("C-6", 100), *(claim(f"C-{i}", 100 + i) for i in range(7, 300))]) + "\n")
    db = str(tmp_path / "batch.db")
    before = counted()
    result = CliRunner().invoke(app, ["decide", "claims-triage", "--batch", str(batch),
                                                      "--answers", str(ANSWERS), "--db", db,
                                                      "--rulesets", str(ROOT / "rulesets")])
    assert result.exit_code == 1, result.output  # some lines failed
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 3, 4, 5, *range(6, 300)]  # blank line 2 skipped; more than a chunk
    assert lines[0]["decision"] == {"route": "senior-assessor"}
    assert lines[1]["error"] == {"code": "type_mismatch", "path": "facts.claim.amount",
                                 "message": "facts.claim.amount: expected a number, got a string"}
    assert lines[2]["error"]["code"] == "invalid_json" and lines[3]["error"]["code"] == "invalid_fact"
    decided = [x for x in lines if "error" not in x]
    assert all(x["decision"] == {"route": "standard-queue"} for x in decided[1:])
    assert [x["inputs"][0]["values"]["claim_ref"] for x in decided] == ["C-1", *(f"C-{i}" for i in range(6, 300))]
    errors = result.stderr.splitlines()
    assert errors[0] == f"{batch}:3: facts.claim.amount: expected a number, got a string"
    assert errors[1].startswith(f"{batch}:4: not valid JSON") and errors[2].startswith(f"{batch}:5: ")
    assert len(errors) == 3
    store = SqlStore(db, migrate=False)
    assert store.count() == len(decided) == 295 and counted() - before == 295
    assert all(store.get(x["decision_id"]) is not None for x in decided)
    assert store.verify()[1] is None  # stored one by one, chained


def test_a_batch_from_stdin_not_stored_and_all_good_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["decide", "claims-triage", "--batch", "-", "--answers",
                                                      str(ANSWERS), "--rulesets", str(ROOT / "rulesets")],
                                                input=claim("S-1", 100) + "\n" + claim("S-2", 80000) + "\n")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(x["line"], x["decision"]["route"]) for x in lines] == [(1, "standard-queue"), (2, "senior-assessor")]
    both = CliRunner().invoke(app, ["decide", "claims-triage", "--batch", "-", "--facts", "x.json"])
    assert both.exit_code == 2 and "without --facts" in both.stderr
