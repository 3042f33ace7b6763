"""Reading a parsed expression: its sub-expressions, the facts each part binds, its aggregates."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import fields

from engine.language.expr import Binary, Bind, BoolOp, Call, Exists, ListLit, Lit, Neg, Node, Not, Ref, TypeName
from engine.language.runtime import DECISION

AGGREGATES = ("count", "sum", "min", "max", "list")


def is_aggregate(node: Call) -> bool:
    """An aggregate over facts (count(loan), sum(loan.amount), list(...)), or - with a list value as its one
    argument (count(xs), sum(xs), min(xs), max(xs)) or two or more values (min(a, b)) - a function."""
    base = node.name.split(":")[0]
    if base == "list":
        return True
    if base not in ("count", "sum", "min", "max"):
        return False
    if len(node.args) != 1:
        return base in ("count", "sum")
    return node.where is not None or isinstance(node.args[0], (Ref, TypeName))


def aggregated_type(node: Call) -> str:
    """The fact type an aggregate runs over: ``loan`` in count(loan) and in sum(loan.amount)."""
    arg = node.args[0]
    return arg.name if isinstance(arg, TypeName) else arg.binding if isinstance(arg, Ref) else ""


def bindings_of(node: Node, aliases: Mapping[str, str], filters: bool = True) -> dict[str, str]:
    """The patterns a node needs: binding name -> fact type (negated 'exists' needs none). The facts an
    aggregate runs over are not patterns; a fact its filter names from outside is (``filters=False``
    leaves aggregates out entirely: what the condition needs besides them)."""
    out: dict[str, str] = {}
    _bindings(node, "", aliases, filters, out)
    return out


def _bindings(n: Node, local: str, aliases: Mapping[str, str], filters: bool, out: dict[str, str]) -> None:
    """``bindings_of``'s walk. Not a closure: a function that calls itself through its own cell is a
    reference cycle, left for the garbage collector, which a ruleset's load pauses (a 10,000-rule load
    kept 10 MB of them to the end, and the holes they left: bench/rules_scale.py --memory)."""
    if isinstance(n, Ref):
        if n.binding != local and (n.binding != DECISION or n.binding in aliases):
            out[n.binding] = aliases.get(n.binding, n.binding)
    elif isinstance(n, Exists):
        if not n.negated:
            out[n.type_name] = n.type_name
    elif isinstance(n, Bind):
        out[n.alias] = n.type_name
    elif isinstance(n, Call) and is_aggregate(n):
        if filters:
            for c in children(n):
                _bindings(c, aggregated_type(n), aliases, filters, out)
    else:
        for c in children(n):
            _bindings(c, local, aliases, filters, out)


def aggregates_in(node: Node) -> list[Call]:
    """The aggregates a condition part computes, outermost, in written order."""
    if isinstance(node, Call) and is_aggregate(node):
        return [node]
    return [a for c in children(node) for a in aggregates_in(c)]


def walk(node: Node) -> list[Node]:
    return [node, *(n for c in children(node) for n in walk(c))]


def children(n: Node) -> tuple[Node, ...]:
    if isinstance(n, (Not, Neg)):
        return (n.operand,)
    if isinstance(n, BoolOp):
        return n.operands
    if isinstance(n, Binary):
        return (n.left, n.right)
    if isinstance(n, ListLit):
        return n.items
    if isinstance(n, Call):
        return (*n.args, n.where) if n.where is not None else n.args
    return ()


_FIELDS: dict[type, tuple[str, ...]] = {}


class _Unshared(Exception):
    """An aggregate: its evaluator keeps a decision's value under its own identity (see ``shape``)."""


def shape(node: Node) -> Hashable | None:
    """What a node computes, without where it stands: equal for two nodes exactly when ``compile_expr`` gives
    them evaluators that behave the same, so one can serve both (a literal's type and, for a float, its
    ``repr`` count: ``1``, ``1.0``, ``True``, ``0.0`` and ``-0.0`` stay apart). None when it holds an
    aggregate, whose evaluator keeps its per-decision value under its own identity."""
    try:
        return _shape(node)
    except _Unshared:
        return None


def _shape(node: Node) -> Hashable:
    if isinstance(node, Lit):
        v = node.value
        return "Lit", type(v), repr(v) if isinstance(v, float) else v
    if isinstance(node, Call) and is_aggregate(node):
        raise _Unshared
    names = _FIELDS.get(type(node))
    if names is None:
        names = _FIELDS[type(node)] = tuple(f.name for f in fields(node) if f.name != "pos")
    out: list[Hashable] = [type(node).__name__]
    for name in names:
        v = getattr(node, name)
        if isinstance(v, Node):
            out.append(_shape(v))
        elif isinstance(v, tuple):
            out.append(tuple(_shape(x) for x in v))
        else:  # str, bool or None
            out.append((type(v), v))
    return tuple(out)
