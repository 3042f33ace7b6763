"""Which rule patterns a fact can fill: Baton's own alpha memory, in front of the engine's network.

A *slot* is one pattern of one engine rule (one branch of one rule). Its *literal tests* are the parts
of the branch condition that compare one field of that pattern's fact with literals: ``== != < <= > >=``,
``in``/``not in`` a list of literals, ``contains`` a literal, a bare boolean field or its ``not``.
Everything else (joins, arithmetic, ``matches``, negation, ``or`` inside one fact) stays in the rule's
guard, checked when the activation fires.

For each fact the index returns exactly the slots whose literal tests all hold, so the engine only
ever sees a fact where it can match, and a rule that cannot match costs nothing. Two steps:

1. a *primary* lookup finds a superset: hash on an equality, ``in`` or ``contains`` value, a stabbing
   query on numeric ranges (an interval tree); a *free* slot (nothing to look up: ``exists claim``, the
   unconstrained side of a join) is not looked up at all - compile.py's router decides when it matters;
2. each candidate's literal tests are evaluated by the same closures as the guards (``compile_expr``),
   so the answer is exact by construction, not by a second implementation of the operators.

The lookup in step 1 may only over-approximate: a slot whose primary test holds must be found. That is
what the property test in tests/engine/test_index.py checks against the guard-only reference.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.language.check import FactIndex, Facts, compile_expr
from engine.language.expr import COMPARISONS, Binary, ListLit, Lit, Neg, Node, Not, Ref
from engine.language.trees import shape

Values = Mapping[str, object]
# (equal | member | range, field, values or interval, the tests the lookup answers exactly)
_Option = tuple[str, str, "tuple[object, ...] | Interval", tuple[int, ...]]
Check = Callable[[Facts, FactIndex], object]
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


@dataclass(frozen=True, slots=True)
class LiteralTest:
    """One literal test of a slot, read from the condition: ``field op value``."""

    field: str
    op: str  # == != < <= > >= in not-in contains is-true not-true
    value: object
    node: Node


def _literal(node: Node) -> tuple[bool, object]:
    if isinstance(node, Lit):
        return True, node.value
    if isinstance(node, Neg) and isinstance(node.operand, Lit) and isinstance(node.operand.value, (int, float)) \
            and not isinstance(node.operand.value, bool):
        return True, -node.operand.value
    return False, None


def literal_test(part: Node, kind_of: Callable[[str, str], str]) -> tuple[str, LiteralTest] | None:
    """(binding, test) when ``part`` tests one field of one pattern against literals, else None.

    ``kind_of(binding, field)`` is the field's comparison kind: str, number, bool or list."""
    if isinstance(part, Ref):
        return (part.binding, LiteralTest(part.field, "is-true", True, part)) \
            if kind_of(part.binding, part.field) == "bool" else None
    if isinstance(part, Not) and isinstance(part.operand, Ref):
        flag = part.operand
        return (flag.binding, LiteralTest(flag.field, "not-true", True, part)) \
            if kind_of(flag.binding, flag.field) == "bool" else None
    if not isinstance(part, Binary):
        return None
    op = part.op
    if op in COMPARISONS:
        side, other = part.left, part.right
        if not isinstance(side, Ref):
            side, other, op = part.right, part.left, _FLIP[op]
        ok, value = _literal(other)
        if not isinstance(side, Ref) or not ok or kind_of(side.binding, side.field) == "list":
            return None
        return side.binding, LiteralTest(side.field, op, value, part)
    if op in ("in", "not in") and isinstance(part.left, Ref) and isinstance(part.right, ListLit):
        items = [_literal(i) for i in part.right.items]
        if not all(ok for ok, _ in items) or kind_of(part.left.binding, part.left.field) == "list":
            return None
        values = tuple(v for _, v in items)
        return part.left.binding, LiteralTest(part.left.field, "in" if op == "in" else "not-in", values, part)
    if op == "contains" and isinstance(part.left, Ref):
        ok, value = _literal(part.right)
        if ok and kind_of(part.left.binding, part.left.field) == "list":
            return part.left.binding, LiteralTest(part.left.field, "contains", value, part)
        if ok:  # a substring test: verified per candidate, never looked up
            return part.left.binding, LiteralTest(part.left.field, "substring", value, part)
    return None


# -- numeric ranges: a centred interval tree (static; stabbing query in O(log n + hits)) ---------------

@dataclass(frozen=True, slots=True)
class Interval:
    lo: float
    lo_closed: bool
    hi: float
    hi_closed: bool
    slot: int

    def contains(self, x: float) -> bool:
        return (x > self.lo or (self.lo_closed and x == self.lo)) and (x < self.hi or (self.hi_closed and x == self.hi))


class IntervalTree:
    __slots__ = ("by_hi", "by_lo", "center", "leaf", "left", "right")

    def __init__(self, items: Sequence[Interval]) -> None:
        points = sorted(p for i in items for p in (i.lo, i.hi) if math.isfinite(p))
        self.center = points[len(points) // 2] if points else 0.0
        here, lower, upper = [], [], []
        for i in items:
            if i.contains(self.center):
                here.append(i)
            elif i.hi <= self.center:
                lower.append(i)
            else:
                upper.append(i)
        # a split that leaves every interval on one side would not shrink: such a node is scanned whole
        self.leaf: list[Interval] = list(items) if len(lower) == len(items) or len(upper) == len(items) else []
        self.by_lo = sorted(here, key=lambda i: i.lo)
        self.by_hi = sorted(here, key=lambda i: i.hi, reverse=True)
        self.left = IntervalTree(lower) if lower and not self.leaf else None
        self.right = IntervalTree(upper) if upper and not self.leaf else None

    def stab(self, x: float, out: list[int]) -> None:
        node: IntervalTree | None = self
        while node is not None:
            if node.leaf:
                out.extend(i.slot for i in node.leaf if i.contains(x))
                return
            if x < node.center:
                for i in node.by_lo:
                    if i.lo > x:
                        break
                    if i.contains(x):
                        out.append(i.slot)
                node = node.left
            elif x > node.center:
                for i in node.by_hi:
                    if i.hi < x:
                        break
                    if i.contains(x):
                        out.append(i.slot)
                node = node.right
            else:
                out.extend(i.slot for i in node.by_lo)
                return


class Segments:
    """Numeric intervals as the sorted points where coverage changes, with the intervals covering each
    point and each gap between two points: a stabbing query is one bisect (in C) and a list. Built only
    when that list is small in total (bands of a rate table, mostly disjoint ranges); otherwise the
    interval tree answers."""

    __slots__ = ("at", "between", "points")

    def __init__(self, points: list[float], at: list[tuple[int, ...]], between: list[tuple[int, ...]]) -> None:
        self.points, self.at, self.between = points, at, between

    @staticmethod
    def build(items: Sequence[Interval], budget: int) -> Segments | None:
        points = sorted({p for i in items for p in (i.lo, i.hi) if math.isfinite(p)})
        at: list[list[int]] = [[] for _ in points]
        between: list[list[int]] = [[] for _ in range(len(points) + 1)]  # gap k lies below points[k]
        total = 0
        for i in items:
            if i.lo > i.hi or (i.lo == i.hi and not (i.lo_closed and i.hi_closed)):
                continue  # holds nowhere
            first = 0 if not math.isfinite(i.lo) else bisect_left(points, i.lo)
            last = len(points) - 1 if not math.isfinite(i.hi) else bisect_left(points, i.hi)
            if math.isfinite(i.lo) and i.lo_closed:
                at[first].append(i.slot)
            for k in range(first + (1 if math.isfinite(i.lo) else 0), last + (0 if math.isfinite(i.hi) else 1)):
                at[k].append(i.slot)
            if math.isfinite(i.hi) and i.hi_closed and i.hi != i.lo:
                at[last].append(i.slot)
            lo_gap = first + 1 if math.isfinite(i.lo) else 0
            hi_gap = last if math.isfinite(i.hi) else len(points)
            for k in range(lo_gap, hi_gap + 1):
                between[k].append(i.slot)
            total += (hi_gap - lo_gap + 1) + (last - first + 1)
            if total > budget:
                return None
        return Segments(points, [tuple(a) for a in at], [tuple(b) for b in between])  # tuples: no spare room

    def stab(self, x: float, out: list[int]) -> None:
        k = bisect_left(self.points, x)
        if k < len(self.points) and self.points[k] == x:
            out.extend(self.at[k])
        else:
            out.extend(self.between[k])


def _interval(tests: list[LiteralTest], slot: int) -> Interval:
    lo, lo_closed, hi, hi_closed = -math.inf, False, math.inf, False
    for t in tests:
        v = float(t.value)  # type: ignore[arg-type]
        if t.op == "==":
            if v > lo or (v == lo and lo_closed):
                lo, lo_closed = v, True
            if v < hi or (v == hi and hi_closed):
                hi, hi_closed = v, True
        elif t.op in (">", ">="):
            if v > lo or (v == lo and t.op == ">"):
                lo, lo_closed = v, t.op == ">="
        elif v < hi or (v == hi and t.op == "<"):
            hi, hi_closed = v, t.op == "<="
    return Interval(lo, lo_closed, hi, hi_closed, slot)


# -- the index of one fact type ----------------------------------------------------------------------

@dataclass(slots=True)
class _TypeIndex:
    equal: dict[str, dict[object, tuple[int, ...]]] = field(default_factory=dict)
    member: dict[str, dict[object, tuple[int, ...]]] = field(default_factory=dict)  # list field contains
    ranges: dict[str, list[Interval]] = field(default_factory=dict)
    trees: dict[str, IntervalTree | Segments] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Slot:
    type_name: str
    binding: str
    # the literal tests its lookup does not answer, as the guard would evaluate them: a free slot's every test
    # (set when the index is frozen; the tests a lookup answers are compiled for nothing)
    checks: tuple[Check, ...]


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


class LiteralIndex:
    """Slots by fact type; ``candidates(type, values)`` are the slots whose literal tests all hold."""

    def __init__(self) -> None:
        self.slots: list[Slot] = []
        self.types: dict[str, _TypeIndex] = {}
        self.free: set[int] = set()
        # slot -> the tests it could be filed under, and its tests' nodes: read when the index is frozen, then let go
        self.options: list[tuple[int, list[_Option], tuple[Node, ...]]] = []
        self.shared: dict[tuple[object, str, str], Check] = {}  # what a test computes -> its check, until frozen

    def add(self, type_name: str, binding: str, tests: list[LiteralTest]) -> int:
        number = len(self.slots)
        self.types.setdefault(type_name, _TypeIndex())
        options: list[_Option] = []
        for k, t in enumerate(tests):
            if t.op == "==" and not _is_number(t.value):
                options.append(("equal", t.field, (t.value,), (k,)))
            elif t.op == "is-true":
                options.append(("equal", t.field, (True,), (k,)))
            elif t.op == "in" and isinstance(t.value, tuple) and t.value:
                options.append(("equal", t.field, tuple(dict.fromkeys(t.value)), (k,)))
            elif t.op == "contains":
                options.append(("member", t.field, (t.value,), (k,)))
        for fname in dict.fromkeys(t.field for t in tests):
            bounds = [k for k, t in enumerate(tests) if t.field == fname and t.op in ("==", "<", "<=", ">", ">=")
                      and _is_number(t.value)]
            if bounds:
                options.append(("range", fname, _interval([tests[k] for k in bounds], number), tuple(bounds)))
        if options:  # its checks are those its lookup leaves, known when the index is frozen
            self.slots.append(Slot(type_name, binding, ()))
            self.options.append((number, options, tuple(t.node for t in tests)))
        else:
            self.slots.append(Slot(type_name, binding, self.checks([t.node for t in tests], binding, type_name)))
            self.free.add(number)
        return number

    def checks(self, nodes: list[Node], binding: str, type_name: str) -> tuple[Check, ...]:
        """The nodes' evaluators, one for every test that computes the same (``shape``) until the index is frozen:
        slots of a large ruleset test the same field against the same literal again and again."""
        aliases = {binding: type_name}
        out = []
        for n in nodes:
            key = shape(n)
            check = None if key is None else self.shared.get((key, binding, type_name))
            if check is None:
                check = compile_expr(n, aliases)
                if key is not None:
                    self.shared[(key, binding, type_name)] = check
            out.append(check)
        return tuple(out)

    def freeze(self) -> None:
        """File each slot under its most selective test: the smallest hash bucket, or the fewest
        overlapping intervals on a range (counted over every slot that could be filed there)."""
        counts: dict[tuple[str, str, str, object], int] = {}
        spans: dict[tuple[str, str], list[Interval]] = {}
        for number, options, _ in self.options:
            tname = self.slots[number].type_name
            for kind, fname, what, _ in options:
                if isinstance(what, Interval):
                    spans.setdefault((tname, fname), []).append(what)
                else:
                    for v in what:
                        counts[(tname, kind, fname, v)] = counts.get((tname, kind, fname, v), 0) + 1
        ends = {key: (sorted(i.lo for i in items), sorted(i.hi for i in items)) for key, items in spans.items()}

        def cost(tname: str, option: _Option) -> float:
            kind, fname, what, _ = option
            if isinstance(what, Interval):
                los, his = ends[(tname, fname)]
                # intervals that overlap this one: all, less those starting after it or ending before it
                return len(los) - (len(los) - bisect_right(los, what.hi)) - bisect_left(his, what.lo)
            return sum(counts[(tname, kind, fname, v)] for v in what)

        filed: dict[tuple[str, str, str], dict[object, list[int]]] = {}
        for number, options, nodes in self.options:
            slot = self.slots[number]
            ti = self.types[slot.type_name]
            kind, fname, what, answered = min(options, key=lambda o: cost(slot.type_name, o))
            left = [n for k, n in enumerate(nodes) if k not in answered]
            if left:
                self.slots[number] = Slot(slot.type_name, slot.binding, self.checks(left, slot.binding, slot.type_name))
            if isinstance(what, Interval):
                ti.ranges.setdefault(fname, []).append(what)
            else:
                table = filed.setdefault((slot.type_name, kind, fname), {})
                for v in what:
                    table.setdefault(v, []).append(number)
        self.options, self.shared = [], {}
        for (tname, kind, fname), table in filed.items():  # tuples: the lists' spare room is not kept
            ti = self.types[tname]
            (ti.member if kind == "member" else ti.equal)[fname] = {v: tuple(hit) for v, hit in table.items()}
        for ti in self.types.values():
            ti.trees = {f: Segments.build(items, 8 * len(items) + 1000) or IntervalTree(items)
                        for f, items in ti.ranges.items()}

    def is_free(self, number: int) -> bool:
        return number in self.free

    def holds(self, number: int, values: Values, wm: FactIndex) -> bool:
        """Whether every literal test of this free slot (the only ones the router asks about) holds for a fact
        with these values; for a slot its lookup files, the tests that lookup does not answer."""
        slot = self.slots[number]
        if not slot.checks:
            return True
        env = {slot.binding: values}
        return all(check(env, wm) is True for check in slot.checks)

    def candidates(self, type_name: str, values: Values, wm: FactIndex) -> list[int]:
        """The slots, free ones aside, whose literal tests all hold for this fact (sorted)."""
        ti = self.types.get(type_name)
        if ti is None:
            return []
        found: list[int] = []
        for fname, table in ti.equal.items():
            v = values.get(fname)
            if v is not None:
                hit = table.get(v)
                if hit:
                    found.extend(hit)
        for fname, tree in ti.trees.items():
            v = values.get(fname)
            if v is not None:
                tree.stab(v, found)  # type: ignore[arg-type]
        for fname, table in ti.member.items():
            items = values.get(fname)
            if isinstance(items, list) and items:
                for item in set(items):
                    hit = table.get(item)
                    if hit:
                        found.extend(hit)
        if not found:
            return found
        if len(found) > 1:
            found = sorted(set(found))
        slots = self.slots
        out = []
        for number in found:
            slot = slots[number]
            checks = slot.checks
            if checks:
                env = {slot.binding: values}
                if not all(check(env, wm) is True for check in checks):
                    continue
            out.append(number)
        return out
