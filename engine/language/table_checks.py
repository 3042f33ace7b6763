"""The analysis of a table over its cells: each column's domain is cut into atoms at every value a cell
mentions, and rows are compared atom by atom - overlaps, gaps and unreachable rows."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from engine.errors import BatonError
from engine.language.table_cells import Cell, clock_text, literal, number_text
from engine.language.table_model import Column, Row, Table, overlaps

MAX_ATOM_COMBINATIONS = 50_000
MAX_GAPS_SHOWN = 3
MAX_OVERLAPS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Atom:
    value: object  # a representative value: every cell contains all of the atom or none of it
    text: str


_OTHER = object()


def atoms(column: Column, cells: list[Cell]) -> list[Atom]:
    spec = column.spec
    assert spec is not None
    kind = spec.scalar_kind
    if kind == "bool":
        return [Atom(True, f"{column.ref} = true"), Atom(False, f"{column.ref} = false")]
    if kind == "str":
        if spec.enum:
            return [Atom(v, f"{column.ref} = {v}") for v in spec.enum]
        named = sorted({str(v) for c in cells if c.kind == "set" for v in c.values})
        return [Atom(v, f"{column.ref} = {v}") for v in named] + [
            Atom(_OTHER, f"{column.ref} is any other value" if named else f"{column.ref} is any value")]
    clock = spec.kind if spec.kind in ("date", "datetime") else ""
    lo = float(spec.minimum) if spec.minimum is not None else -math.inf
    hi = float(spec.maximum) if spec.maximum is not None else math.inf
    points = sorted({p for c in cells for p in c.points() if lo <= p <= hi} | {p for p in (lo, hi)
                                                                               if math.isfinite(p)})
    out: list[Atom] = []
    edges = [-math.inf, *points, math.inf]
    for k in range(len(edges) - 1):
        a, b = edges[k], edges[k + 1]
        if k > 0:
            out.append(Atom(a, f"{column.ref} = {literal(a) if not clock else clock_text(a, clock)}"))
        if a == b:
            continue
        if (math.isfinite(a) and a == hi) or (math.isfinite(b) and b == lo) or b <= lo or a >= hi:
            continue
        mid = (a + b) / 2 if math.isfinite(a) and math.isfinite(b) else (b - 1 if math.isfinite(b) else
                                                                         a + 1 if math.isfinite(a) else 0.0)
        whole = spec.kind in ("int", "date")  # dates are whole days
        if whole and math.isfinite(a) and math.isfinite(b) and math.floor(a) + 1 >= b:
            continue  # no whole number strictly between two adjacent whole numbers
        if whole:
            mid = float(math.floor(a) + 1) if math.isfinite(a) else float(math.ceil(b) - 1)
        out.append(Atom(mid, f"{column.ref} {_interval_text(a, b, clock)}"))
    return [a for a in out if not isinstance(a.value, float) or lo <= a.value <= hi]


def _interval_text(a: float, b: float, clock: str = "") -> str:
    def show(x: float) -> str:
        return literal(x) if not clock else clock_text(x, clock)

    if not math.isfinite(a):
        return f"< {show(b)}"
    if not math.isfinite(b):
        return f"> {show(a)}"
    return f"in ({show(a)}..{show(b)})"


def _overlapping_pairs(table: Table) -> Iterator[tuple[Row, Row]]:
    """Every pair of rows that overlap (earlier row first), without comparing every pair: rows are swept
    along the column with the fewest '-'/'not' cells (by span for numbers, by value for the rest), and only
    rows that meet there are compared whole."""
    rows = table.rows
    if len(table.inputs) == 0:
        yield from ((a, b) for i, a in enumerate(rows) for b in rows[i + 1:])
        return

    def wild(c: int) -> int:
        return sum(1 for r in rows if r.cells[c].kind == "any" or r.cells[c].negated)

    c = min(range(len(table.inputs)), key=lambda k: (wild(k), rows[0].cells[k].kind != "num" if rows else 0))
    seen: set[tuple[int, int]] = set()

    def emit(i: int, j: int) -> Iterator[tuple[Row, Row]]:
        i, j = min(i, j), max(i, j)
        if (i, j) not in seen:
            seen.add((i, j))
            if overlaps(rows[i], rows[j]):
                yield rows[i], rows[j]

    spans = []
    for k, row in enumerate(rows):
        cell = row.cells[c]
        if cell.kind == "num":
            spans.append((min(i.lo for i in cell.intervals), max(i.hi for i in cell.intervals), k))
        elif cell.kind == "any":
            spans.append((-math.inf, math.inf, k))
    if spans:  # a numeric column: sweep the spans, comparing each row with those still open
        spans.sort()
        active: list[tuple[float, int]] = []
        for lo, hi, k in spans:
            while active and active[0][0] < lo:
                heapq.heappop(active)
            for _, other in active:
                yield from emit(other, k)
            heapq.heappush(active, (hi, k))
        return
    by_value: dict[object, list[int]] = {}
    wild_rows: list[int] = []
    for k, row in enumerate(rows):
        cell = row.cells[c]
        if cell.negated:
            wild_rows.append(k)
        else:
            for v in cell.values:
                by_value.setdefault(v, []).append(k)
    for group in by_value.values():
        for x, i in enumerate(group):
            for j in group[x + 1:]:
                yield from emit(i, j)
    for i in wild_rows:
        for j in range(len(rows)):
            if j != i:
                yield from emit(i, j)


TABLE_ERRORS = ("table_overlap", "table_conflict", "bad_output_order", "bad_value")  # the rest are warnings


def analyse_table(table: Table) -> list[BatonError]:
    """Overlaps (unique: errors; any: errors where the outputs differ), gaps (unique/any/first: warnings),
    unreachable rows (warnings); a table with expression cells is analysed for overlaps of its literal cells
    only, and ``table_unanalysed`` says which columns were not."""
    problems: list[BatonError] = []
    if table.hit == "output_order":
        col = table.outputs[0]  # later outputs that are no enum take no part in the order (as DMN's without values)
        if col.spec is None or not col.spec.enum:
            problems.append(BatonError("bad_output_order", f"table '{table.name}': hit: output_order orders rows "
                                       f"by the outputs' enum values, and {col.ref} is not an enum", table.where,
                                       "declare the output field as {enum: [...]}, highest first"))
    if table.hit in ("unique", "any"):
        problems.extend(_overlaps(table))
    if table.has_expressions:
        names = [col.ref for c, col in enumerate(table.inputs) if any(r.cells[c].kind == "expr" for r in table.rows)]
        problems.append(BatonError("table_unanalysed", f"table '{table.name}': the cells of {', '.join(names)} "
                                   "have expression bounds, so gaps and overlaps there are not analysed",
                                   table.where, "rows that still match the same facts at decide time fail the "
                                   "decision (unique, any)" if table.hit in ("unique", "any") else ""))
        return problems
    problems.extend(_gaps_and_unreachable_rows(table))
    return problems


def _overlaps(table: Table) -> list[BatonError]:
    """Rows of a unique table that overlap, or of an any table that overlap with different outputs."""
    problems: list[BatonError] = []
    overlapping = 0
    for a, b in _overlapping_pairs(table):
        if table.hit == "any" and a.outputs == b.outputs:
            continue
        overlapping += 1
        if overlapping <= MAX_OVERLAPS_SHOWN:
            if table.hit == "unique":
                problems.append(BatonError(
                    "table_overlap", f"table '{table.name}': rows {a.number} and {b.number} overlap (lines "
                    f"{a.where.line} and {b.where.line}), but the hit policy is unique{_example(table, a, b)}",
                    b.where,
                    "narrow one of them, or use hit: first"))
            else:
                problems.append(BatonError(
                    "table_conflict", f"table '{table.name}': rows {a.number} and {b.number} overlap (lines "
                    f"{a.where.line} and {b.where.line}) with different outputs, but the hit policy is any"
                    f"{_example(table, a, b)}", b.where, "give them the same outputs, or use hit: first"))
    if overlapping > MAX_OVERLAPS_SHOWN:
        problems.append(BatonError("table_overlap" if table.hit == "unique" else "table_conflict",
                                   f"table '{table.name}': {overlapping - MAX_OVERLAPS_SHOWN} "
                                   "more pairs of rows overlap", table.where, "narrow them, or use hit: first"))
    return problems


def _gaps_and_unreachable_rows(table: Table) -> list[BatonError]:
    """Combinations of the inputs' literal cells no row covers, and rows no combination reaches first."""
    problems: list[BatonError] = []
    per_column = [atoms(col, [row.cells[k] for row in table.rows]) for k, col in enumerate(table.inputs)]
    combos = math.prod(len(a) for a in per_column)
    if combos > MAX_ATOM_COMBINATIONS:
        return problems
    gaps: list[str] = []
    reached: set[int] = set()
    index = table.index()
    for combo in product(*per_column):
        matching = index.matching([atom.value for atom in combo])
        if not matching:
            gaps.append(", ".join(a.text for a in combo) or "(no inputs)")
        elif table.hit in ("first", "priority"):
            reached.add(index.rows[matching[0]].number)
        else:
            reached.update(index.rows[k].number for k in matching)
    if gaps and table.hit in ("unique", "any", "first"):
        shown = "; ".join(gaps[:MAX_GAPS_SHOWN]) + (f"; and {len(gaps) - MAX_GAPS_SHOWN} more"
                                                   if len(gaps) > MAX_GAPS_SHOWN else "")
        problems.append(BatonError("table_gap", f"table '{table.name}': no row covers {shown}", table.where,
                                   "add a row for it, or a last catch-all row of '-' cells (hit: first)"))
    for row in table.rows:
        if row.number not in reached:
            problems.append(BatonError("unreachable_row", f"table '{table.name}': row {row.number} can never fire"
                                       + (" (earlier rows cover every case it covers)"
                                          if table.hit in ("first", "priority") else ""), row.where,
                                       "remove it or reorder the rows"))
    return problems


def _example(table: Table, a: Row, b: Row) -> str:
    """An input where two overlapping rows both match, as cells: ' (e.g. claim.amount = 5000, ...)'."""
    parts = []
    for col, x, y in zip(table.inputs, a.cells, b.cells, strict=True):
        if x.kind == "any" and y.kind == "any":
            continue
        value = _common(x, y)
        if value is None:
            return ""
        parts.append(f"{col.ref} = {value}")
    return f" (both match {', '.join(parts)})" if parts else ""


def _common(a: Cell, b: Cell) -> str | None:
    """A value both cells contain, as text (None: not found cheaply)."""
    cells = [c for c in (a, b) if c.kind != "any"]
    if any(c.kind == "num" for c in cells):
        points = sorted({p for c in cells for p in c.points()}) or [0.0]
        probes = [*points, *(x + 0.5 for x in points), *(x - 0.5 for x in points)]
        for x in probes:
            if all(c.contains(x) for c in cells):
                clock = next((c.clock for c in cells if c.clock), "")
                return clock_text(x, clock) if clock else number_text(x)
        return None
    values = [v for c in cells if not c.negated for v in c.values]
    for v in values:
        if all(c.contains(v) for c in cells):
            return literal(v)
    return "any other value" if cells and all(c.negated for c in cells) else None
