"""A decision table's input cells: parsed from what an analyst writes (``-``, a value, a comparison, an
interval, a list, ``not``), and written back as the condition text of a row's rule."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.language import dates
from engine.language.types import FieldSpec

_NUM = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


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
        return number_text(x) if not self.clock else clock_text(x, self.clock)

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


def parse_number(text: str) -> float | int | None:
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
    v = parse_number(s) if not clock else _clock_number(s, clock)
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
                lo = clock_text(i.lo, clock) if clock else number_text(i.lo)
                hi = clock_text(i.hi, clock) if clock else number_text(i.hi)
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
    if _NAME_REF.match(t) or parse_number(t) is not None or re.fullmatch(r'"(?:[^"\\]|\\.)*"', t) or \
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\([^()]*\)", t):
        return t
    return f"({t})"


def number_text(x: float) -> str:
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
