"""A decision table as the engine keeps it: its columns and rows, the rows' lookup by column value
(:class:`TableIndex`), the matcher for expression cells, and the precedence of ``first`` and
``priority`` tables, checked when a row's rule fires."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import field as dc_field
from itertools import product

from engine.errors import BatonError, Where
from engine.index import Interval as Span
from engine.index import IntervalTree, Segments
from engine.language.check import FUNCTIONS, MISSING, Eval, FactIndex, Undefined, bindings_of, check_value
from engine.language.expr import ExprError, known_names, parse
from engine.language.table_cells import Cell, as_number, cell_condition
from engine.language.types import FactType, FieldSpec

MULTI_HIT = ("collect", "rule_order", "output_order")  # one fact per matched row, carrying ``row``
ROW_FIELD = "row"


@dataclass(slots=True)
class Column:
    ref: str  # claim.amount / risk.level / decide.route; an expression input as written (=quote.value / 1000)
    head: str  # the fact type, or decide / escalate; "" for an expression input
    field: str
    spec: FieldSpec | None  # None for decide/escalate payload keys; an expression input's type
    expr: str = ""  # an expression input: the expression (a definition's name, or =expr without '=')
    needs: tuple[str, ...] = ()  # an expression input: the fact types it reads (each row needs one of each)
    types: Mapping[str, FactType] | None = dc_field(default=None, repr=False)  # what cells and expressions see
    value: Eval | None = dc_field(default=None, repr=False)  # an expression input's evaluator

    @property
    def cond(self) -> str:
        """The column as it is written in a row's condition."""
        return f"({self.expr})" if self.expr else self.ref

    def known(self, name: str) -> bool:
        """Does a bare word in a text cell name something (a fact type's field, a function, a value or
        definition) rather than spell a value?"""
        if self.types is None:
            return False
        head, _, rest = name.partition(".")
        if rest:
            ft = self.types.get(head)
            return ft is not None and rest in ft.fields
        return name in FUNCTIONS or name in self.types or name in known_names()


@dataclass(slots=True)
class Row:
    number: int  # 1-based
    cells: list[Cell]
    outputs: list[object]
    where: Where

    def condition(self, inputs: list[Column]) -> str:
        return " and ".join(c for c in (cell_condition(col.cond, cell) for col, cell in zip(inputs, self.cells,
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
    aggregate: str = ""  # collect only: sum | count | min | max
    _matcher: Matcher | None = field(default=None, repr=False)
    _expressions: bool | None = field(default=None, repr=False)
    routed: str = ""  # the fact type its expression inputs are computed into, once per fact (route_inputs)

    @property
    def multi(self) -> bool:
        """One fact per matched row (collect without aggregate, rule_order, output_order)."""
        return self.hit in MULTI_HIT and not self.aggregate

    @property
    def has_expressions(self) -> bool:
        if self._expressions is None:  # asked once per row while the rules are built: computed once
            self._expressions = any(c.kind == "expr" for r in self.rows for c in r.cells)
        return self._expressions

    @property
    def head(self) -> str:
        return self.outputs[0].head if self.outputs else ""

    def rule_name(self, row: Row) -> str:
        return f"{self.name}#{row.number}"

    def order(self) -> list[Row]:
        """Rows in the order they take precedence (first and priority) or fire (output_order: by each output's
        enum order, the first listed first, then the next output's; ties in row order)."""
        if self.hit == "output_order":
            ranks: list[dict[object, int]] = [{v: i for i, v in enumerate(c.spec.enum)} if c.spec is not None else {}
                                              for c in self.outputs]  # a non-enum output: {} ranks all equal
            return sorted(self.rows, key=lambda r: (*(rk.get(v, len(rk)) for rk, v in zip(ranks, r.outputs,
                                                                                         strict=True)), r.number))
        if self.hit != "priority":
            return list(self.rows)
        rank = {v: i for i, v in enumerate(self.ranking)}
        return sorted(self.rows, key=lambda r: (rank.get(r.outputs[0], len(rank)), r.number))

    def input_types(self) -> list[str]:
        out: list[str] = []
        for col in self.inputs:
            for head in (col.head,) if col.head else col.needs:
                if head not in out:
                    out.append(head)
        return out

    def row_when(self, row: Row) -> str:
        if self.routed:  # the rows test the routed fact's fields (see route_inputs): literal, so indexed
            own = " and ".join(c for c in (cell_condition(f"{self.routed}.c{k}", cell) for k, cell in
                                           enumerate(row.cells)) if c)
            return f"exists {self.routed}" + (f" and {own}" if own else "")
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

    def matcher(self) -> Matcher:
        if self._matcher is None:
            self._matcher = Matcher(self)
        return self._matcher

    def precedence(self, row: Row) -> Precedence | None:
        """The extra check of a row's rule: first and priority tables, that no earlier row matches this row's
        facts; unique and any tables with expression cells, that no other row matches them too (with a
        different output, under any) - else the decision fails naming both rows; the aggregate's rows, none."""
        if self.hit in ("first", "priority"):
            index = self.index()
            self.matcher()  # built while the ruleset loads: its expression cells see its values and definitions
            return Precedence(self, index, index.position[row.number])
        if self.hit in ("unique", "any") and self.has_expressions:
            index = self.index()
            self.matcher()
            return Precedence(self, index, index.position[row.number], mode=self.hit)
        return None

    def payload(self, row: Row) -> dict[str, object]:
        out = {col.field: value for col, value in zip(self.outputs, row.outputs, strict=True) if value is not None}
        if self.multi:
            out[ROW_FIELD] = row.number
        return out

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
    """Do two cells of one column share a value? An expression cell is never known to (no false overlap)."""
    if a.kind == "expr" or b.kind == "expr":
        return False
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
    only those rows' other cells, so the time a lookup takes grows with the rows that match, not with
    the table's size."""

    def __init__(self, table: Table) -> None:
        self.rows = table.order()
        self.position = {row.number: k for k, row in enumerate(self.rows)}
        self.clocks = [c.spec.kind if c.spec is not None and c.spec.kind in ("date", "datetime") else ""
                       for c in table.inputs]
        self.timed = any(self.clocks)
        self.expr_columns = [c for c in range(len(table.inputs)) if any(r.cells[c].kind == "expr" for r in self.rows)]
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


class TableConflict(Exception):
    """A unique/any table matched two rows at decide time (possible only through expression cells)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Matcher:
    """The rows of a table that match the facts a rule matched: the index narrows by the literal cells, and
    only the rows it leaves have their expression cells evaluated (a guard per row the literal columns
    already selected)."""

    __slots__ = ("cells", "getters", "index", "table")

    def __init__(self, table: Table) -> None:
        self.table, self.index = table, table.index()
        self.getters = [(col.head, col.field, col.value) for col in table.inputs]
        self.cells: dict[tuple[int, int], tuple[Eval, tuple[str, ...]] | None] = {}
        for c in self.index.expr_columns:  # now, while the ruleset's values and definitions are in force
            for k, row in enumerate(self.index.rows):
                if row.cells[c].kind == "expr":
                    self._cell(k, c)

    def values(self, env: Mapping[str, Mapping[str, object]], wm: object) -> list[object]:
        routed = self.table.routed
        if routed and routed in env:  # a routed row: the inputs were computed into this fact
            computed = env[routed]
            return [computed.get(f"c{k}", MISSING) for k in range(len(self.getters))]
        out: list[object] = []
        for head, fname, value in self.getters:
            if value is not None:
                try:
                    v = value(env, wm)  # type: ignore[arg-type]
                except (Undefined, KeyError, ArithmeticError, OverflowError, ValueError, TypeError):
                    v = MISSING
                out.append(MISSING if v is None else v)
            else:
                fact = env.get(head)
                out.append(fact.get(fname, MISSING) if fact is not None else MISSING)
        return out

    def _cell(self, k: int, c: int) -> tuple[Eval, tuple[str, ...]] | None:
        """An expression cell's test, compiled once, and the fact types it reads."""
        key = (k, c)
        if key not in self.cells:
            col = self.table.inputs[c]
            try:
                node = parse(cell_condition(col.cond, self.index.rows[k].cells[c]))
                value = check_value(node, col.types or {}, {}, None)[1]
                self.cells[key] = (value, tuple(dict.fromkeys(bindings_of(node, {}).values())))
            except ExprError:
                self.cells[key] = None
        return self.cells[key]

    def _holds(self, k: int, c: int, env: Mapping[str, Mapping[str, object]], wm: object) -> bool:
        """Does row k's expression cell in column c hold? A fact type it joins that this rule did not match is
        looked up: the cell holds if some fact of it makes it hold (as the row's own rule would match)."""
        found = self._cell(k, c)
        if found is None:
            return False
        value, needs = found
        missing = [t for t in needs if t not in env]
        envs: Iterator[Mapping[str, Mapping[str, object]]] = iter((env,))
        if missing:
            if not isinstance(wm, FactIndex):
                return False
            pools = [[wm.values(q) for q in wm.of_type(t)] for t in missing]
            envs = ({**env, **dict(zip(missing, combo, strict=True))} for combo in product(*pools))
        for e in envs:
            try:
                if value(e, wm) is True:  # type: ignore[arg-type]
                    return True
            except (Undefined, KeyError, ArithmeticError, OverflowError, ValueError, TypeError):
                continue
        return False

    def rows(self, env: Mapping[str, Mapping[str, object]], wm: object) -> list[int]:
        """Positions (precedence order) of the matching rows."""
        found = self.index.matching(self.values(env, wm))
        if not self.index.expr_columns:
            return found
        return [k for k in found if all(self.index.rows[k].cells[c].kind != "expr" or self._holds(k, c, env, wm)
                                        for c in self.index.expr_columns)]


class Precedence:
    """A row's extra condition. ``first``: no row before it (first and priority tables) matches the same facts.
    ``unique``/``any``: no other row matches them too (``any``: with other outputs) - else the decision fails,
    naming both rows. ``some``: some row matches (a collect table's aggregate)."""

    __slots__ = ("index", "mode", "position", "refs", "table")

    def __init__(self, table: Table, index: TableIndex, position: int, mode: str = "first") -> None:
        self.table, self.index, self.position, self.mode = table, index, position, mode
        self.refs = [(col.head, col.field) for col in table.inputs]

    def winner(self, env: Mapping[str, Mapping[str, object]], wm: object = None) -> Row | None:
        found = self.table.matcher().rows(env, wm)
        return self.index.rows[found[0]] if found else None

    def __call__(self, env: Mapping[str, Mapping[str, object]], wm: object) -> bool:
        found = self.table.matcher().rows(env, wm)
        if self.mode == "first":
            return bool(found) and found[0] == self.position
        if self.mode == "some":
            return bool(found)
        rows = self.index.rows
        others = [k for k in found if k != self.position and (
            self.mode == "unique" or rows[k].outputs != rows[self.position].outputs)]
        if others and self.position in found:
            a, b = sorted((rows[self.position].number, rows[others[0]].number))
            raise TableConflict(f"table '{self.table.name}' ({self.mode}): rows {a} and {b} both match these facts"
                                + (" with different outputs" if self.mode == "any" else ""))
        return True
