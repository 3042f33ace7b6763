"""`baton dmn ...`: DMN models in and out - import into a ruleset, run a DMN TCK test file, export.

The work is engine/dmn's (text in, text out); this reads and writes the files and prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from adapters.doors.cli.common import err, fail, out, print_compile_errors
from adapters.infra.rulesets import load_file
from engine.dmn.export import export_dmn
from engine.dmn.importer import Imported, import_dmn
from engine.dmn.model import DmnError
from engine.dmn.tck import Case, read_tests, run_tests, tests_yaml
from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.loop import Engine

dmn_app = typer.Typer(no_args_is_help=True, help="DMN models: import into a ruleset, run TCK test files, export.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise fail(f"{path}: cannot read: {e}", 1) from None


def _import(path: Path, partial: bool) -> Imported:
    try:
        return import_dmn(_read(path), partial=partial)
    except DmnError as e:
        raise fail(escape(f"{path}: {e}" + (f" [{e.construct}]" if e.construct else "")), 1) from None


def _cases(path: Path) -> list[Case]:
    try:
        return read_tests(_read(path))
    except DmnError as e:
        raise fail(escape(f"{path}: {e}"), 1) from None


@dmn_app.command("import")
def dmn_import(model: Annotated[Path, typer.Argument(help="the DMN model (.dmn, DMN 1.1 to 1.5)")],
               output: Annotated[Path | None, typer.Option("-o", "--output", help="ruleset file (default: stdout)")]
               = None,
               tests: Annotated[Path | None, typer.Option("--tests", help="a DMN TCK test file: its cases become "
                                                          "the ruleset's tests")] = None) -> None:
    """Convert a DMN model into a ruleset that compiles. What Baton cannot express is an error naming the
    DMN element (id and name) and the construct - never a silently different ruleset."""
    imported = _import(model, partial=False)
    text = imported.yaml
    if tests is not None:
        text += tests_yaml(imported, _cases(tests), str(tests.name))
    try:
        load_ruleset(text, str(output or model))
    except CompileErrors as e:
        print_compile_errors(e)
        model_errors = [(x, imported.explain(x.message)) for x in e.errors if x.code in ("table_overlap",
                                                                                        "table_conflict")]
        for x, said in model_errors:
            if said:
                err.print(escape(f"{model}: {said} overlap - the model breaks its own hit policy ({x.code})"))
        if model_errors and len(model_errors) == len(e.errors):
            raise fail(escape(f"{model}: the model's tables overlap where their hit policy forbids it; fix the "
                              "model (or make the table FIRST)"), 1) from None
        raise fail(f"{model}: the imported ruleset does not compile (a gap in the importer: please report it)",
                   1) from None
    for note in imported.notes:
        err.print(f"note: {note}")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


@dmn_app.command("test")
def dmn_test(model: Annotated[Path, typer.Argument(help="the DMN model")],
             tests: Annotated[Path, typer.Argument(help="a test file in the DMN TCK's format")],
             as_json: Annotated[bool, typer.Option("--json", help="results as JSON")] = False) -> None:
    """Run a DMN TCK test file against the imported model: each case's result nodes, expected against
    actual, and a summary line. Decisions Baton cannot express are left out and their cases fail, naming
    the construct. Exits 1 if any case failed."""
    imported = _import(model, partial=True)
    try:
        rs = load_ruleset(imported.yaml, str(model))
    except CompileErrors as e:
        print_compile_errors(e)
        raise fail(f"{model}: the imported ruleset does not compile", 1) from None
    runs = run_tests(imported, Engine(rs), _cases(tests))
    passed = sum(1 for r in runs if r.passed)
    nodes = [o for r in runs for o in r.outcomes]
    if as_json:
        typer.echo(json.dumps({"model": model.name, "cases": len(runs), "passed": passed, "results": [
            {"case": r.case.id, "passed": r.passed, "error": r.error,
             "nodes": [{"name": o.name, "expected": o.expected, "actual": o.actual, "passed": o.passed, "why": o.why}
                       for o in r.outcomes]} for r in runs]}, indent=2, default=str))
    else:
        for r in runs:
            out.print(f"[{'green' if r.passed else 'red'}]{'PASS' if r.passed else 'FAIL'}[/] case {r.case.id}"
                      + (f"  {escape(r.case.description)}" if r.case.description else ""), highlight=False)
            if r.error:
                out.print(f"    {r.error}", highlight=False, markup=False)
            for o in r.outcomes:
                mark = "ok " if o.passed else "!= "
                out.print(f"    {mark}{o.name}: expected {json.dumps(o.expected, default=str)}, actual "
                          f"{json.dumps(o.actual, default=str)}" + (f"  ({o.why})" if o.why else ""),
                          highlight=False, markup=False)
        out.print(f"{passed} of {len(runs)} cases passed ({sum(1 for o in nodes if o.passed)} of {len(nodes)} "
                  f"result nodes); {model.name}", highlight=False, markup=False)
    if passed != len(runs):
        raise typer.Exit(1)


@dmn_app.command("export")
def dmn_export(ruleset: Annotated[Path, typer.Argument(help="the ruleset file")],
               output: Annotated[Path | None, typer.Option("-o", "--output", help="DMN file (default: stdout)")]
               = None) -> None:
    """Write the ruleset's decision tables, input facts and the decisions that read them as DMN 1.5 with
    DMNDI shapes. What DMN cannot hold (model and tool actions, escalations, effects, rules that are no
    table) is listed on stderr, not dropped silently."""
    try:
        rs = load_file(ruleset)
    except CompileErrors as e:
        print_compile_errors(e)
        raise fail(f"{ruleset}: does not compile", 1) from None
    text, left_out = export_dmn(rs)
    for item in left_out:
        err.print(f"not exported: {item}")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
