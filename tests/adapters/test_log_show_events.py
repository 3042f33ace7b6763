"""`baton log show` prints the trace events of items 16, 17 and 20 readably: definition values, a
superseded summary proposal, and the stop of a final rule."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from adapters.doors.cli.main import app

runner = CliRunner()

RULESET = """\
ruleset: shown
facts:
  customer: {id: str, country: str}
  alert: {reason: str}
input: [customer, alert]
values:
  high_risk: [IR, KP]
define:
  risky: customer.country in high_risk
rules:
  - name: summary
    when: exists customer and count(alert) >= 1
    then: {decide: {alerts: "=count(alert)"}}
  - name: country-alert
    when: risky
    then: {assert: {alert: {reason: country}}}
  - name: stop
    priority: -10
    final: true
    when: risky and count(alert) >= 2
    then: {escalate: {queue: aml, reason: "two alerts"}}
"""


def test_log_show_prints_definitions_superseded_proposals_and_the_final_stop(tmp_path: Path) -> None:
    ruleset, facts, db = tmp_path / "shown.yaml", tmp_path / "facts.json", str(tmp_path / "d.db")
    ruleset.write_text(RULESET)
    facts.write_text(json.dumps({"customer": {"id": "C1", "country": "IR"}, "alert": {"reason": "cash"}}))
    decided = runner.invoke(app, ["decide", str(ruleset), "--facts", str(facts), "--db", db])
    assert decided.exit_code == 0, decided.output
    shown = runner.invoke(app, ["log", "show", json.loads(decided.output)["decision_id"], "--db", db])
    assert shown.exit_code == 0, shown.output
    lines = [line.strip() for line in shown.output.splitlines()]
    assert 'decide {"alerts": 1} (priority 0, superseded by its own later firing)' in lines
    assert 'decide {"alerts": 2} (priority 0, WON)' in lines
    assert "definitions: risky = true" in lines
    assert "aggregates: count(alert) = 2" in lines
    assert lines[-1] == "r1 step 4: stopped by final rule stop (no later firing, no further call)"
