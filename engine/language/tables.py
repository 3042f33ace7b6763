"""Decision tables: the policies analysts keep in spreadsheets, compiled to ordinary rules.

A table names its input columns (fact fields), its output columns (the fields of one asserted fact
type, or the payload keys of ``decide``/``escalate``) and rows of cells::

    tables:
      - name: risk-tier
        hit: unique                       # first | unique | priority | collect
        inputs: [claim.amount, claim.customer_tier]
        outputs: [risk.level]             # or [decide.route, decide.reason]
        rows:
          - [">= 50000",        "-",      high]
          - ["[1000..50000)",   gold,     low]
          - ["[1000..50000)",   standard, medium]
          - ["< 1000",          "-",      low]

Input cells: ``-`` (any), a value (``gold``, ``"gold"``, ``5000``, ``true``), a comparison (``> 50000``),
an interval (``[1000..5000)``, brackets closed, parentheses open), a list (``gold, silver``) or
``not`` before a value or list. Each row becomes a rule named ``TABLE#N`` (N counts from 1), so the
trace names the row. Hit policies:

- ``unique``: rows may not overlap (a compile error names both rows); every matching row fires.
- ``first``: the first matching row in written order fires (a row's rule excludes earlier rows).
- ``priority``: the matching row whose first output value ranks highest fires; the ranking is the
  table's ``ranking:`` list or, for an enum output, the enum's order; ties go to the earlier row.
- ``collect``: every matching row fires; only for tables that assert facts.

The analysis here is exact over the cells: each column's domain is cut into atoms at every value a
cell mentions, and rows are compared atom by atom (gaps, overlaps and unreachable rows).
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

from engine.errors import BatonError, Where
from engine.index import Interval as Span
from engine.index import IntervalTree, Segments
from engine.language import dates
from engine.language.check import MISSING
from engine.language.types import FactType, FieldSpec

HIT_POLICIES = ("unique", "first", "priority", "collect")
TABLE_KEYS = {"name", "description", "hit", "priority", "when", "inputs", "outputs", "rows", "ranking"}
PROPOSALS = ("decide", "escalate")
MAX_ATOM_COMBINATIONS = 50_000
MAX_GAPS_SHOWN = 3
MAX_OVERLAPS_SHOWN = 20

_CMP = re.compile(r"\s*(<=|>=|<|>|==|!=|=)\s*(.+?)\s*\Z")
_RANGE = re.compile(r"\s*([\[(])\s*(.+?)\s*\.\.\s*(.+?)\s*([\])])\s*\Z")
_NUM = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


# -- cell domains ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Interval:
    lo: float = -math.inf
    lo_closed: bool = False
    hi: float = math.inf
    hi_closed: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.lo or (self.lo_closed and x == self.lo)
        below = x < self.hi or (self.hi_closed and x == self.hi)
        return above and below


@dataclass(frozen=True, slots=True)
class Cell:
    """One input cell: ``any``, a union of intervals (numbers), or a value set (strings, booleans)."""

    kind: str  # any | num | set
    intervals: tuple[Interval, ...] = ()
    values: frozenset[object] = frozenset()
    negated: bool = False  # set: every value except these
    text: str = "-"
    clock: str = ""  # date | datetime: the intervals are days (ordinals) or seconds (POSIX) - see as_number

    def bound(self, x: float) -> str:
        """A bound of this cell as it is written in a condition."""
        return _num_text(x) if not self.clock else clock_text(x, self.clock)

    def contains(self, value: object) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "num":
            return isinstance(value, (int, float)) and any(i.contains(float(value)) for i in self.intervals)
        return (value in self.values) != self.negated

    def points(self) -> list[float]:
        return [p for i in self.intervals for p in (i.lo, i.hi) if math.isfinite(p)]


ANY = Cell("any")


def _number(text: str) -> float | int | None:
    text = text.strip()
    if not _NUM.match(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and not any(c in text for c in ".eE") else value


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_cell(raw: object, spec: FieldSpec, column: str) -> Cell:
    """An input cell for a field; raises ValueError with a plain message."""
    if raw is None or (isinstance(raw, str) and raw.strip() in ("-", "")):
        return ANY
    kind = spec.scalar_kind if spec.kind != "list" else "list"
    if kind == "list":
        raise ValueError(f"{column} is a list field; a decision table tests single values")
    text = raw if isinstance(raw, str) else ("true" if raw is True else "false" if raw is False else str(raw))
    if kind == "bool":
        value = text.strip().lower()
        if value not in ("true", "false"):
            raise ValueError(f"{column} is a bool: write true, false or -")
        return Cell("set", values=frozenset({value == "true"}), text=value)
    if kind == "number":
        return _number_cell(text, column)
    if kind in ("date", "datetime"):
        cell = _number_cell(text, column, lambda t: _clock_number(t, kind), kind)
        return Cell(cell.kind, cell.intervals, text=cell.text, clock=kind)
    negated = False
    body = text.strip()
    if body.startswith("not "):
        negated, body = True, body[4:]
    values = [_strip_quotes(v) for v in _split_list(body)]
    if not values or any(v == "" for v in values):
        raise ValueError(f"{column}: empty value in {text!r}")
    if spec.enum:
        for v in values:
            if v not in spec.enum:
                raise ValueError(f"{column}: {v!r} is not one of {list(spec.enum)}")
    return Cell("set", values=frozenset(values), negated=negated, text=text.strip())


def _split_list(text: str) -> list[str]:
    """Split ``a, "b, c", d`` on commas outside quotes."""
    out, cur, quote = [], "", ""
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


_CLOCK = re.compile(r"""\s*(?:(date|datetime)\s*\(\s*)?["']?([0-9][0-9T:.+\-Zz]*)["']?\s*\)?\s*\Z""")


def _clock_number(text: str, kind: str) -> float | None:
    """A date cell's value (2026-01-31, "2026-01-31" or date("2026-01-31")) as the number the table compares:
    days from 1970-01-01 for dates, seconds since the epoch for datetimes."""
    m = _CLOCK.match(text)
    if not m or (m.group(1) and m.group(1) != kind):
        return None
    try:
        if kind == "date":
            return float(dates.parse_date(m.group(2)))
        return dates.parse_datetime(m.group(2)) / 1e6
    except dates.DateError:
        return None


def as_number(value: object, clock: str) -> object:
    """A fact's date or datetime value as the number its table column compares (others unchanged)."""
    if not clock or not isinstance(value, str):
        return value
    if clock == "date":
        return float(dates.as_date(value))
    return dates.as_instant(value) / 1e6


def clock_text(x: float, clock: str) -> str:
    if clock == "date":
        return f'date("{dates.format_date(int(x))}")'
    return f'datetime("{dates.format_datetime(round(x * 1e6))}")'


def _number_cell(text: str, column: str, parse: Callable[[str], float | int | None] = _number,
                 kind: str = "number") -> Cell:
    def num(s: str) -> float:
        v = parse(s)
        if v is None:
            raise ValueError(f"{column}: {s.strip()!r} is not a {kind}" + (
                ' (write 2026-01-31 or date("2026-01-31"))' if kind == "date" else
                ' (write datetime("2026-01-31T09:00:00Z"))' if kind == "datetime" else ""))
        return float(v)

    m = _RANGE.match(text)
    if m:
        lo, hi = num(m.group(2)), num(m.group(3))
        if lo > hi or (lo == hi and (m.group(1) == "(" or m.group(4) == ")")):
            raise ValueError(f"{column}: the interval {text.strip()} is empty")
        return Cell("num", (Interval(lo, m.group(1) == "[", hi, m.group(4) == "]"),), text=text.strip())
    m = _CMP.match(text)
    if m and parse(m.group(2)) is not None:
        op, x = m.group(1), num(m.group(2))
        intervals = {
            "<": (Interval(hi=x),), "<=": (Interval(hi=x, hi_closed=True),),
            ">": (Interval(lo=x),), ">=": (Interval(lo=x, lo_closed=True),),
            "==": (Interval(x, True, x, True),), "=": (Interval(x, True, x, True),),
            "!=": (Interval(hi=x), Interval(lo=x)),
        }[op]
        return Cell("num", intervals, text=text.strip())
    parts = _split_list(text)
    if all(parse(p) is not None for p in parts):
        return Cell("num", tuple(Interval(num(p), True, num(p), True) for p in parts), text=text.strip())
    if kind != "number":
        raise ValueError(f"{column}: {text.strip()!r} is not a {kind}, comparison (< date(\"2026-01-31\")) or "
                         "interval ([date(\"2026-01-01\")..date(\"2026-07-01\")))")
    raise ValueError(f"{column}: {text.strip()!r} is not a number, comparison (> 5000) or interval ([1..5))")


# -- conditions as text ----------------------------------------------------------------------------

def quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value).replace("+", "")
    return quote(str(value))


def _num_text(x: float) -> str:
    return literal(x) if x >= 0 else f"-{literal(-x)}"


def cell_condition(ref: str, cell: Cell) -> str:
    """The condition text for one cell, in the ruleset language; '' for ``-``."""
    if cell.kind == "any":
        return ""
    if cell.kind == "num":
        parts = []
        for i in cell.intervals:
            if i.lo == i.hi:
                parts.append(f"{ref} == {cell.bound(i.lo)}")
                continue
            bounds = []
            if math.isfinite(i.lo):
                bounds.append(f"{ref} {'>=' if i.lo_closed else '>'} {cell.bound(i.lo)}")
            if math.isfinite(i.hi):
                bounds.append(f"{ref} {'<=' if i.hi_closed else '<'} {cell.bound(i.hi)}")
            parts.append(" and ".join(bounds) if len(bounds) < 2 or len(cell.intervals) == 1
                         else f"({' and '.join(bounds)})")
        return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"
    values = sorted(cell.values, key=str)
    if len(values) == 1:
        return f"{ref} {'!=' if cell.negated else '=='} {literal(values[0])}"
    items = ", ".join(literal(v) for v in values)
    return f"{ref} {'not in' if cell.negated else 'in'} [{items}]"


# -- the table -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Column:
    ref: str  # claim.amount / risk.level / decide.route
    head: str  # the fact type, or decide / escalate
    field: str
    spec: FieldSpec | None  # None for decide/escalate payload keys


@dataclass(slots=True)
class Row:
    number: int  # 1-based
    cells: list[Cell]
    outputs: list[object]
    where: Where

    def condition(self, inputs: list[Column]) -> str:
        return " and ".join(c for c in (cell_condition(col.ref, cell) for col, cell in zip(inputs, self.cells,
                                                                                              strict=True)) if c)


@dataclass(slots=True)
class Table:
    name: str
    hit: str
    priority: int
    when: str
    inputs: list[Column]
    outputs: list[Column]
    rows: list[Row]
    ranking: list[object]
    where: Where
    description: str = ""
    warnings: list[BatonError] = field(default_factory=list)
    _index: TableIndex | None = field(default=None, repr=False)

    @property
    def head(self) -> str:
        return self.outputs[0].head if self.outputs else ""

    def rule_name(self, row: Row) -> str:
        return f"{self.name}#{row.number}"

    def order(self) -> list[Row]:
        """Rows in the order they take precedence (first and priority policies)."""
        if self.hit != "priority":
            return list(self.rows)
        rank = {v: i for i, v in enumerate(self.ranking)}
        return sorted(self.rows, key=lambda r: (rank.get(r.outputs[0], len(rank)), r.number))

    def input_types(self) -> list[str]:
        out: list[str] = []
        for col in self.inputs:
            if col.head not in out:
                out.append(col.head)
        return out

    def row_when(self, row: Row) -> str:
        parts = [f"exists {t}" for t in self.input_types()]
        if self.when:
            parts.append(f"({self.when})")
        own = row.condition(self.inputs)
        if own:
            parts.append(own)
        return " and ".join(parts)

    def rules_text(self) -> list[tuple[Row, str]]:
        """(row, when) for every row that can fire. Under first and priority a row also needs every row
        before it not to match the same facts: ``precedence(row)`` checks that through the index."""
        out = []
        for row in self.order():
            out.append((row, self.row_when(row)))
            if self.hit in ("first", "priority") and all(c.kind == "any" for c in row.cells):
                break  # a catch-all row wins every time over the rows after it (reported as unreachable)
        return out

    def index(self) -> TableIndex:
        if self._index is None:
            self._index = TableIndex(self)
        return self._index

    def precedence(self, row: Row) -> Precedence | None:
        """For first and priority tables: the check that no earlier row matches this row's facts."""
        if self.hit not in ("first", "priority"):
            return None
        index = self.index()
        return Precedence(self, index, index.position[row.number])

    def payload(self, row: Row) -> dict[str, object]:
        return {col.field: value for col, value in zip(self.outputs, row.outputs, strict=True) if value is not None}

    def to_rows(self) -> list[list[str]]:
        """Header and cells as text (CSV export)."""
        header = [c.ref for c in self.inputs] + [c.ref for c in self.outputs]
        body = [[cell.text for cell in row.cells] + [_out_text(v) for v in row.outputs] for row in self.rows]
        return [header, *body]


def _out_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _intersect(a: Cell, b: Cell) -> bool:
    if a.kind == "any" or b.kind == "any":
        return True
    if a.kind == "num":
        for x in a.intervals:
            for y in b.intervals:
                lo, lo_closed = (x.lo, x.lo_closed) if x.lo > y.lo else (y.lo, y.lo_closed) if y.lo > x.lo else (
                    x.lo, x.lo_closed and y.lo_closed)
                hi, hi_closed = (x.hi, x.hi_closed) if x.hi < y.hi else (y.hi, y.hi_closed) if y.hi < x.hi else (
                    x.hi, x.hi_closed and y.hi_closed)
                if lo < hi or (lo == hi and lo_closed and hi_closed):
                    return True
        return False
    if not a.negated and not b.negated:
        return bool(a.values & b.values)
    if a.negated and b.negated:
        return True  # an unbounded domain minus two finite sets is never empty
    pos, neg = (a, b) if not a.negated else (b, a)
    return bool(pos.values - neg.values)


def overlaps(r1: Row, r2: Row) -> bool:
    return all(_intersect(a, b) for a, b in zip(r1.cells, r2.cells, strict=True))


# -- the index: which rows contain given values, without testing every row ------------------------------

class TableIndex:
    """The rows of one table in precedence order, filed per column: numeric cells in an interval tree,
    value cells hashed, ``-`` and ``not`` cells aside. ``matching(values)`` lists the rows whose every
    cell contains the value of its column, looking up the column that narrows them most and testing
    only those rows' other cells: a 10,000-row table answers in microseconds."""

    def __init__(self, table: Table) -> None:
        self.rows = table.order()
        self.position = {row.number: k for k, row in enumerate(self.rows)}
        self.clocks = [c.spec.kind if c.spec is not None and c.spec.kind in ("date", "datetime") else ""
                       for c in table.inputs]
        self.timed = any(self.clocks)
        self.columns: list[tuple[IntervalTree | Segments | None, dict[object, list[int]], list[int]]] = []
        for c in range(len(table.inputs)):
            intervals: list[Span] = []
            values: dict[object, list[int]] = {}
            other: list[int] = []  # '-' and 'not' cells: tested directly
            for k, row in enumerate(self.rows):
                cell = row.cells[c]
                if cell.kind == "num":
                    intervals.extend(Span(i.lo, i.lo_closed, i.hi, i.hi_closed, k) for i in cell.intervals)
                elif cell.kind == "set" and not cell.negated:
                    for v in cell.values:
                        values.setdefault(v, []).append(k)
                else:
                    other.append(k)
            tree = (Segments.build(intervals, 8 * len(intervals) + 1000) or IntervalTree(intervals)) if intervals \
                else None
            self.columns.append((tree, values, other))

    def _hits(self, c: int, value: object) -> Sequence[int]:
        """Rows whose value or numeric cell in column c contains ``value`` (not the '-'/'not' cells)."""
        tree, values, _ = self.columns[c]
        if value is MISSING:
            return ()
        if tree is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            found: list[int] = []
            tree.stab(value, found)
            return found
        return values.get(value, ()) if values else ()

    def matching(self, values: list[object]) -> list[int]:
        """Positions (in precedence order) of the rows whose cells all contain these column values; an
        absent value (MISSING) is contained only by '-'."""
        if not values:
            return list(range(len(self.rows)))
        if self.timed:
            values = [as_number(v, clock) for v, clock in zip(values, self.clocks, strict=True)]
        best: Sequence[int] = ()
        best_size = -1
        for c, v in enumerate(values):  # the column that narrows most; its lookups are not copied
            hits = self._hits(c, v)
            size = len(hits) + len(self.columns[c][2])
            if best_size < 0 or size < best_size:
                best, best_size, narrowest = hits, size, c
        candidates = [*best, *self.columns[narrowest][2]]
        out = []
        for k in sorted(set(candidates)) if len(candidates) > 1 else candidates:
            cells = self.rows[k].cells
            if all(cells[c].kind == "any" or (v is not MISSING and cells[c].contains(v)) for c, v in enumerate(values)):
                out.append(k)
        return out


class Precedence:
    """A first/priority row's extra condition: no row before it matches the same facts."""

    __slots__ = ("index", "position", "refs", "table")

    def __init__(self, table: Table, index: TableIndex, position: int) -> None:
        self.table, self.index, self.position = table, index, position
        self.refs = [(col.head, col.field) for col in table.inputs]

    def winner(self, env: Mapping[str, Mapping[str, object]]) -> Row | None:
        values = [env[head].get(fname, MISSING) for head, fname in self.refs]
        found = self.index.matching(values)
        return self.index.rows[found[0]] if found else None

    def __call__(self, env: Mapping[str, Mapping[str, object]], wm: object) -> bool:
        values = [env[head].get(fname, MISSING) for head, fname in self.refs]
        found = self.index.matching(values)
        return bool(found) and found[0] == self.position


# -- atoms: exact gap and reachability analysis ----------------------------------------------------

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


def analyse_table(table: Table) -> list[BatonError]:
    """Overlaps (unique: errors), gaps (unique/first: warnings), unreachable rows (warnings)."""
    problems: list[BatonError] = []
    if table.hit == "unique":
        overlapping = 0
        for a, b in _overlapping_pairs(table):
            overlapping += 1
            if overlapping <= MAX_OVERLAPS_SHOWN:
                problems.append(BatonError(
                    "table_overlap", f"table '{table.name}': rows {a.number} and {b.number} overlap, but the "
                    "hit policy is unique", b.where, "narrow one of them, or use hit: first"))
        if overlapping > MAX_OVERLAPS_SHOWN:
            problems.append(BatonError("table_overlap", f"table '{table.name}': {overlapping - MAX_OVERLAPS_SHOWN} "
                                       "more pairs of rows overlap", table.where, "narrow them, or use hit: first"))
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
    if gaps and table.hit in ("unique", "first"):
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


def parse_output(value: object, column: Column) -> object:
    """An output cell: ``-`` is absent; text from a CSV becomes the field's kind (the fact is validated
    whole afterwards)."""
    if value is None or (isinstance(value, str) and value.strip() == "-"):
        return None
    if column.spec is None or not isinstance(value, str):
        return value
    kind = column.spec.scalar_kind
    if kind == "number":
        number = _number(value)
        return value if number is None else number
    if kind == "bool" and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def column_ref(text: object, types: dict[str, FactType], allowed_heads: tuple[str, ...] = ()) -> Column:
    if not isinstance(text, str) or text.count(".") != 1:
        raise ValueError(f"{text!r}: a column is TYPE.field, e.g. claim.amount")
    head, fname = text.split(".")
    if head in allowed_heads:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", fname):
            raise ValueError(f"{text!r}: a payload key is letters, digits and _")
        return Column(text, head, fname, None)
    ft = types.get(head)
    if ft is None:
        raise ValueError(f"{text!r}: unknown fact type '{head}'")
    spec = ft.fields.get(fname)
    if spec is None:
        raise ValueError(f"{text!r}: {head} has no field '{fname}'")
    return Column(text, head, fname, spec)


__all__ = ["HIT_POLICIES", "PROPOSALS", "TABLE_KEYS", "Cell", "Column", "Row", "Table", "analyse_table",
           "column_ref", "parse_cell", "parse_output"]
