"""Type-check a parsed condition, split it into engine branches, and compile it into a guard.

A branch is one conjunction of condition parts; an ``or`` whose operands name different facts splits
into one branch per operand (each becomes its own engine rule, as in CLIPS and Drools). Within a
branch, the facts it names become the engine patterns; the whole branch condition is also compiled
into a *guard*: a closure evaluated when the activation fires, against the matched facts and Baton's
working memory. Guards are exact because facts never change within a decision.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from engine.language.expr import (
    ARITHMETIC,
    COMPARISONS,
    Binary,
    Bind,
    BoolOp,
    Exists,
    ExprError,
    ListLit,
    Lit,
    Neg,
    Node,
    Not,
    Ref,
)
from engine.language.types import FactType, FieldSpec
from engine.regex import RegexError, compile_regex

MAX_PATTERNS = 16
MAX_BRANCHES = 64


class _Missing:
    """An absent optional field: every comparison on it is false."""

    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


class _Undefined(Exception):
    """Division by zero: the whole condition is false."""


Facts = Mapping[str, Mapping[str, object]]


class FactIndex:
    """What a guard may ask of working memory beyond the matched facts."""

    def has_type(self, type_name: str) -> bool:
        raise NotImplementedError

    def of_type(self, type_name: str) -> list[int]:
        """Sequence numbers of the facts of this type, oldest first."""
        raise NotImplementedError

    def values(self, seq: int) -> Mapping[str, object]:
        raise NotImplementedError

    def type_of(self, seq: int) -> str:
        raise NotImplementedError


Eval = Callable[[Facts, FactIndex], object]
Guard = Callable[[Facts, FactIndex], bool]


@dataclass(frozen=True, slots=True)
class Ty:
    kind: str  # number | str | bool | list
    item: str = ""  # list item kind; "" for an empty list literal
    enum: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"list of {self.item or 'anything'}" if self.kind == "list" else self.kind


@dataclass(slots=True)
class Branch:
    """One conjunction: the engine patterns (binding -> fact type) and the parts of the condition."""

    bindings: dict[str, str]
    parts: list[Node]
    guard: Guard = field(init=False, repr=False)


@dataclass(slots=True)
class Condition:
    ast: Node
    aliases: dict[str, str]
    branches: list[Branch]
    negated_types: set[str]


def suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean '{close[0]}'?" if close else (f"known: {', '.join(sorted(options))}" if options else "")


class Checker:
    def __init__(self, types: Mapping[str, FactType]) -> None:
        self.types = types
        self.aliases: dict[str, str] = {}
        self.negated: set[str] = set()

    # -- names -------------------------------------------------------------------------------
    def collect_binds(self, node: Node, positive: bool) -> None:
        if isinstance(node, Bind):
            if not positive:
                raise ExprError("syntax_error", f"'{node.type_name} as {node.alias}' cannot stand inside 'or' or 'not'",
                                node.pos, "declare aliases at the start: claim as a, claim as b, ...")
            self.fact_type(node.type_name, node.pos)
            if node.alias in self.types or node.alias in self.aliases:
                raise ExprError("duplicate_alias", f"alias '{node.alias}' is already a fact type or alias", node.pos)
            self.aliases[node.alias] = node.type_name
        elif isinstance(node, BoolOp):
            for op in node.operands:
                self.collect_binds(op, positive and node.op == "and")
        elif isinstance(node, Not):
            self.collect_binds(node.operand, False)
        elif isinstance(node, Binary):
            self.collect_binds(node.left, False)
            self.collect_binds(node.right, False)

    def fact_type(self, name: str, pos: int) -> FactType:
        ft = self.types.get(name)
        if ft is None:
            raise ExprError("unknown_fact_type", f"unknown fact type '{name}'", pos,
                            suggest(name, list(self.types)) or "declare it under facts:")
        return ft

    def binding_type(self, binding: str, pos: int) -> FactType:
        if binding in self.aliases:
            return self.types[self.aliases[binding]]
        if binding in set(self.aliases.values()):
            raise ExprError("ambiguous_fact", f"'{binding}' has aliases in this rule; name the alias", pos,
                            "write a.field or b.field for 'claim as a, claim as b'")
        if binding not in self.types:
            raise ExprError("unknown_fact_type", f"unknown fact type or alias '{binding}'", pos,
                            suggest(binding, [*self.types, *self.aliases]) or "declare it under facts:")
        return self.types[binding]

    # -- types -------------------------------------------------------------------------------
    def type_of(self, node: Node) -> Ty:
        if isinstance(node, Lit):
            v = node.value
            return Ty("bool") if isinstance(v, bool) else Ty("str") if isinstance(v, str) else Ty("number")
        if isinstance(node, ListLit):
            kinds = {self.type_of(i).kind for i in node.items}
            if len(kinds) > 1 or kinds & {"list"}:
                raise ExprError("type_mismatch", "a list must hold values of one kind (all numbers or all strings)",
                                node.pos)
            return Ty("list", kinds.pop() if kinds else "")
        if isinstance(node, Ref):
            spec = self.field_spec(node)
            if spec.kind == "list":
                assert spec.items is not None
                return Ty("list", spec.items.scalar_kind, spec.items.enum)
            return Ty(spec.scalar_kind, "", spec.enum)
        if isinstance(node, (Exists, Bind)):
            if isinstance(node, Bind):
                return Ty("bool")
            self.fact_type(node.type_name, node.pos)
            return Ty("bool")
        if isinstance(node, Not):
            self.expect_bool(node.operand, "not")
            return Ty("bool")
        if isinstance(node, Neg):
            self.expect(node.operand, "number", "-")
            return Ty("number")
        if isinstance(node, BoolOp):
            for op in node.operands:
                self.expect_bool(op, node.op)
            return Ty("bool")
        assert isinstance(node, Binary)
        return self.binary_type(node)

    def field_spec(self, node: Ref) -> FieldSpec:
        ft = self.binding_type(node.binding, node.pos)
        spec = ft.fields.get(node.field)
        if spec is None:
            raise ExprError("unknown_field", f"{ft.name} has no field '{node.field}'",
                            node.pos + len(node.binding) + 1, suggest(node.field, list(ft.fields)))
        return spec

    def expect(self, node: Node, kind: str, op: str) -> Ty:
        ty = self.type_of(node)
        if ty.kind != kind:
            raise ExprError("type_mismatch", f"'{op}' needs a {kind}, but this is a {ty}", node.pos)
        return ty

    def expect_bool(self, node: Node, op: str) -> None:
        self.expect(node, "bool", op)

    def check_enum(self, ty: Ty, other: Node) -> None:
        values = [other.value] if isinstance(other, Lit) else (
            [i.value for i in other.items if isinstance(i, Lit)] if isinstance(other, ListLit) else [])
        for v in values:
            if ty.enum and isinstance(v, str) and v not in ty.enum:
                raise ExprError("unknown_value", f"{v!r} is not one of {list(ty.enum)}", other.pos,
                                suggest(v, list(ty.enum)))

    def binary_type(self, node: Binary) -> Ty:
        op = node.op
        left, right = self.type_of(node.left), self.type_of(node.right)
        if op in ARITHMETIC:
            for side, ty in ((node.left, left), (node.right, right)):
                if ty.kind != "number":
                    raise ExprError("type_mismatch", f"'{op}' needs numbers, but this is a {ty}", side.pos)
            return Ty("number")
        if op in COMPARISONS:
            if left.kind != right.kind or (op not in ("==", "!=") and left.kind not in ("number", "str")):
                raise ExprError("type_mismatch", f"cannot compare a {left} with a {right} using '{op}'", node.pos,
                                "numbers compare with numbers, strings with strings; quotes make a string")
            if left.kind == "list" and left.item and right.item and left.item != right.item:
                raise ExprError("type_mismatch", f"cannot compare a {left} with a {right}", node.pos)
            self.check_enum(left, node.right)
            self.check_enum(right, node.left)
            return Ty("bool")
        if op in ("in", "not in"):
            if right.kind != "list" or left.kind == "list" or (right.item and right.item != left.kind):
                raise ExprError("type_mismatch", f"'{op}' tests a single value against a list, not a {left} "
                                f"against a {right}", node.pos, 'write: claim.tier in ["gold", "silver"]')
            self.check_enum(left, node.right)
            return Ty("bool")
        if op == "contains":
            if left.kind == "list":
                if right.kind == "list" or (left.item and right.kind != left.item):
                    raise ExprError("type_mismatch", f"a {left} cannot contain a {right}", node.right.pos)
                self.check_enum(Ty("str", "", left.enum), node.right)
            elif left.kind == "str":
                if right.kind != "str":
                    raise ExprError("type_mismatch", f"a string can only contain a string, not a {right}",
                                    node.right.pos)
            else:
                raise ExprError("type_mismatch", f"'contains' needs a list or a string, but this is a {left}",
                                node.left.pos)
            return Ty("bool")
        assert op == "matches"
        if left.kind != "str":
            raise ExprError("type_mismatch", f"'matches' needs a string, but this is a {left}", node.left.pos)
        if not isinstance(node.right, Lit) or not isinstance(node.right.value, str):
            raise ExprError("type_mismatch", "'matches' needs a quoted regular expression", node.right.pos)
        try:
            compile_regex(node.right.value)
        except RegexError as e:
            raise ExprError("bad_regex", f"bad regular expression: {e}", node.right.pos + 1,
                            "RE2 syntax (Python's re without backreferences or lookaround, so a match always "
                            "takes time linear in the input); (?i) at the start ignores case") from None
        return Ty("bool")


# -- branches --------------------------------------------------------------------------------------

def bindings_of(node: Node, aliases: Mapping[str, str]) -> dict[str, str]:
    """The patterns a node needs: binding name -> fact type (negated 'exists' needs none)."""
    out: dict[str, str] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Ref):
            out[n.binding] = aliases.get(n.binding, n.binding)
        elif isinstance(n, Exists):
            if not n.negated:
                out[n.type_name] = n.type_name
        elif isinstance(n, Bind):
            out[n.alias] = n.type_name
        elif isinstance(n, (Not, Neg)):
            walk(n.operand)
        elif isinstance(n, BoolOp):
            for o in n.operands:
                walk(o)
        elif isinstance(n, Binary):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, ListLit):
            for i in n.items:
                walk(i)

    walk(node)
    return out


def split(node: Node, aliases: Mapping[str, str]) -> list[list[Node]]:
    if isinstance(node, BoolOp) and node.op == "and":
        combos = product(*(split(o, aliases) for o in node.operands))
        out = [[part for parts in combo for part in parts] for combo in combos]
    elif isinstance(node, BoolOp) and node.op == "or" and len(
            {frozenset(bindings_of(o, aliases)) for o in node.operands}) > 1:
        out = [b for o in node.operands for b in split(o, aliases)]
    else:
        out = [[node]]
    if len(out) > MAX_BRANCHES:
        raise ExprError("too_many_branches", f"this condition expands to more than {MAX_BRANCHES} rule branches",
                        node.pos, "split the rule into several rules")
    return out


def normalise(node: Node) -> Node:
    """``not exists T`` written as ``not (exists T)`` becomes one negated-exists node."""
    if isinstance(node, Not):
        inner = normalise(node.operand)
        if isinstance(inner, Exists):
            return Exists(node.pos, inner.type_name, not inner.negated)
        return Not(node.pos, inner)
    if isinstance(node, BoolOp):
        return BoolOp(node.pos, node.op, tuple(normalise(o) for o in node.operands))
    if isinstance(node, Binary):
        return Binary(node.pos, node.op, normalise(node.left), normalise(node.right))
    return node


def check_no_positive_exists_under_not(node: Node, under_not: bool = False) -> None:
    if isinstance(node, Exists) and not node.negated and under_not:
        raise ExprError("syntax_error", "'exists' inside 'not (...)' is ambiguous", node.pos,
                        f"write 'not exists {node.type_name}' on its own")
    if isinstance(node, Not):
        check_no_positive_exists_under_not(node.operand, True)
    elif isinstance(node, BoolOp):
        for o in node.operands:
            check_no_positive_exists_under_not(o, under_not)


def analyse(ast: Node, types: Mapping[str, FactType]) -> Condition:
    checker = Checker(types)
    ast = normalise(ast)
    checker.collect_binds(ast, True)
    check_no_positive_exists_under_not(ast)
    checker.expect_bool(ast, "when")
    branches: list[Branch] = []
    for parts in split(ast, checker.aliases):
        bindings: dict[str, str] = {}
        for p in parts:
            bindings.update(bindings_of(p, checker.aliases))
        if not bindings:
            raise ExprError("negation_only", "this condition (or one 'or' branch of it) names no fact that must "
                            "exist", parts[0].pos, "join it with a positive condition, e.g. exists claim and not "
                            "exists policy")
        if len(bindings) > MAX_PATTERNS:
            raise ExprError("too_many_patterns", f"{len(bindings)} fact patterns in one rule; the engine runs at "
                            f"most {MAX_PATTERNS}", parts[0].pos, "split the rule, deriving an intermediate fact")
        branch = Branch(bindings, parts)
        branch.guard = compile_guard(parts, checker.aliases)
        branches.append(branch)
    negated: set[str] = set()

    def find_neg(n: Node) -> None:
        if isinstance(n, Exists) and n.negated:
            negated.add(n.type_name)
        for child in children(n):
            find_neg(child)

    find_neg(ast)
    return Condition(ast, checker.aliases, branches, negated)


def children(n: Node) -> tuple[Node, ...]:
    if isinstance(n, (Not, Neg)):
        return (n.operand,)
    if isinstance(n, BoolOp):
        return n.operands
    if isinstance(n, Binary):
        return (n.left, n.right)
    if isinstance(n, ListLit):
        return n.items
    return ()


# -- evaluation --------------------------------------------------------------------------------------

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def compile_expr(node: Node, aliases: Mapping[str, str]) -> Eval:
    if isinstance(node, Lit):
        value: object = node.value
        return lambda env, wm: value
    if isinstance(node, ListLit):
        items = [compile_expr(i, aliases) for i in node.items]
        if all(isinstance(i, Lit) for i in node.items):
            const = [i.value for i in node.items if isinstance(i, Lit)]
            return lambda env, wm: const
        return lambda env, wm: [i(env, wm) for i in items]
    if isinstance(node, Ref):
        binding, fname = node.binding, node.field
        return lambda env, wm: env[binding].get(fname, MISSING)
    if isinstance(node, Exists):
        tname = node.type_name
        if node.negated:
            return lambda env, wm: not wm.has_type(tname)
        return lambda env, wm: True
    if isinstance(node, Bind):
        return lambda env, wm: True
    if isinstance(node, Not):
        inner = compile_expr(node.operand, aliases)
        return lambda env, wm: not _truth(inner(env, wm))
    if isinstance(node, Neg):
        inner = compile_expr(node.operand, aliases)
        return lambda env, wm: _neg(inner(env, wm))
    if isinstance(node, BoolOp):
        ops = [compile_expr(o, aliases) for o in node.operands]
        if node.op == "and":
            return lambda env, wm: all(_truth(o(env, wm)) for o in ops)
        return lambda env, wm: any(_truth(o(env, wm)) for o in ops)
    assert isinstance(node, Binary)
    left, right = compile_expr(node.left, aliases), compile_expr(node.right, aliases)
    op = node.op
    if op in _CMP:
        cmp = _CMP[op]

        def compare(env: Facts, wm: FactIndex) -> object:
            a, b = left(env, wm), right(env, wm)
            if a is MISSING or b is MISSING:
                return False
            return cmp(a, b)

        return compare
    if op in ARITHMETIC:
        return _arith(op, left, right)
    if op == "matches":
        assert isinstance(node.right, Lit) and isinstance(node.right.value, str)
        search = compile_regex(node.right.value).search
        return lambda env, wm: isinstance(v := left(env, wm), str) and search(v) is not None
    if op in ("in", "not in"):
        negate = op == "not in"

        def member(env: Facts, wm: FactIndex) -> object:
            a, b = left(env, wm), right(env, wm)
            if a is MISSING or b is MISSING:
                return False
            return (a in b) != negate  # type: ignore[operator]

        return member
    assert op == "contains"

    def contains(env: Facts, wm: FactIndex) -> object:
        a, b = left(env, wm), right(env, wm)
        if a is MISSING or b is MISSING:
            return False
        return b in a  # type: ignore[operator]

    return contains


def _truth(v: object) -> bool:
    return v is True


def _neg(v: object) -> object:
    return v if v is MISSING else -v  # type: ignore[operator]


def _arith(op: str, left: Eval, right: Eval) -> Eval:
    def run(env: Facts, wm: FactIndex) -> object:
        a, b = left(env, wm), right(env, wm)
        if a is MISSING or b is MISSING:
            return MISSING
        assert isinstance(a, (int, float)) and isinstance(b, (int, float))
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise _Undefined
        return a / b

    return run


def compile_guard(parts: list[Node], aliases: Mapping[str, str]) -> Guard:
    evals = [compile_expr(p, aliases) for p in parts if not isinstance(p, (Bind,))
             and not (isinstance(p, Exists) and not p.negated)]

    def guard(env: Facts, wm: FactIndex) -> bool:
        try:
            for e in evals:
                if e(env, wm) is not True:
                    return False
        except (_Undefined, OverflowError):
            return False
        return True

    return guard
