"""A decision table edited as a table: its cells in a grid, rows added, moved and removed, rows pasted as
CSV, every change checked by the same compiler check as the source editor (errors and the table's gap,
overlap and conflict findings marked on the rows and cells concerned), and submitted for four-eyes approval
like a source edit.

The grid edits the table's ``rows:`` lines in the ruleset's source and nothing else: the rest of the file,
comments included, stays as it was. A table whose rows are not one flow list per line (``- [a, b, c]``) is
edited as text instead.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from adapters.doors.console.rulesets import RulesetPages
from adapters.doors.console.ui import UI
from adapters.infra.store.governance import VersionSource
from adapters.usecases.registry import GovernanceError
from engine.errors import BatonError
from engine.language.source import parse_yaml, plain

MAX_ROWS = 2000
PLAIN = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null")


class NotAGrid(Exception):
    """The table cannot be edited as a grid (why, for the page)."""


@dataclass(slots=True)
class Grid:
    """A table's rows as text cells, and where its rows block stands in the source."""

    source: str
    name: str
    table: str
    columns: list[tuple[str, str]]  # (kind: in | out, header)
    rows: list[list[str]]
    first: int  # 0-based index of the first row's line
    last: int  # 0-based index of the last row's line
    indent: str

    def lines(self) -> list[tuple[str, list[int]]]:
        """The rows as source lines, each with the column where each cell starts (1-based)."""
        out = []
        for row in self.rows:
            text, starts = f"{self.indent}- [", []
            for j, cell in enumerate(row):
                if j:
                    text += ", "
                starts.append(len(text) + 1)
                text += _scalar(cell)
            out.append((text + "]", starts))
        return out

    def with_rows(self) -> str:
        """The source with this grid's rows in place of the table's rows block."""
        src = self.source.split("\n")
        return "\n".join([*src[:self.first], *(line for line, _ in self.lines()), *src[self.last + 1:]])


def _scalar(cell: str) -> str:
    """A cell as YAML: numbers, true, false and null as they are; any other text as a quoted string."""
    cell = cell.strip()
    return cell if PLAIN.fullmatch(cell) else json.dumps(cell, ensure_ascii=False)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_grid(source: str, name: str, table: str, row_lines: list[int]) -> Grid:
    """The grid of a table in ``source``, whose rows stand on ``row_lines`` (1-based, from the compiler)."""
    doc = plain(parse_yaml(source, f"{name}.yaml"))
    spec = next((t for t in doc.get("tables") or [] if isinstance(t, dict) and t.get("name") == table), None)
    if spec is None:
        raise NotAGrid(f"{name} has no table {table!r}")
    raw = spec.get("rows") or []
    lines = source.split("\n")
    if not raw or len(row_lines) != len(raw):
        raise NotAGrid(f"table {table!r} has no rows to edit as a grid; add them in the source editor")
    first, last = row_lines[0] - 1, row_lines[-1] - 1
    for i in range(first, last + 1):
        text = lines[i].strip()
        if i + 1 in row_lines:
            if not (text.startswith("- [") and text.endswith("]")):
                raise NotAGrid(f"row {row_lines.index(i + 1) + 1} of {table!r} is not one [a, b, c] list on its "
                               "own line: edit this table as text")
        elif text and not text.startswith("#"):
            raise NotAGrid(f"line {i + 1} inside {table!r}'s rows is not a row: edit this table as text")
        elif text.startswith("#"):
            raise NotAGrid(f"{table!r}'s rows have comments between them (line {i + 1}), which the grid would "
                           "drop: edit this table as text")
    indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
    columns = [("in", str(c)) for c in spec.get("inputs") or []] + [("out", str(c)) for c in spec.get("outputs") or []]
    return Grid(source, name, table, columns, [[_text(v) for v in row] for row in raw], first, last, indent)


class TablePages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c
        self.rulesets = RulesetPages(ui)

    async def base(self, name: str, version: str) -> tuple[str, str, dict[str, list[int]]]:
        """(version, source, table -> its rows' lines) of the version edited (the one in effect by default)."""
        version = await asyncio.to_thread(self.c.registry.resolve, version) if version else \
            self.c.registry.active_version(name)
        stored_name, source, trusted = await self.rulesets.stored(version)
        if not trusted:  # never published: its tables read by the bounded child that compiles it, not here
            _, rows = await self.c.candidates.ajob("tables", source, f"{stored_name}@{version[:12]}")
            return version, source, rows
        rs = (await asyncio.to_thread(self.c.registry.engine_for, version)).ruleset
        return rs.version, rs.source, {t.name: [r.where.line for r in t.rows] for t in rs.tables}

    async def check(self, source: str) -> dict[str, Any]:
        """The source editor's own check of a draft (however the editor compiles drafts)."""
        result: Any = self.rulesets.validate(source)
        if inspect.isawaitable(result):
            result = await result
        return dict(result)

    async def page(self, request: Request) -> Response:
        session = self.ui.need(request, "editor", "approver")
        name, table = request.path_params["name"], request.path_params["table"]
        data: FormData | None = await self.ui.form(request, session) if request.method == "POST" else None
        version = str(data.get("base", "")) if data else request.query_params.get("version", "")
        try:
            version, source, rows = await self.base(name, version)
            grid = read_grid(source, name, table, rows.get(table, []))
        except (BatonError, NotAGrid) as e:
            return self.ui.page(request, "error.html", status=404, message=getattr(e, "message", str(e)))
        error, status, op = "", 200, str(data.get("op", "check")) if data else ""
        if data is not None:
            error = self.apply(grid, data, op)
            status = 400 if error else 200
        draft = grid.with_rows()
        check: dict[str, Any] = await self.check(draft) if data is not None else {"valid": True, "errors": [],
                                                                                    "warnings": []}
        marks = self.marks(grid, check)
        if op == "check" and "application/json" in request.headers.get("accept", ""):  # the page's live marks
            return JSONResponse({"valid": check["valid"], "error": error, "errors": len(check["errors"]),
                                 "warnings": len(check["warnings"]), "table": marks["table"],
                                 "rows": {str(i + 1): found for i, found in marks["rows"].items()},
                                 "cells": [[i + 1, j, code] for (i, j), code in marks["cells"].items()]},
                                status_code=status)
        if op == "submit" and not error:
            if not session.has("editor"):
                raise PermissionError(f"{session.name} may review changes but not submit them (needs editor)")
            if not check["valid"]:
                error, status = "the table does not compile: fix the marked rows first", 400
            else:
                try:
                    rs = VersionSource(check["name"], check["version"], draft, check.get("description", ""),
                                       check["rules"], check["tests"])  # compiled by the child, not here
                    pub = await asyncio.to_thread(self.c.registry.submit, rs, session.name,
                                                  str(data.get("note", "") if data else ""), None)
                    return RedirectResponse(f"/publications/{pub.id}", status_code=303)
                except (GovernanceError, BatonError) as e:
                    error, status = e.message, 400
        return self.ui.page(request, "table_editor.html", status=status, grid=grid, version=version, check=check,
                            marks=marks, error=error, note=str(data.get("note", "")) if data else "",
                            pasted=str(data.get("csv", "")) if data and error and op == "paste" else "")

    @staticmethod
    def apply(grid: Grid, data: FormData, op: str) -> str:
        """The form's cells into the grid, then the operation (add, remove-N, up-N, down-N, paste); an error
        message when the form cannot be applied (the grid shows what was sent)."""
        width = len(grid.columns)
        try:
            count = min(MAX_ROWS, max(0, int(str(data.get("rows", len(grid.rows))))))
        except ValueError:
            count = len(grid.rows)
        grid.rows = [[str(data.get(f"c{i}_{j}", "")) for j in range(width)] for i in range(count)]
        verb, _, arg = op.partition("-")
        at = int(arg) if arg.isdigit() and int(arg) < len(grid.rows) else -1
        if verb == "add":
            grid.rows.append(["-"] * width)
        elif verb == "remove" and at >= 0:
            del grid.rows[at]
        elif verb in ("up", "down") and at >= 0:
            to = at - 1 if verb == "up" else at + 1
            if 0 <= to < len(grid.rows):
                grid.rows[at], grid.rows[to] = grid.rows[to], grid.rows[at]
        elif verb == "paste":
            pasted = [r for r in csv.reader(io.StringIO(str(data.get("csv", "")))) if any(c.strip() for c in r)]
            wrong = [n for n, r in enumerate(pasted, 1) if len(r) != width]
            if not pasted:
                return "nothing pasted: one row per line, its cells separated by commas (CSV)"
            if wrong:
                return (f"pasted line {wrong[0]} has {len(pasted[wrong[0] - 1])} cells; this table has {width} "
                        f"({', '.join(h for _, h in grid.columns)})")
            grid.rows = [[c.strip() for c in r] for r in pasted[:MAX_ROWS]]
        if not grid.rows:
            return "a table needs at least one row"
        return ""

    @staticmethod
    def marks(grid: Grid, check: dict[str, Any]) -> dict[str, Any]:
        """The check's findings placed on the grid: by row (and cell, when the column points into one), the
        rows a finding names ("rows 1 and 2 overlap"), and the rest for the whole table."""
        lines = grid.lines()
        by_row: dict[int, list[dict[str, Any]]] = {}
        cells: dict[tuple[int, int], str] = {}
        table: list[dict[str, Any]] = []
        for kind in ("errors", "warnings"):
            for e in check.get(kind, []):
                item = {**e, "kind": kind[:-1]}
                row = int(e.get("line") or 0) - 1 - grid.first
                message = str(e.get("message", ""))
                named: list[int] = []
                if f"table '{grid.table}'" in message:  # "rows 1 and 2 overlap": both rows marked
                    for a, b in re.findall(r"\brows? (\d+)(?: and (\d+))?", message):
                        named.extend(int(x) - 1 for x in (a, b) if x)
                if 0 <= row < len(lines):
                    by_row.setdefault(row, []).append(item)
                    starts = lines[row][1]
                    col = next((j for j in range(len(starts) - 1, -1, -1) if starts[j] <= int(e.get("column") or 0)),
                               None)
                    if col is not None:
                        cells[(row, col)] = str(e.get("code", ""))
                for n in named:
                    if 0 <= n < len(lines) and n != row:
                        by_row.setdefault(n, []).append(item)
                if not (0 <= row < len(lines)) and not named:
                    table.append(item)
        return {"rows": by_row, "cells": cells, "table": table}

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [Route("/rulesets/table/{name}/{table}", g(self.page), methods=["GET", "POST"])]
