"""Static analysis of a compiled ruleset: warnings an analyst should see before publishing.

- ``never_fires``: every branch of a rule's condition is contradictory (``x > 10 and x < 5``,
  ``tier == "gold" and tier == "standard"``, ``policy.active and not policy.active``).
- ``shadowed``: a rule whose only effect is a proposal, and a rule that fires whenever it does
  (same or fewer facts, a weaker condition) proposes with higher precedence: its proposal never wins.
- ``unused_fact``: a fact type something produces (assert, model, tool, table) that no condition,
  prompt or effect reads.
- ``unused_action``: a model or tool action no rule calls.
- decision-table gaps and unreachable rows come from :mod:`engine.language.tables`.

The reasoning is over the parts of a condition it understands exactly — comparisons of one field with
literals, ``in`` lists, boolean fields, ``exists`` — and is conservative elsewhere: a part it cannot
read never makes it claim a rule is dead or shadowed.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from engine.errors import BatonError
from engine.index import Interval, IntervalTree
from engine.language.check import EPOCH, Branch
from engine.language.expr import Binary, BoolOp, Exists, ListLit, Lit, Node, Not, Ref, render
from engine.language.types import BUILTIN_TYPES
from engine.model import Rule, Ruleset

Key = tuple[str, str]  # (binding, field)
SCAN = 64  # rules of a range's tree met in position order before the tree itself is asked (_Winners)
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


@dataclass(slots=True)
class Domain:
    """What a conjunction allows for one field: an interval with exclusions (numbers), or a set (strings)."""

    lo: float = -math.inf
    lo_closed: bool = False
    hi: float = math.inf
    hi_closed: bool = False
    num_excluded: set[float] = field(default_factory=set)
    allowed: set[object] | None = None  # None: any value (strings, booleans)
    excluded: set[object] = field(default_factory=set)

    def add_bound(self, op: str, x: float) -> None:
        if op in (">", ">="):
            closed = op == ">="
            if x > self.lo or (x == self.lo and not closed):
                self.lo, self.lo_closed = x, closed
        elif op in ("<", "<="):
            closed = op == "<="
            if x < self.hi or (x == self.hi and not closed):
                self.hi, self.hi_closed = x, closed
        elif op == "==":
            self.add_bound(">=", x)
            self.add_bound("<=", x)
        elif op == "!=":
            self.num_excluded.add(x)

    def allow(self, values: Iterable[object]) -> None:
        vs = set(values)
        self.allowed = vs if self.allowed is None else self.allowed & vs

    def empty(self) -> bool:
        if self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed)):
            return True
        if self.lo == self.hi and self.lo in self.num_excluded:
            return True
        return self.allowed is not None and not (self.allowed - self.excluded)

    def within(self, other: Domain) -> bool:
        """Every value this domain allows, ``other`` allows too."""
        if other.lo > -math.inf and (self.lo < other.lo or (self.lo == other.lo and self.lo_closed
                                                            and not other.lo_closed)):
            return False
        if other.hi < math.inf and (self.hi > other.hi or (self.hi == other.hi and self.hi_closed
                                                           and not other.hi_closed)):
            return False
        for x in other.num_excluded:
            inside = (x > self.lo or (self.lo_closed and x == self.lo)) and (x < self.hi or (self.hi_closed
                                                                                          and x == self.hi))
            if inside and x not in self.num_excluded:
                return False
        if other.allowed is not None and (self.allowed is None or not (self.allowed - self.excluded)
                                          <= other.allowed):
            return False
        if other.excluded:
            mine = None if self.allowed is None else self.allowed - self.excluded
            if mine is None:
                if not other.excluded <= self.excluded:
                    return False
            elif mine & other.excluded:
                return False
        return True


@dataclass(slots=True)
class Conj:
    """A branch read as per-field domains; ``exact`` is False when some part was not understood."""

    types: dict[str, str]  # binding -> fact type
    domains: dict[Key, Domain] = field(default_factory=dict)
    exact: bool = True
    negations: bool = False

    def domain(self, key: Key) -> Domain:
        return self.domains.setdefault(key, Domain())

    def contradictory(self) -> bool:
        return any(d.empty() for d in self.domains.values())


def _lit(node: Node) -> object:
    return node.value if isinstance(node, Lit) else None


def read_part(conj: Conj, node: Node) -> None:
    if isinstance(node, BoolOp) and node.op == "and":
        for o in node.operands:
            read_part(conj, o)
        return
    if isinstance(node, Exists):
        if node.negated:
            conj.negations = True
            conj.exact = False
        return
    if isinstance(node, Ref):  # a boolean field on its own
        conj.domain((node.binding, node.field)).allow([True])
        return
    if isinstance(node, Not) and isinstance(node.operand, Ref):
        conj.domain((node.operand.binding, node.operand.field)).allow([False])
        return
    if isinstance(node, Binary):
        left, right, op = node.left, node.right, node.op
        if isinstance(left, Lit) and isinstance(right, Ref) and op in _FLIP:
            left, right, op = right, left, _FLIP[op]
        if isinstance(left, Ref) and isinstance(right, Lit):
            value = right.value
            d = conj.domain((left.binding, left.field))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                d.add_bound(op, float(value))
                return
            if op == "==":
                d.allow([value])
                return
            if op == "!=":
                d.excluded.add(value)
                return
        if isinstance(left, Ref) and isinstance(right, ListLit) and op in ("in", "not in") and all(
                isinstance(i, Lit) for i in right.items):
            values = [_lit(i) for i in right.items]
            d = conj.domain((left.binding, left.field))
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                conj.exact = False
                return
            if op == "in":
                d.allow(values)
            else:
                d.excluded.update(values)
            return
    conj.exact = False


def read_branch(branch: Branch) -> Conj:
    conj = Conj(dict(branch.bindings))
    for part in branch.parts:
        read_part(conj, part)
    return conj


def _conjuncts(node: Node) -> Iterator[Node]:
    if isinstance(node, BoolOp) and node.op == "and":
        for o in node.operands:
            yield from _conjuncts(o)
    else:
        yield node


def _empty_with(parts: list[Node], types: Mapping[str, str], key: Key) -> bool:
    conj = Conj(dict(types))
    for part in parts:
        read_part(conj, part)
    return key in conj.domains and conj.domains[key].empty()


def contradiction(branch: Branch) -> str:
    """The comparisons of a contradictory branch that contradict each other (a smallest such set, found by
    dropping one at a time), as written: 'claim.amount > 10 and claim.amount < 5'."""
    conj = read_branch(branch)
    parts = [p for part in branch.parts for p in _conjuncts(part)]
    for key, d in conj.domains.items():
        if not d.empty():
            continue
        keep = [p for p in parts if key in read_branch(Branch(branch.bindings, (p,))).domains]
        for p in list(keep):
            fewer = [q for q in keep if q is not p]
            if fewer and _empty_with(fewer, branch.bindings, key):
                keep = fewer
        return " and ".join(render(p) for p in keep) + (" cannot both hold" if len(keep) == 2 else
                                                         " cannot all hold" if len(keep) > 2 else " cannot hold")
    return ""


def _proposes(rule: Rule) -> bool:
    return any(s.kind in ("decide", "escalate") for s in rule.steps)


def _only_proposes(rule: Rule) -> bool:
    return bool(rule.steps) and all(s.kind in ("decide", "escalate") for s in rule.steps)


def _implies(narrow: Conj, wide: Conj) -> bool:
    """Whenever ``narrow`` holds on some facts, ``wide`` holds on (a subset of) the same facts."""
    if not wide.exact:
        return False
    # every fact wide needs must be one narrow has, by type, with no aliases on either side
    if any(b != t for b, t in wide.types.items()) or any(b != t for b, t in narrow.types.items()):
        return False
    if not set(wide.types) <= set(narrow.types):
        return False
    for key, wd in wide.domains.items():
        nd = narrow.domains.get(key, Domain())
        if not nd.within(wd):
            return False
    return True


def _finite(d: Domain) -> set[object] | None:
    """The values a domain allows when they are finitely many (a set, or one number), else None."""
    if d.allowed is not None:
        return d.allowed - d.excluded
    if d.lo == d.hi and d.lo_closed and d.hi_closed and d.lo not in d.num_excluded:
        return {d.lo}
    return None


def _bounded(d: Domain) -> bool:
    return d.allowed is None and (math.isfinite(d.lo) or math.isfinite(d.hi))


def _inside(d: Domain) -> float | None:
    """A point every value range containing ``d`` must contain (None: ``d`` has no finite bound)."""
    if d.lo == d.hi:
        return d.lo
    if math.isfinite(d.lo) and math.isfinite(d.hi):
        return (d.lo + d.hi) / 2
    if math.isfinite(d.lo):
        return d.lo + 1
    if math.isfinite(d.hi):
        return d.hi - 1
    return None


class _Winners:
    """Rules that could shadow others, filed so a rule meets only those that could imply it.

    ``wide`` can imply ``narrow`` only if narrow's domain lies within wide's on every field wide
    restricts: a winner is filed under its most selective such field - a finite value set (hashed by
    value) or a numeric range (an interval tree) - and a rule looks up its own values, or a point inside
    its own range. Winners restricting nothing are met by every rule. This keeps the analysis
    near-linear on large rulesets instead of comparing every pair."""

    def __init__(self, order: list[Rule], reads: dict[str, list[Conj]], dead: set[str]) -> None:
        self.order = order
        self.position = {r.name: k for k, r in enumerate(order)}
        self.general: list[Rule] = []
        self.filed: dict[tuple[Key, object], list[Rule]] = {}
        spans: dict[Key, list[Interval]] = {}
        options: dict[str, list[tuple[Key, Domain]]] = {}
        counts: dict[tuple[Key, object], int] = {}
        for rule in order:
            if rule.name in dead or not _proposes(rule) or len(reads[rule.name]) != 1 or not reads[rule.name][0].exact:
                continue
            mine = [(key, d) for key, d in reads[rule.name][0].domains.items() if _finite(d) is not None or _bounded(d)]
            options[rule.name] = mine
            for key, d in mine:
                for v in _finite(d) or ():
                    counts[(key, v)] = counts.get((key, v), 0) + 1
                if _finite(d) is None:
                    spans.setdefault(key, []).append(Interval(d.lo, True, d.hi, True, self.position[rule.name]))
        ends = {key: (sorted(i.lo for i in items), sorted(i.hi for i in items)) for key, items in spans.items()}

        def cost(option: tuple[Key, Domain]) -> int:
            key, d = option
            vals = _finite(d)
            if vals is not None:
                return sum(counts[(key, v)] for v in vals)
            los, his = ends[key]
            return bisect_right(los, d.hi) - bisect_left(his, d.lo)

        chosen: dict[Key, list[Interval]] = {}
        for rule in order:
            if rule.name not in options:
                continue
            if not options[rule.name]:
                self.general.append(rule)
                continue
            key, d = min(options[rule.name], key=cost)
            vals = _finite(d)
            if vals is None:
                chosen.setdefault(key, []).append(Interval(d.lo, True, d.hi, True, self.position[rule.name]))
            for v in vals or ():
                self.filed.setdefault((key, v), []).append(rule)
        self.trees = {key: IntervalTree(items) for key, items in chosen.items()}
        self.by_position = {key: sorted(items, key=lambda i: i.slot) for key, items in chosen.items()}

    def could_imply(self, narrow: list[Conj], before: int) -> Iterator[Rule]:
        """The rules before position ``before`` that could imply ``narrow``, in position order, lazily: the
        caller stops at the first that does. Filed and general ones are few; from a range's interval tree the
        earliest rules are met first by a scan in position order, so that nested ranges (``t.a > 1``,
        ``t.a > 2``, ...: every earlier rule contains every later one) cost one look each, not the
        quadratic list of every earlier rule."""
        found = {r.name: r for r in self.general if self.position[r.name] < before}
        streams: list[Iterator[Rule]] = []
        if narrow:
            for key, d in narrow[0].domains.items():
                for v in _finite(d) or ():
                    for r in self.filed.get((key, v), ()):
                        if self.position[r.name] < before:
                            found[r.name] = r
                tree = self.trees.get(key)
                point = _inside(d) if tree is not None and d.allowed is None else None
                if tree is not None and point is not None:
                    streams.append(self._containing(key, tree, point, before))
        seen: set[str] = set()
        first = sorted(found.values(), key=lambda r: self.position[r.name])
        for rule in heapq.merge(first, *streams, key=lambda r: self.position[r.name]):
            if rule.name not in seen:
                seen.add(rule.name)
                yield rule

    def _containing(self, key: Key, tree: IntervalTree, point: float, before: int) -> Iterator[Rule]:
        """Rules of ``key``'s tree whose range holds ``point``, before ``before``, in position order: the first
        :data:`SCAN` by a walk in position order, the rest (if it comes to that) from the tree."""
        items = self.by_position[key]
        for n, i in enumerate(items):
            if i.slot >= before:
                return
            if n == SCAN:
                hits: list[int] = []
                tree.stab(point, hits)
                for k in sorted(h for h in hits if i.slot <= h < before):
                    yield self.order[k]
                return
            if i.contains(point):
                yield self.order[i.slot]


def analyse_ruleset(rs: Ruleset) -> list[BatonError]:
    warnings: list[BatonError] = []
    reads: dict[str, list[Conj]] = {r.name: [read_branch(b) for b in r.condition.branches] for r in rs.rules}
    dead: set[str] = set()
    rows = {t.rule_name(row) for t in rs.tables for row in t.rows}
    for rule in rs.rules:
        if rule.name in rows:
            continue  # table rows have their own exact analysis (gaps, unreachable rows)
        if reads[rule.name] and all(c.contradictory() for c in reads[rule.name]):
            dead.add(rule.name)
            why = "; ".join(dict.fromkeys(c for c in (contradiction(b) for b in rule.condition.branches) if c))
            warnings.append(BatonError("never_fires", f"rule '{rule.name}' can never fire: its condition "
                                       "contradicts itself" + (f" ({why})" if why else ""),
                                       rule.where, "check the comparisons on each field"))
    order = sorted(rs.rules, key=lambda r: (-r.priority, r.index))
    winners = _Winners(order, reads, dead)
    for k, rule in enumerate(order):
        if rule.name in dead or not _only_proposes(rule):
            continue
        for winner in winners.could_imply(reads[rule.name], before=k):
            wide = reads[winner.name][0]
            if all(_implies(c, wide) for c in reads[rule.name]):
                why = ("a higher priority" if winner.priority > rule.priority else "the same priority, written "
                       "earlier,")
                warnings.append(BatonError(
                    "shadowed", f"rule '{rule.name}' never wins: whenever it fires, '{winner.name}' fires too and "
                    f"its proposal has {why}", rule.where,
                    f"narrow '{winner.name}', or raise the priority of '{rule.name}'"))
                break
    warnings.extend(_unused(rs))
    return warnings


_TEMPLATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unused(rs: Ruleset) -> list[BatonError]:
    out: list[BatonError] = []
    read: set[str] = set()
    for rule in rs.rules:
        for branch in rule.condition.branches:
            read.update(branch.bindings.values())
            read.update(t[len(EPOCH):] for t in branch.epochs.values())  # aggregated over
        read.update(rule.condition.negated_types)
        read.update(rule.condition.aliases.values())
    texts = [m.prompt for m in rs.models.values()]
    for rule in rs.rules:
        for step in rule.steps:
            texts.extend(str(v) for v in step.payload.values() if isinstance(v, str) and "{{" in v)
            texts.extend(text for _, text, _ in step.computed)  # =expr values name the types they read
    for text in texts:
        read.update(n for n in _TEMPLATE_NAME.findall(text) if n in rs.types)
    if any("facts" in _TEMPLATE_NAME.findall(t) for t in texts):
        return out + _unused_actions(rs)  # a template reading every fact uses them all
    produced: dict[str, str] = {}
    for rule in rs.rules:
        for step in rule.steps:
            if step.kind == "assert":
                produced.setdefault(step.fact_type, f"rule '{rule.name}' asserts it")
    for m in rs.models.values():
        produced.setdefault(m.produces, f"model '{m.name}' produces it")
    for t in rs.tools.values():
        produced.setdefault(t.produces, f"tool '{t.name}' produces it")
    for tname, how in produced.items():
        if tname and tname not in read and tname not in BUILTIN_TYPES:
            ft = rs.types.get(tname)
            out.append(BatonError("unused_fact", f"fact type '{tname}' is produced ({how}) but no rule, prompt or "
                                  "effect reads it", ft.where if ft else None, "use it in a condition, or stop "
                                  "producing it"))
    return out + _unused_actions(rs)


def _unused_actions(rs: Ruleset) -> list[BatonError]:
    called = {s.action for r in rs.rules for s in r.steps if s.kind == "call"}
    out = []
    for kind, actions in (("model", rs.models), ("tool", rs.tools)):
        for name, action in actions.items():
            if name not in called:
                out.append(BatonError("unused_action", f"{kind} action '{name}' is declared but no rule calls it",
                                      action.where, "call it from a rule's then:, or remove it"))
    return out
