"""`baton table export/import` on a ruleset whose table is broken: export reads the table as written, and a
corrected CSV imported back repairs it (RULESETS.md item 22)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adapters.doors.cli.main import app

runner = CliRunner()

BROKEN = """ruleset: broken-table
facts:
  applicant:
    age: number
  band:
    level: {enum: [high, low]}
input: [applicant]
tables:
  - name: bands
    hit: unique
    inputs: [applicant.age, "=applicant.age * 12"]
    outputs: [band.level]
    rows:
      - ["< 30", "-", high]
      - ["< 40", "-", low]
tests:
  - name: young
    given: {applicant: {age: 20}}
    expect: {fired: [bands#1]}
"""


def test_a_broken_table_is_exported_repaired_and_imported(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    assert runner.invoke(app, ["check", str(path)]).exit_code != 0  # rows 1 and 2 overlap
    exported = runner.invoke(app, ["table", "export", str(path), "bands"])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.splitlines() == ["applicant.age,=applicant.age * 12,band.level", "< 30,-,high",
                                            "< 40,-,low"]
    fixed = tmp_path / "bands.csv"
    fixed.write_text("applicant.age,=applicant.age * 12,band.level\n< 30,-,high\n[30..40),-,low\n", encoding="utf-8")
    imported = runner.invoke(app, ["table", "import", str(path), "bands", str(fixed)])
    assert imported.exit_code == 0, imported.output
    assert runner.invoke(app, ["test", str(path)]).exit_code == 0
    assert '"[30..40)"' in path.read_text(encoding="utf-8") or "[30..40)" in path.read_text(encoding="utf-8")
    # a CSV that is still wrong leaves the file as it was
    before = path.read_text(encoding="utf-8")
    fixed.write_text("applicant.age,=applicant.age * 12,band.level\n< 30,-,high\n< 50,-,low\n", encoding="utf-8")
    assert runner.invoke(app, ["table", "import", str(path), "bands", str(fixed)]).exit_code == 1
    assert path.read_text(encoding="utf-8") == before


def test_baton_test_reports_rows_hit_per_table_and_lists_the_others_on_request(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BROKEN.replace('- ["< 40", "-", low]', '- ["[30..40)", "-", low]'), encoding="utf-8")
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 0, result.output
    assert "table bands: 1/2 rows hit" in result.stdout
    assert "never fired" not in result.stdout and "rows never hit" not in result.stdout  # rows only on request
    listed = runner.invoke(app, ["test", "--rows", str(path)])
    assert "rows never hit: 2 (line 15)" in listed.stdout
