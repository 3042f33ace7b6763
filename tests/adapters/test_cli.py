"""The `baton` CLI as an analyst uses it: check, test, decide."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.doors.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_check_and_test_pass_on_the_example_rulesets_with_full_coverage() -> None:
    result = runner.invoke(app, ["check", str(ROOT / "rulesets")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["test", str(ROOT / "rulesets"), "--min-coverage", "100"])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and "never fired" not in result.output
    assert re.search(r"^(\d+) passed, 0 failed$", result.output, re.M)


def test_the_contract_example_passes_as_written(tmp_path: Path) -> None:
    """The example in shared/RULESETS.md (beside the repo, as in CI), else our copy of it: the shipped file
    starts with the contract's text, through its first test, unchanged."""
    contract = ROOT.parent / "shared/RULESETS.md"
    block = re.search(r"```yaml\n(.*?)```", contract.read_text(), re.S) if contract.exists() else None
    ours = (ROOT / "rulesets/claims-triage.yaml").read_text()
    source = block.group(1) if block else ours[:ours.index("\n", ours.index("      fired: [fetch-policy")) + 1]
    assert source.strip() in ours  # the shipped example starts with the contract's text, unchanged
    path = tmp_path / "contract.yaml"
    path.write_text(source)
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 0, result.output
    assert "PASS big injury claim goes to a senior assessor" in result.output


def test_check_reports_every_error_with_file_line_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = (ROOT / "rulesets/claims-triage.yaml").read_text()
    text = text.replace("when: claim.amount > 50000", "when: claim.amout > 50000")
    text = text.replace('when: risk.level == "high"', 'when: risk.level == 5')
    text = text.replace("then: classify\n", "then: clasify\n")
    broken.write_text(text)
    result = runner.invoke(app, ["check", str(broken)])
    assert result.exit_code == 1
    lines = text.splitlines()
    amout = next(i for i, line in enumerate(lines) if "claim.amout" in line) + 1
    assert f"broken.yaml:{amout}:17: unknown_field: claim has no field 'amout'" in result.output
    assert "hint: did you mean 'amount'?" in result.output
    assert re.search(r"broken\.yaml:\d+:\d+: type_mismatch: cannot compare a str with a number", result.output)
    assert re.search(r"broken\.yaml:\d+:\d+: unknown_action: unknown action 'clasify'", result.output)


def test_failing_test_shows_a_readable_diff_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    shutil.copy(ROOT / "rulesets/claims-triage.yaml", path)
    path.write_text(path.read_text().replace("decision: {route: standard-queue}\n      fired: [fetch-policy, "
                                             "classify-claim, default-route]",
                                             "decision: {route: fast-track}\n      fired: [fetch-policy, "
                                             "default-route]"))
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 1
    assert 'decision.route: expected "fast-track", got "standard-queue"' in result.output
    # the lists are aligned: the one rule the test left out shows as one added line
    assert re.search(r"\+\s+-\s+classify-claim", result.output) and "1 failed" in result.output
    assert "!=" not in result.output.split("fired differs")[1].split("1 failed")[0]


def test_decide_prints_the_record(tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"claim": {"claim_ref": "C-9", "amount": 80000, "policy_ref": "P-1",
                                           "description": "whiplash", "customer_tier": "standard"}}))
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"classify": {"category": "injury", "confidence": 0.9, "fraud_signals": []},
                                   "lookup_policy": {"policy_ref": "P-1", "active": True, "coverage_limit": 1}}))
    result = runner.invoke(app, ["decide", "claims-triage", "--facts", str(facts), "--answers", str(answers),
                                 "--rulesets", str(ROOT / "rulesets")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["outcome"] == "decided" and record["decision"] == {"route": "senior-assessor"}
    facts.write_text(json.dumps({"claim": {"claim_ref": "C-9", "amount": "lots"}}))
    result = runner.invoke(app, ["decide", "claims-triage", "--facts", str(facts), "--rulesets",
                                 str(ROOT / "rulesets")])
    assert result.exit_code == 1 and "facts.claim.amount" in result.output
    # the field is named once: its place, the code, then the message without the place again
    assert result.output.count("facts.claim.amount") == 1, result.output
    assert "facts.claim.amount: type_mismatch: expected a number" in result.output.replace("\n", "")


def test_auditor_commands_over_a_stored_decision(tmp_path: Path) -> None:
    db = str(tmp_path / "audit.db")
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"claim": {"claim_ref": "C-9", "amount": 80000, "policy_ref": "P-1",
                                           "description": "whiplash", "customer_tier": "standard"}}))
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"classify": {"category": "injury", "confidence": 0.9, "fraud_signals": []},
                                   "lookup_policy": {"policy_ref": "P-1", "active": True, "coverage_limit": 1}}))
    ids = []
    for _ in range(3):
        result = runner.invoke(app, ["decide", str(ROOT / "rulesets/claims-triage.yaml"), "--facts", str(facts),
                                     "--answers", str(answers), "--db", db])
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.output)["decision_id"])
    listed = runner.invoke(app, ["log", "list", "--db", db, "--json"])
    assert listed.exit_code == 0 and {d["id"] for d in json.loads(listed.output)["decisions"]} == set(ids)
    shown = runner.invoke(app, ["log", "show", ids[0], "--db", db])
    assert "fired senior-for-high-risk-injury on assessment #4, risk #2" in shown.output
    assert "call classify (model) ok" in shown.output
    why = runner.invoke(app, ["log", "why", ids[0], "inactive-policy", "--db", db])
    assert "'not policy.active' is false (policy.active = true)" in why.output
    replayed = runner.invoke(app, ["replay", ids[0], "--db", db])
    assert replayed.exit_code == 0 and "identical" in replayed.output
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text((ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                                      "claim.amount > 90000"))
    whatif = runner.invoke(app, ["replay", ids[0], "--db", db, "--ruleset", str(candidate), "--json"])
    data = json.loads(whatif.output)
    assert data["changed"] and data["after"]["decision"] == {"route": "standard-queue"}
    impact = runner.invoke(app, ["impact", str(candidate), "--db", db, "--last", "10", "--json"])
    summary = json.loads(impact.output)
    assert summary["decisions"] == 3 and summary["changed"] == 3
    assert summary["decision_changes"] == [{"from": {"route": "senior-assessor"}, "to": {"route": "standard-queue"},
                                            "count": 3}]
    assert runner.invoke(app, ["log", "verify", "--db", db]).exit_code == 0
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("update decisions set outcome = 'failed' where id = ?", (ids[1],))
    broken = runner.invoke(app, ["log", "verify", "--db", db])
    assert broken.exit_code == 1 and f"BROKEN at decision {ids[1]}" in broken.output
    assert runner.invoke(app, ["replay", "nope", "--db", db]).exit_code == 1


def test_reviewer_and_operator_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "ops.db")
    facts = tmp_path / "payment.json"
    facts.write_text(json.dumps({"payment": {"payment_ref": "PAY-5", "amount": 20000, "currency": "EUR",
                                             "beneficiary_iban": "X", "initiated_by": "bob",
                                             "new_beneficiary": False}}))
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"lookup_limit": {"user": "bob", "single_limit": 10000},
                                   "anomaly_model": {"score": 0.1, "reasons": []}}))
    decided = runner.invoke(app, ["decide", str(ROOT / "rulesets/payment-approval.yaml"), "--facts", str(facts),
                                  "--answers", str(answers), "--db", db])
    escalated = json.loads(decided.output)
    assert escalated["outcome"] == "escalated"
    listed = json.loads(runner.invoke(app, ["escalations", "list", "--db", db, "--json"]).output)
    assert [e["id"] for e in listed] == [escalated["decision_id"]] and listed[0]["expects"] == "approval"
    bad = runner.invoke(app, ["escalations", "resolve", escalated["decision_id"], "--db", db, "--by", "carol",
                              "--answer", '{"approver": "dave"}', "--rulesets", str(ROOT / "rulesets")])
    assert bad.exit_code == 1 and "answer.approver" in bad.output  # the reviewer is who resolves, not who is typed
    bad = runner.invoke(app, ["escalations", "resolve", escalated["decision_id"], "--db", db, "--by", "carol",
                              "--answer", '{"payment_ref": "PAY-6"}', "--rulesets", str(ROOT / "rulesets")])
    assert bad.exit_code == 1 and "answer.payment_ref" in bad.output  # the escalated payment is fixed
    ok = runner.invoke(app, ["escalations", "resolve", escalated["decision_id"], "--db", db, "--by", "carol",
                             "--answer", '{}'])
    assert ok.exit_code == 0, ok.output
    assert "decided" in ok.output and "four-eyes approved" in ok.output
    effects = json.loads(runner.invoke(app, ["effects", "list", "--db", db, "--json"]).output)
    assert [(e["name"], e["status"]) for e in effects] == [("notify-treasury", "pending")]
    config = tmp_path / "baton.yaml"
    config.write_text("effects:\n  notify-treasury: {type: log, file: effects.jsonl}\n")
    assert runner.invoke(app, ["effects", "run", "--config", str(config), "--db", db, "--once"]).exit_code == 0
    line = json.loads((tmp_path / "effects.jsonl").read_text())
    assert line["with"] == {"payment": "PAY-5", "approver": "carol"}
    assert runner.invoke(app, ["effects", "retry", "--db", db, "--by", "ops"]).output.startswith("0 effect(s)")


def test_check_prints_warnings_and_strict_fails(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text((ROOT / "rulesets/claims-triage.yaml").read_text().replace(
        "when: not policy.active", "when: not policy.active and policy.active"))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0 and "1 warning(s)" in result.output
    assert re.search(r"warn\.yaml:\d+:5: warning never_fires: rule 'inactive-policy' can never fire", result.output)
    strict = runner.invoke(app, ["check", "--strict", str(path)])
    assert strict.exit_code == 1 and "error never_fires" in strict.output


def test_table_export_import_round_trip_keeps_the_file_and_refuses_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "credit.yaml"
    original = (ROOT / "rulesets/credit-limit.yaml").read_text()
    path.write_text(original)
    exported = runner.invoke(app, ["table", "export", str(path), "risk-band"])
    assert exported.exit_code == 0, exported.output
    lines = exported.output.splitlines()
    assert lines[0] == "applicant.credit_score,applicant.employment,band.level"
    assert lines[1] == '>= 740,"employed, self_employed, retired",prime' and len(lines) == 9
    csv_path = tmp_path / "bands.csv"
    csv_path.write_text(exported.output.replace(">= 740", ">= 750").replace("[670..740)", "[670..750)"))
    imported = runner.invoke(app, ["table", "import", str(path), "risk-band", str(csv_path)])
    assert imported.exit_code == 0, imported.output
    changed = path.read_text()
    before, after = original.splitlines(), changed.splitlines()
    first = next(i for i, line in enumerate(before) if line.strip().startswith('- [">= 740"'))
    assert before[:first] == after[:first] and before[first + 8:] == after[first + 8:]  # only the rows moved
    assert after[first] == '      - [">= 750",     "employed, self_employed, retired", prime]'
    assert after[first + 1] == '      - ["[670..750)", "employed, self_employed, retired", near_prime]'
    from engine.language.loader import load_ruleset

    old_rows = load_ruleset(original).tables[0].to_rows()
    new_rows = load_ruleset(changed).tables[0].to_rows()
    assert [i for i, (a, b) in enumerate(zip(old_rows, new_rows, strict=True)) if a != b] == [1, 2]
    result = runner.invoke(app, ["rulesets", "diff", str(ROOT / "rulesets/credit-limit.yaml"), str(path)])
    assert "~ table risk-band" in result.output and "row 1:" in result.output and "row 2:" in result.output
    # an overlap makes the import fail and leaves the file as it was
    csv_path.write_text(exported.output.replace("[670..740)", "[600..740)"))
    bad = runner.invoke(app, ["table", "import", str(path), "risk-band", str(csv_path)])
    assert bad.exit_code == 1 and "table_overlap" in bad.output and "rows 2 and 3 overlap" in bad.output
    assert path.read_text() == changed
    csv_path.write_text(lines[0] + "\n>= lots,student,prime\n")
    bad = runner.invoke(app, ["table", "import", str(path), "risk-band", str(csv_path)])
    assert bad.exit_code == 1
    assert "bands.csv:2:1: applicant.credit_score: '>= lots' is not a number" in bad.output.replace("\n", "")
    csv_path.write_text("score,employment,band\n")
    bad = runner.invoke(app, ["table", "import", str(path), "risk-band", str(csv_path)])
    assert bad.exit_code == 1 and "bands.csv:1: the header must be" in bad.output.replace("\n", "")
    missing = runner.invoke(app, ["table", "export", str(path), "nope"])
    assert missing.exit_code == 1 and "no decision table named 'nope'" in missing.output


@pytest.mark.slow
def test_rulesets_list_history_and_shadow_report_from_the_store(tmp_path: Path) -> None:
    from adapters.infra.rulesets import load_file
    from adapters.infra.store.sql import SqlStore
    from adapters.usecases.registry import RulesetRegistry

    db = str(tmp_path / "gov.db")
    registry = RulesetRegistry(SqlStore(db))
    live = load_file(ROOT / "rulesets/claims-triage.yaml")
    registry.publish_reviewed(live, by="file:claims-triage.yaml")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(live.source.replace("claim.amount > 50000", "claim.amount > 90000"))
    pub = registry.submit(load_file(candidate), by="erin", note="raise the bar")
    registry.decide(pub.id, by="alex", approve=True)
    listed = runner.invoke(app, ["rulesets", "list", "--db", db, "--json"])
    rows = json.loads(listed.output)
    assert [(r["active"], r["approved_by"]) for r in rows] == [(False, "file:claims-triage.yaml"), (True, "alex")]
    history = runner.invoke(app, ["rulesets", "history", "claims-triage", "--db", db, "--json"])
    assert next((p["status"], p["submitted_by"], p["note"]) for p in json.loads(history.output)) == (
        "published", "erin", "raise the bar")
    diff = runner.invoke(app, ["rulesets", "diff", live.version[:12], rows[1]["version"][:12], "--db", db])
    assert diff.exit_code == 0 and "~ rule high-risk" in diff.output and "90000" in diff.output
    attached = runner.invoke(app, ["shadow", "attach", str(ROOT / "rulesets/claims-triage.yaml"), "--db", db,
                                   "--by", "erin"])
    assert attached.exit_code == 0 and "shadowing claims-triage" in attached.output
    assert live.version[:12] in runner.invoke(app, ["shadow", "list", "--db", db]).output
    report = runner.invoke(app, ["shadow", "report", live.version[:12], "--db", db, "--json"])
    assert json.loads(report.output)["decisions"] == 0
    assert "detached" in runner.invoke(app, ["shadow", "detach", live.version[:12], "--db", db]).output
    assert runner.invoke(app, ["shadow", "report", "00000000", "--db", db]).exit_code == 1
