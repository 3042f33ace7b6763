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
from dataclasses import field as dc_field
from itertools import product
from typing import TYPE_CHECKING

from engine.errors import BatonError, Where
from engine.index import Interval as Span
from engine.index import IntervalTree, Segments
from engine.language import dates
from engine.language.check import FUNCTIONS, MISSING, Eval, FactIndex, Undefined, bindings_of, check_value
from engine.language.expr import ExprError, known_names, parse
from engine.language.types import FactType, FieldSpec

if TYPE_CHECKING:
    from engine.model import Rule

HIT_POLICIES = ("unique", "any", "first", "priority", "collect", "rule_order", "output_order")
MULTI_HIT = ("collect", "rule_order", "output_order")  # one fact per matched row, carrying ``row``
AGGREGATES = ("sum", "count", "min", "max")  # collect + aggregate: DMN's C+, C#, C<, C>
ROW_FIELD = "row"
PROPOSALS = ("decide", "escalate")
MAX_ATOM_COMBINATIONS = 50_000
MAX_GAPS_SHOWN = 3
MAX_OVERLAPS_SHOWN = 20

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
    """One input cell: ``any``, a union of intervals (numbers), a value set (strings, booleans), or ``expr``:
    unary tests whose bounds are expressions over the rule's facts, values and definitions (``tests``:
    (op, bound, upper bound) with op one of == != < <= > >= or an interval's brackets ``[)``), checked
    as part of the row's condition and never analysed for gaps or overlaps."""

    kind: str  # any | num | set | expr
    intervals: tuple[Interval, ...] = ()
    values: frozenset[object] = frozenset()
    negated: bool = False  # set: every value except these; expr: none of the tests holds
    text: str = "-"
    clock: str = ""  # date | datetime: the intervals are days (ordinals) or seconds (POSIX) - see as_number
    tests: tuple[tuple[str, str, str], ...] = ()

    def bound(self, x: float) -> str:
        """A bound of this cell as it is written in a condition."""
        return _num_text(x) if not self.clock else clock_text(x, self.clock)

    def contains(self, value: object) -> bool:
        """Literal cells: exactly; an expression cell: True (its tests need the facts: ``Matcher``)."""
        if self.kind in ("any", "expr"):
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


_NAME_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
_INTERVAL = re.compile(r"\s*([\[(\]])\s*(.+?)\s*\.\.\s*(.+?)\s*([\])\[])\s*\Z", re.S)
_NOT = re.compile(r"\s*not\s*\((.*)\)\s*\Z", re.S)


def parse_cell(raw: object, spec: FieldSpec, column: str, known: Callable[[str], bool] | None = None) -> Cell:
    """An input cell (a DMN unary test) for a column of kind ``spec``; raises ValueError with a plain message.

    ``-``; a literal; a comparison ``< 18``; an interval ``[18..25)`` (``]18..25[`` as DMN also writes
    open ends); a comma list meaning any of its tests (``< 18, >= 60``; ``gold, silver``); ``not(...)`` of
    any of these (``not gold, silver`` too). A bound that is no literal is an expression over the rule's
    facts (``> applicant.min_income``, ``[policy.start..policy.end]``): the cell becomes an ``expr`` cell.
    In a text column a bare word is the value itself (``gold``) unless ``known`` says it names something
    (a fact type's field ``TYPE.field``, a value or definition)."""
    if raw is None or (isinstance(raw, str) and raw.strip() in ("-", "")):
        return ANY
    kind = spec.scalar_kind if spec.kind != "list" else "list"
    if kind == "list":
        raise ValueError(f"{column} is a list field; a decision table tests single values")
    text = raw if isinstance(raw, str) else ("true" if raw is True else "false" if raw is False else str(raw))
    if isinstance(raw, float) and kind not in ("number",):
        text = repr(raw)
    body = text.strip()
    negated = False
    m = _NOT.match(body)
    if m and len(_split_tests(body)) == 1:  # not(...) around the whole cell, not one test of a list
        negated, body = True, m.group(1).strip()
    elif body.startswith("not ") and kind == "str":
        negated, body = True, body[4:]
    parts = _split_tests(body)
    if not parts or any(p == "" for p in parts):
        raise ValueError(f"{column}: empty test in {text.strip()!r}")
    parsed = [_parse_test(p, kind, spec, column, known) for p in parts]
    cell = _combine(parsed, kind, text.strip(), column)
    if negated:
        cell = _negate(cell)
    return cell


def _split_tests(text: str) -> list[str]:
    """Split a unary-test list on its top-level commas: not inside quotes, a call's brackets or an interval
    (``[1..5)``, ``]1..5[``, whose brackets need not pair)."""
    out: list[str] = []
    cur = ""
    depth = 0
    quote = ""
    n = len(text)
    for i, ch in enumerate(text):
        if quote:
            cur += ch
            if ch == "\\" and i + 1 < n:
                continue
            if ch == quote and not (i > 0 and text[i - 1] == "\\"):
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
            cur += ch
            continue
        rest = text[i + 1:].lstrip()
        at_start = cur.strip() == ""
        at_end = rest == "" or rest.startswith(",")
        if ch in "([]" and at_start:
            depth += 1
        elif ch in ")][" and depth > 0 and at_end:
            depth -= 1
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return out


@dataclass(frozen=True, slots=True)
class _Test:
    """One test of a list: literal (intervals or a value) or an expression test (op, bound, upper)."""

    intervals: tuple[Interval, ...] = ()
    value: object = None
    ne: bool = False  # a value test written != x
    expr: tuple[str, str, str] | None = None
    literal: bool = True


_OPS = ("<=", ">=", "!=", "==", "<", ">", "=")


def _parse_test(part: str, kind: str, spec: FieldSpec, column: str, known: Callable[[str], bool] | None) -> _Test:
    m = _INTERVAL.match(part)
    if m and kind in ("number", "date", "datetime", "str"):
        return _interval_test(m, part, kind, column, known)
    if re.match(r"in\s", part.strip()):  # membership in a list-valued expression (a value or a field)
        return _Test(expr=("in", part.strip()[2:].strip(), ""), literal=False)
    op = next((o for o in _OPS if part.startswith(o)), "")
    rest = part[len(op):].strip() if op else part.strip()
    if op == "=":
        op = "=="
    if not rest:
        raise ValueError(f"{column}: {part!r} needs a value after {op}")
    if kind in ("number", "date", "datetime"):
        return _ordered_test(op, rest, part, kind, column, known)
    if kind == "bool":
        word = rest.lower()
        if word in ("true", "false") and op in ("", "==", "!="):
            return _Test(value=word == "true", ne=op == "!=")
        if not _looks_like_expression(rest) or word in ("true", "false"):
            raise ValueError(f"{column} is a bool: write true, false or -")
        return _Test(expr=(op or "==", rest, ""), literal=False)
    # text (str and enum columns)
    if op in ("", "==", "!=") and not _is_expression(rest, known):
        word = _strip_quotes(rest)
        if word == "":
            raise ValueError(f"{column}: empty word in {part!r}")
        if spec.enum and word not in spec.enum:
            raise ValueError(f"{column}: {word!r} is not one of {list(spec.enum)}")
        return _Test(value=word, ne=op == "!=")
    return _Test(expr=(op or "==", _bound_text(rest, kind, known), ""), literal=False)


def _clock_of(kind: str) -> str:
    return kind if kind in ("date", "datetime") else ""


def _cell_number(s: str, kind: str) -> float | None:
    clock = _clock_of(kind)
    v = _number(s) if not clock else _clock_number(s, clock)
    return None if v is None else float(v)


def _bound_text(s: str, kind: str, known: Callable[[str], bool] | None) -> str:
    """A bound as the ruleset language writes it."""
    s = s.strip()
    clock = _clock_of(kind)
    if clock and (v := _clock_number(s, clock)) is not None:
        return clock_text(float(v), clock)
    if kind == "str" and not _is_expression(s, known):
        return quote(_strip_quotes(s))
    return s


def _interval_test(m: re.Match[str], part: str, kind: str, column: str, known: Callable[[str], bool] | None
                   ) -> _Test:
    """[lo..hi], (lo..hi) and the half-open ones: an interval, or an expression when a bound is computed."""
    clock = _clock_of(kind)
    lo_closed, hi_closed = m.group(1) == "[", m.group(4) == "]"
    lo, hi = _cell_number(m.group(2), kind), _cell_number(m.group(3), kind)
    for bound, value in ((m.group(2), lo), (m.group(3), hi)):
        if value is None and clock and _CLOCK.match(bound):
            raise ValueError(f"{column}: {bound.strip()!r} is not a {kind}")
        if value is None and kind == "number" and _NUM.match(bound.strip()) is None and \
                not _looks_like_expression(bound):
            raise ValueError(f"{column}: {bound.strip()!r} is not a number")
    if lo is not None and hi is not None:
        if lo > hi or (lo == hi and not (lo_closed and hi_closed)):
            raise ValueError(f"{column}: the interval {part.strip()} is empty")
        return _Test((Interval(lo, lo_closed, hi, hi_closed),))
    return _Test(expr=(("[" if lo_closed else "(") + ("]" if hi_closed else ")"), _bound_text(m.group(2), kind, known),
                       _bound_text(m.group(3), kind, known)), literal=False)


def _ordered_test(op: str, rest: str, part: str, kind: str, column: str, known: Callable[[str], bool] | None
                  ) -> _Test:
    """A number, date or datetime cell: a value or comparison (intervals), or a comparison with an expression."""
    x = _cell_number(rest, kind)
    if x is not None:
        intervals = {
            "": (Interval(x, True, x, True),), "==": (Interval(x, True, x, True),),
            "<": (Interval(hi=x),), "<=": (Interval(hi=x, hi_closed=True),),
            ">": (Interval(lo=x),), ">=": (Interval(lo=x, lo_closed=True),),
            "!=": (Interval(hi=x), Interval(lo=x)),
        }[op]
        return _Test(intervals)
    if not _looks_like_expression(rest) or (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest) and not (
            known is not None and known(rest))) or (_clock_of(kind) and _CLOCK.match(rest)):
        what = {"number": "a number, comparison (> 5000) or interval ([1..5))",
                "date": 'a date (2026-01-31 or date("2026-01-31")), comparison or interval',
                "datetime": 'a datetime (datetime("2026-01-31T09:00:00Z")), comparison or interval'}[kind]
        raise ValueError(f"{column}: {part.strip()!r} is not {what}")
    return _Test(expr=(op or "==", _bound_text(rest, kind, known), ""), literal=False)


def _looks_like_expression(text: str) -> bool:
    """Could this be an expression of the ruleset language (a name, a field path, a call, arithmetic)?"""
    return bool(re.match(r"\s*[-(A-Za-z_0-9\"']", text))


def _is_expression(text: str, known: Callable[[str], bool] | None) -> bool:
    """In a text column: is this part an expression rather than a bare value?"""
    t = text.strip()
    if not t or t[0] in "\"'":
        return False
    if _NAME_REF.match(t):
        return known is not None and known(t)
    return "(" in t and known is not None and known(t[:t.index("(")].strip())


def _combine(tests: list[_Test], kind: str, text: str, column: str) -> Cell:
    clock = kind if kind in ("date", "datetime") else ""
    if all(t.literal for t in tests):
        if kind in ("number", "date", "datetime"):
            return Cell("num", tuple(i for t in tests for i in t.intervals), text=text, clock=clock)
        if all(not t.ne for t in tests):
            return Cell("set", values=frozenset(t.value for t in tests), text=text)
        if len(tests) == 1:
            return Cell("set", values=frozenset({tests[0].value}), negated=True, text=text)
    out: list[tuple[str, str, str]] = []
    for t in tests:
        if t.expr is not None:
            out.append(t.expr)
        elif t.intervals:
            for i in t.intervals:
                lo = clock_text(i.lo, clock) if clock else _num_text(i.lo)
                hi = clock_text(i.hi, clock) if clock else _num_text(i.hi)
                if i.lo == i.hi:
                    out.append(("==", lo, ""))
                elif not math.isfinite(i.lo):
                    out.append(("<=" if i.hi_closed else "<", hi, ""))
                elif not math.isfinite(i.hi):
                    out.append((">=" if i.lo_closed else ">", lo, ""))
                else:
                    out.append((("[" if i.lo_closed else "(") + ("]" if i.hi_closed else ")"), lo, hi))
        else:
            out.append(("!=" if t.ne else "==", literal(t.value), ""))
    return Cell("expr", text=text, clock=clock, tests=tuple(out))


def _negate(cell: Cell) -> Cell:
    if cell.kind == "num":
        return Cell("num", _complement(cell.intervals), text=f"not({cell.text})" if not cell.text.startswith("not")
                    else cell.text, clock=cell.clock)
    if cell.kind == "set":
        return Cell("set", values=cell.values, negated=not cell.negated, text=cell.text)
    if cell.kind == "expr":
        return Cell("expr", text=cell.text, clock=cell.clock, tests=cell.tests, negated=not cell.negated)
    return cell


def _complement(intervals: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """The numbers in none of these intervals, as sorted disjoint intervals."""
    out: list[Interval] = []
    lo, lo_in = -math.inf, False  # the uncovered part starts at lo (lo itself uncovered when lo_in)
    for i in sorted(intervals, key=lambda i: (i.lo, not i.lo_closed)):
        if i.lo > lo or (i.lo == lo and lo_in and not i.lo_closed):
            out.append(Interval(lo, lo_in, i.lo, not i.lo_closed))
        if i.hi > lo:
            lo, lo_in = i.hi, not i.hi_closed
        elif i.hi == lo and i.hi_closed:
            lo_in = False
    if lo < math.inf:
        out.append(Interval(lo, lo_in, math.inf, False))
    return tuple(x for x in out if x.lo < x.hi or (x.lo == x.hi and x.lo_closed and x.hi_closed))


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


def _group(text: str) -> str:
    """An expression bound in brackets unless it is one name, field path, literal or call."""
    t = text.strip()
    if _NAME_REF.match(t) or _number(t) is not None or re.fullmatch(r'"(?:[^"\\]|\\.)*"', t) or \
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\([^()]*\)", t):
        return t
    return f"({t})"


def _num_text(x: float) -> str:
    return literal(x) if x >= 0 else f"-{literal(-x)}"


def cell_condition(ref: str, cell: Cell) -> str:
    """The condition text for one cell, in the ruleset language; '' for ``-``."""
    if cell.kind == "any":
        return ""
    if cell.kind == "expr":
        parts = []
        for op, a, b in cell.tests:
            if op in ("==", "!=", "<", "<=", ">", ">=", "in"):
                parts.append(f"{ref} {op} {_group(a)}")
            else:
                parts.append(f"({ref} {'>=' if op[0] == '[' else '>'} {_group(a)} and "
                             f"{ref} {'<=' if op[1] == ']' else '<'} {_group(b)})")
        body = parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"
        if not cell.negated:
            return body
        # not(...) of an absent value matches nothing (DMN: not(null < x) is null): the value must be there
        return f"{ref} == {ref} and not {body if body.startswith('(') else '(' + body + ')'}"
    if cell.kind == "num":
        if not cell.intervals:
            return "false"  # not(-) of a whole range: no value passes
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
                return clock_text(x, clock) if clock else _num_text(x)
        return None
    values = [v for c in cells if not c.negated for v in c.values]
    for v in values:
        if all(c.contains(v) for c in cells):
            return literal(v)
    return "any other value" if cells and all(c.negated for c in cells) else None


def configure(table: Table, aggregate: object) -> list[BatonError]:
    """What the loader checks of a table's hit policy beyond its shape: ``aggregate:`` (collect only, one
    output, a number for sum/min/max) and multi-hit tables that would decide."""
    out: list[BatonError] = []
    if table.hit in MULTI_HIT and table.head in PROPOSALS:
        out.append(BatonError("bad_value", f"table '{table.name}': hit: {table.hit} asserts a fact per matched row; "
                              f"it cannot {table.head}", table.where, "assert a fact per row, or use hit: first"))
    if aggregate is None:
        types = table.outputs[0].types if table.outputs else None
        own = types.get(table.head) if types is not None else None
        spec = own.fields.get(ROW_FIELD) if own is not None else None
        if table.hit in MULTI_HIT and spec is not None and spec.kind != "int":
            out.append(BatonError("bad_value", f"table '{table.name}': hit: {table.hit} gives each fact the built-in "
                                  f"int field '{ROW_FIELD}', but {table.head}.{ROW_FIELD} is declared {spec.kind}",
                                  table.where, f"rename {table.head}.{ROW_FIELD}"))
        return out
    if table.hit != "collect" or aggregate not in AGGREGATES:
        out.append(BatonError("bad_value", f"table '{table.name}': aggregate: is one of {', '.join(AGGREGATES)}, "
                              "with hit: collect", table.where))
        return out
    if len(table.outputs) != 1 or table.head in PROPOSALS:
        out.append(BatonError("bad_value", f"table '{table.name}': aggregate: {aggregate} needs exactly one output "
                              "field of an asserted fact type", table.where))
        return out
    spec = table.outputs[0].spec
    if aggregate != "count" and (spec is None or spec.scalar_kind != "number"):
        out.append(BatonError("type_mismatch", f"table '{table.name}': aggregate: {aggregate} needs a number "
                              f"output; {table.outputs[0].ref} is not", table.where))
    if aggregate == "count" and (spec is None or spec.kind not in ("number", "int")):
        out.append(BatonError("type_mismatch", f"table '{table.name}': aggregate: count needs a number output; "
                              f"{table.outputs[0].ref} is not", table.where))
    for row in table.rows:
        v = row.outputs[0]
        if aggregate != "count" and (isinstance(v, bool) or not isinstance(v, (int, float))):
            out.append(BatonError("bad_value", f"table '{table.name}' row {row.number}: aggregate: {aggregate} "
                                  "adds up literal numbers", row.where))
            break
    table.aggregate = str(aggregate)
    return out


def add_row_fields(doc: object, types: Mapping[str, FactType]) -> None:
    """The built-in int field ``row`` on the fact types that multi-hit tables assert (before rules are
    checked, so a rule may read ``flag.row``)."""
    from engine.language.types import build_validator

    tables = doc.get("tables") if isinstance(doc, dict) else None
    for node in tables if isinstance(tables, list) else []:
        if not isinstance(node, dict) or node.get("hit") not in MULTI_HIT or node.get("aggregate") is not None:
            continue
        outputs = node.get("outputs")
        head = outputs[0].split(".")[0] if isinstance(outputs, list) and outputs and isinstance(outputs[0], str) else ""
        ft = types.get(head)
        if ft is None or ft.builtin or ROW_FIELD in ft.fields:
            continue
        ft.fields[ROW_FIELD] = FieldSpec(ROW_FIELD, "int", optional=True)
        ft.validate = build_validator(ft)


def aggregate_value(table: Table) -> Eval:
    """A collect table's aggregate over the rows that match the facts the rule matched."""
    matcher = table.matcher()
    how = table.aggregate

    def run(env: Mapping[str, Mapping[str, object]], wm: object) -> object:
        found = [matcher.index.rows[k].outputs[0] for k in matcher.rows(env, wm)]
        if how == "count":
            return len(found)
        numbers = [float(v) if isinstance(v, float) else v for v in found if isinstance(v, (int, float))]
        if not numbers:
            return MISSING
        return sum(numbers) if how == "sum" else min(numbers) if how == "min" else max(numbers)

    return run


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


_KINDS = {"number": "number", "str": "str", "bool": "bool", "date": "date", "datetime": "datetime"}


def column_ref(text: object, types: Mapping[str, FactType], allowed_heads: tuple[str, ...] = ()) -> Column:
    """An input or output column: ``TYPE.field``, a payload key ``decide.KEY``; for inputs also ``=expr`` or
    a definition's name (an expression input, typed by its expression)."""
    if isinstance(text, str) and not allowed_heads and (text.strip().startswith("=") or "." not in text):
        return _expression_column(text, types)
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
    return Column(text, head, fname, spec, types=types)


def _expression_column(text: str, types: Mapping[str, FactType]) -> Column:
    body = text.strip()[1:].strip() if text.strip().startswith("=") else text.strip()
    if not body:
        raise ValueError(f"{text!r}: an expression input is =EXPRESSION, e.g. =quote.value / 1000")
    try:
        node = parse(body)
        ty, value = check_value(node, types, {}, None)
    except ExprError as e:
        raise ValueError(f"{text!r}: {e.message}") from None
    if ty.kind not in _KINDS:
        raise ValueError(f"{text!r} is {ty}; a table column tests single values")
    needs = tuple(dict.fromkeys(bindings_of(node, {}).values()))
    if not needs:
        raise ValueError(f"{text!r} reads no fact; a table input needs a fact to test")
    kind = "enum" if ty.kind == "str" and ty.enum else _KINDS[ty.kind]
    spec = FieldSpec(text.strip(), kind, enum=ty.enum if kind == "enum" else ())
    return Column(text.strip(), "", "", spec, expr=body, needs=needs, types=types, value=value)


def route_inputs(table: Table, types: dict[str, FactType], index: int) -> Rule | None:
    """For a table with expression inputs that all read one fact type, and literal cells and outputs: the
    rule ``TABLE#inputs`` that computes the inputs once per fact into a fact type of the table's own, whose
    fields the rows then test as literals - so the index routes a fact to the rows its values select instead
    of every row running its guard (so the cost per fact grows with the rows selected, not the table).
    None when the table does not qualify (its rows then compute the expressions in their guards)."""
    from engine.language.check import analyse
    from engine.model import Rule, Step

    if not any(c.expr for c in table.inputs) or table.when or table.has_expressions or table.aggregate:
        return None
    heads = {t for c in table.inputs for t in ((c.head,) if c.head else c.needs)}
    if len(heads) != 1 or any(isinstance(v, str) and v.startswith("=") for r in table.rows for v in r.outputs):
        return None
    (head,) = heads
    name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", table.name) + "_inputs"
    while name in types:
        name += "_"
    fields = {}
    computed: list[tuple[tuple[str, ...], str, Eval]] = []
    for k, col in enumerate(table.inputs):
        assert col.spec is not None
        kind = col.spec.kind if col.spec.kind != "enum" else "str"
        fields[f"c{k}"] = FieldSpec(f"c{k}", kind, optional=True)
        text = f"={col.expr}" if col.expr else f"={col.ref}"
        value = col.value if col.value is not None else check_value(parse(col.ref), types, {}, None)[1]
        computed.append(((f"c{k}",), text, value))
    types[name] = FactType(name, fields, table.where, builtin=True)
    table.routed = name
    when = f"exists {head}"
    step = Step("assert", payload={}, fact_type=name, computed=computed)
    return Rule(f"{table.name}#inputs", index, table.priority, when, analyse(parse(when), types), [step], table.where)


def table_coverage(tables: Sequence[Table], fired: set[str]) -> list[tuple[Table, int, list[Row]]]:
    """Per table: how many of its rows fired in any test, and the rows that never did."""
    out = []
    for t in tables:
        never = [r for r in t.rows if t.rule_name(r) not in fired]
        out.append((t, len(t.rows) - len(never), never))
    return out


def table_rule_names(tables: Sequence[Table]) -> set[str]:
    """The rules tables compile to: rows, and each table's own (TABLE#inputs, TABLE#sum ...)."""
    return {t.rule_name(r) for t in tables for r in t.rows} | {
        f"{t.name}#{x}" for t in tables for x in ("inputs", *AGGREGATES)}


def aggregate_rule(table: Table, types: Mapping[str, FactType], index: int) -> Rule:
    """The rule that asserts a collect table's aggregate once its rows have fired: it is written after them,
    at the table's priority, so it fires after the last matched row of the same facts."""
    from engine.language.check import analyse
    from engine.model import Rule, Step

    parts = [f"exists {t}" for t in table.input_types()]
    if table.when:
        parts.append(f"({table.when})")
    when = " and ".join(parts)
    col = table.outputs[0]
    step = Step("assert", payload={}, fact_type=table.head,
                computed=[((col.field,), f"={table.aggregate}({table.name} rows)", aggregate_value(table))])
    guard = None if table.aggregate == "count" else Precedence(table, table.index(), -1, mode="some")
    return Rule(f"{table.name}#{table.aggregate}", index, table.priority, when, analyse(parse(when), types), [step],
                table.where, guard)


__all__ = ["AGGREGATES", "HIT_POLICIES", "MULTI_HIT", "PROPOSALS", "ROW_FIELD", "TABLE_ERRORS", "Cell",
           "Column", "Row", "Table", "TableConflict", "add_row_fields", "aggregate_rule", "analyse_table",
           "column_ref", "configure", "parse_cell", "parse_output", "route_inputs", "table_coverage",
           "table_rule_names"]
