"""`baton rulesets ...`, `baton table ...` and `baton shadow ...`: governance from the terminal.

Approving needs an authenticated second person, so it happens over gRPC (``ApproveRuleset``) or in
the console; the terminal lists, diffs, exports and imports, and reports on shadow runs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from ruamel.yaml import YAML

from adapters.doors.cli.common import err, fail, open_store, out, print_compile_errors
from adapters.doors.cli.store_cmds import DbOpt, JsonOpt
from adapters.infra.rulesets import display, load_file
from adapters.infra.system import utc_text
from adapters.usecases.registry import RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine.errors import BatonError, CompileErrors
from engine.language.diff import diff_sources
from engine.language.loader import load_ruleset
from engine.language.source import parse_yaml, plain
from engine.language.tables import Table as DecisionTable
from engine.language.tables import parse_cell

rulesets_app = typer.Typer(no_args_is_help=True, help="Ruleset versions, publications and diffs.")
table_app = typer.Typer(no_args_is_help=True, help="Decision tables as CSV: export and import.")
shadow_app = typer.Typer(no_args_is_help=True, help="Shadow runs: candidate versions evaluated beside live ones.")




def _registry(db: str | None) -> RulesetRegistry:
    registry = RulesetRegistry(open_store(db))
    registry.refresh(force=True)
    return registry


@rulesets_app.command("list")
def rulesets_list(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Every stored version: who published it, when it took effect, which one is active."""
    registry = _registry(db)
    active, latest = registry.active, registry.latest_publications()
    rows: list[dict[str, Any]] = []
    for v in registry.versions():
        published = latest.get(v.version)
        rows.append({"name": v.name, "version": v.version, "active": active.get(v.name) == v.version,
                     "submitted_by": published.submitted_by if published else None,
                     "approved_by": published.decided_by if published else None,
                     "effective_from": published.effective_from if published else None,
                     "loaded_at": v.loaded_at})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("ruleset", "version", "active", "submitted by", "approved by", "effective from (UTC)")
    for r in rows:
        table.add_row(r["name"], r["version"][:12], "yes" if r["active"] else "", r["submitted_by"] or "-",
                      r["approved_by"] or "-", utc_text(r["effective_from"]))
    out.print(table)


@rulesets_app.command("history")
def rulesets_history(name: Annotated[str, typer.Argument(help="ruleset name (all when omitted)")] = "",
                     db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Publications, newest first: who submitted, who approved or rejected, notes and effective dates."""
    pubs = _registry(db).publications(name)
    if as_json:
        out.print_json(json.dumps([p.to_dict() for p in pubs]))
        return
    table = Table("id", "ruleset", "version", "status", "submitted by", "note", "decided by", "effective (UTC)")
    for p in pubs:
        table.add_row(p.id, p.ruleset, p.version[:12], p.status, p.submitted_by, p.note or "-", p.decided_by or "-",
                      utc_text(p.effective_from))
    out.print(table)


def _source(ref: str, registry: RulesetRegistry | None) -> tuple[str, str]:
    """A ruleset file, or a stored version (hash prefix) when a store is given."""
    path = Path(ref)
    if path.exists():
        try:
            rs = load_file(path)
        except CompileErrors as e:
            print_compile_errors(e)
            raise typer.Exit(1) from None
        return rs.source, f"{display(path)} ({rs.ref})"
    if registry is None:
        raise fail(f"{ref}: no such file (pass --db to compare stored versions)")
    try:
        engine = registry.engine_for(registry.resolve(ref))
    except BatonError as e:
        raise fail(f"{ref}: {e.message}", 1) from None
    return engine.ruleset.source, engine.ruleset.ref


@rulesets_app.command("diff")
def rulesets_diff(old: Annotated[str, typer.Argument(help="a ruleset file or a stored version")],
                  new: Annotated[str, typer.Argument(help="a ruleset file or a stored version")],
                  db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Rule-level changes from OLD to NEW: rules, tables (row by row), facts, actions, tests, settings."""
    registry = None
    if db is not None or not (Path(old).exists() and Path(new).exists()):
        registry = _registry(db)
    a, a_name = _source(old, registry)
    b, b_name = _source(new, registry)
    changes = diff_sources(a, b)
    if as_json:
        out.print_json(json.dumps([c.to_dict() for c in changes]))
        return
    out.print(f"--- {a_name}\n+++ {b_name}", markup=False)
    for c in changes:
        out.print(str(c), markup=False)
    out.print(f"{len(changes)} change(s)" if changes else "no rule-level changes")


# -- decision tables as CSV --------------------------------------------------------------------------

def _table(path: Path, name: str) -> DecisionTable | RawTable:
    """The compiled table; if the ruleset does not compile, the table as written in its YAML (so a broken
    table can be exported, repaired in a spreadsheet and imported back)."""
    try:
        rs = load_file(path)
    except CompileErrors as e:
        raw = _raw_table(path, name)
        err.print(f"{display(path)} does not compile ({len(e.errors)} error(s)); table {name} is read as written",
                  markup=False)
        return raw
    for t in rs.tables:
        if t.name == name:
            return t
    raise fail(f"{display(path)}: no decision table named {name!r}" +
               (f" (tables: {', '.join(t.name for t in rs.tables)})" if rs.tables else " (it has no tables)"), 1)


class RawTable:
    """A table's columns and cells as the YAML writes them (no compile needed)."""

    def __init__(self, header: list[str], inputs: int, rows: list[list[str]]) -> None:
        self.header, self.inputs_count, self.rows = header, inputs, rows

    def to_rows(self) -> list[list[str]]:
        return [self.header, *self.rows]


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _raw_table(path: Path, name: str) -> RawTable:
    try:
        doc = plain(parse_yaml(path.read_text(encoding="utf-8"), display(path)))
    except (OSError, UnicodeDecodeError, BatonError) as e:
        raise fail(f"{display(path)}: cannot read the table: {e}", 1) from None
    tables = doc.get("tables") if isinstance(doc, dict) else None
    node = next((t for t in tables or [] if isinstance(t, dict) and t.get("name") == name), None)
    if node is None:
        raise fail(f"{display(path)}: no decision table named {name!r}", 1)
    inputs, outputs = node.get("inputs") or [], node.get("outputs") or []
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise fail(f"{display(path)}: table {name}: inputs and outputs must be lists", 1)
    rows = [[_cell_text(c) for c in row] for row in node.get("rows") or [] if isinstance(row, list)]
    return RawTable([str(c) for c in [*inputs, *outputs]], len(inputs), rows)


@table_app.command("export")
def table_export(path: Annotated[Path, typer.Argument(help="the ruleset file")],
                 name: Annotated[str, typer.Argument(help="the table's name")],
                 output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV file (default: stdout)")]
                 = None) -> None:
    """Write a decision table as CSV: a header of its columns, then one line per row."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_table(path, name).to_rows())
    if output is None:
        typer.echo(buffer.getvalue(), nl=False)
    else:
        output.write_text(buffer.getvalue(), encoding="utf-8")
        err.print(f"wrote {output}")


@table_app.command("import")
def table_import(path: Annotated[Path, typer.Argument(help="the ruleset file to update")],
                 name: Annotated[str, typer.Argument(help="the table's name")],
                 csv_file: Annotated[Path, typer.Argument(help="CSV with the table's header and rows")]) -> None:
    """Replace a decision table's rows with a CSV's. The file is only rewritten if the result compiles."""
    table = _table(path, name)
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise fail(f"{csv_file}: cannot read: {e}", 1) from None
    lines = list(csv.reader(io.StringIO(text)))
    if isinstance(table, RawTable):
        header, inputs = table.header, []  # cells are checked by compiling the result
    else:
        header, inputs = [c.ref for c in table.inputs] + [c.ref for c in table.outputs], table.inputs
    width = len(inputs) if not isinstance(table, RawTable) else table.inputs_count
    if not lines or [h.strip() for h in lines[0]] != header:
        raise fail(f"{csv_file}:1: the header must be {','.join(header)}", 1)
    problems = []
    rows: list[list[Any]] = []
    for n, line in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in line):
            continue
        if len(line) != len(header):
            problems.append(f"{csv_file}:{n}: {len(header)} cells expected, found {len(line)}")
            continue
        for k, col in enumerate(inputs):
            assert col.spec is not None
            try:
                parse_cell(line[k], col.spec, col.ref, col.known)
            except ValueError as e:
                problems.append(f"{csv_file}:{n}:{k + 1}: {e}")
        rows.append([cell.strip() for cell in line[:width]] + [_output_value(cell) for cell in line[width:]])
    if problems:
        for p in problems:
            err.print(p, markup=False)
        raise typer.Exit(1)
    source = path.read_text(encoding="utf-8")
    updated = replace_rows(source, name, rows)
    try:
        rs = load_ruleset(updated, display(path))
    except CompileErrors as e:
        err.print(f"{csv_file}: the imported rows do not compile; {display(path)} is unchanged", markup=False)
        print_compile_errors(e)
        raise typer.Exit(1) from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(updated)
    os.replace(tmp, path)
    out.print(f"{display(path)}: table {name} now has {len(rows)} rows ({rs.ref})", markup=False)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./ -]*\Z")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _flow(value: Any) -> str:
    """One cell as a YAML flow scalar: bare where YAML reads it back the same, quoted otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _number_text(text) or (_PLAIN.match(text) and text.lower() not in _YAML_WORDS and not text.endswith(" ")
                              and ": " not in text and " #" not in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _number_text(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def replace_rows(source: str, table: str, rows: list[list[Any]]) -> str:
    """The source with one table's rows replaced, every other line exactly as written."""
    doc = YAML().load(source)
    node = next(t for t in doc["tables"] if isinstance(t, dict) and t.get("name") == table)
    lines = source.splitlines(keepends=True)
    items = node["rows"]
    if not isinstance(items, list) or not items or not hasattr(items, "lc"):
        raise fail(f"table {table}: rows must be a block list (- [..] per line) to be replaced", 1)
    start = items.lc.item(0)[0]
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    if not lines[start].lstrip(" ").startswith("-"):
        raise fail(f"table {table}: rows must be a block list (- [..] per line) to be replaced", 1)
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        own = len(lines[end]) - len(lines[end].lstrip(" "))
        if stripped and not stripped.startswith("#") and (own < indent or (own == indent and
                                                                           not stripped.startswith("-"))):
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    cells = [[_flow(v) for v in row] for row in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(cells[0]))] if cells else []
    rendered = [" " * indent + "- [" + " ".join((c + ",").ljust(w + 1) for c, w in zip(row[:-1], widths,
                                                                                       strict=False))
                + (" " if len(row) > 1 else "") + row[-1] + "]\n" for row in cells]
    return "".join(lines[:start] + rendered + lines[end:])


def _output_value(cell: str) -> Any:
    """An output cell from CSV text: numbers and booleans as such, '-' kept, the rest as text."""
    text = cell.strip()
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
        return value if value == value and value not in (float("inf"), float("-inf")) else text
    except ValueError:
        return text


# -- shadow runs ----------------------------------------------------------------------------------

@shadow_app.command("report")
def shadow_report(version: Annotated[str, typer.Argument(help="the shadow version (hash or 8+ character prefix)")],
                  db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """How a shadow version's outcomes differ from the live decisions it shadowed."""
    registry = _registry(db)
    try:
        full = registry.resolve(version)
        report = Shadows(registry.store, registry).report(full)
    except BatonError as e:
        raise fail(e.message, 1) from None
    if as_json:
        out.print_json(json.dumps({"ruleset": report.ruleset, "version": report.version,
                                   "decisions": report.decisions, "changed": report.changed,
                                   "unanswered": report.unanswered,
                                   "changes": [{"from": a, "to": b, "count": n, "examples": ex}
                                               for a, b, n, ex in report.changes]}))
        return
    out.print(f"shadow {report.ruleset}@{full[:12]}: {report.decisions} live decisions evaluated, "
              f"{report.changed} would change, {report.unanswered} needed an answer the live decision never had",
              markup=False)
    if report.changes:
        table = Table("live", "shadow", "decisions", "examples")
        for a, b, n, ex in report.changes:
            table.add_row(a, b, str(n), ", ".join(ex[:3]))
        out.print(table)


@shadow_app.command("list")
def shadow_list(db: DbOpt = None) -> None:
    """Shadow versions currently attached."""
    registry = _registry(db)
    table = Table("ruleset", "version", "attached by", "since (UTC)")
    for s in Shadows(registry.store, registry).attached():
        table.add_row(s.ruleset, s.version[:12], s.attached_by, utc_text(s.attached_at))
    out.print(table)


@shadow_app.command("attach")
def shadow_attach(path: Annotated[Path, typer.Argument(help="the candidate ruleset file")],
                  by: Annotated[str, typer.Option(help="who attaches it (recorded)")] = os.environ.get("USER", "cli"),
                  db: DbOpt = None) -> None:
    """Attach a candidate: every live decision of its ruleset is also evaluated against it."""
    registry = _registry(db)
    try:
        rs = load_file(path)
    except CompileErrors as e:
        print_compile_errors(e)
        raise typer.Exit(1) from None
    try:
        info = asyncio.run(Shadows(registry.store, registry).attach_named(by, ruleset=rs))
    except BatonError as e:
        raise fail(e.message, 1) from None
    out.print(f"shadowing {info.ruleset} with {info.version[:12]} (servers pick it up within seconds)", markup=False)


@shadow_app.command("detach")
def shadow_detach(version: Annotated[str, typer.Argument(help="the shadow version")], db: DbOpt = None) -> None:
    """Stop shadowing; stored differences stay."""
    registry = _registry(db)
    try:
        full = registry.resolve(version)
    except BatonError as e:
        raise fail(e.message, 1) from None
    detached = Shadows(registry.store, registry).detach(full)
    out.print(f"detached {full[:12]}" if detached else f"{full[:12]} was not attached", markup=False)
