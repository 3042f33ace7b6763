"""Type-check a parsed condition, split it into engine branches, and compile it into a guard.

A branch is one conjunction of condition parts; an ``or`` whose operands name different facts splits
into one branch per operand (each becomes its own engine rule, as in CLIPS and Drools). Within a
branch, the facts it names become the engine patterns; the whole branch condition is also compiled
into a *guard*: a closure evaluated when the activation fires, against the matched facts and Baton's
working memory. Guards are exact because facts never change within a decision.

This module analyses conditions; the parts it uses live beside it, lower down, and their names are
importable from here as before: runtime.py (what an evaluator sees: facts, working memory, MISSING),
trees.py (reading an expression tree), typecheck.py (the type checker and the built-in functions'
signatures), evaluate.py (expressions and guards compiled to closures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from types import MappingProxyType
from typing import Any

from engine.language.evaluate import always, compile_expr, compile_guard, orjson_key, power, round_half_even, text_of
from engine.language.expr import Binary, Bind, BoolOp, Exists, ExprError, Node, Not, render
from engine.language.runtime import (
    DECISION,
    EPOCH,
    MAX_MAGNITUDE,
    MISSING,
    Eval,
    FactIndex,
    Facts,
    Guard,
    TooLarge,
    Undefined,
)
from engine.language.trees import AGGREGATES, aggregated_type, aggregates_in, bindings_of, children, is_aggregate, walk
from engine.language.typecheck import FUNCTIONS, ORDERED, Checker, Ty, suggest
from engine.language.types import FactType

MAX_PATTERNS = 16
MAX_BRANCHES = 64


# A version keeps a Branch and a Condition per rule: what most leave empty is this one read-only mapping or
# the empty tuple, not an empty dict or list each (bench/rules_scale.py --memory)
EMPTY: Mapping[str, Any] = MappingProxyType({})


def empty_mapping() -> Mapping[str, Any]:
    return EMPTY


@dataclass(slots=True)
class Branch:
    """One conjunction: the engine patterns (binding -> fact type) and the parts of the condition."""

    bindings: Mapping[str, str]
    parts: tuple[Node, ...]
    # aggregates: a marker pattern per aggregated type (binding -> engine type), so the rule is considered
    # again whenever facts of that type are added; and the aggregates' text and evaluators, for the trace
    epochs: Mapping[str, str] = field(default_factory=empty_mapping)
    aggregates: tuple[tuple[str, Eval], ...] = ()


@dataclass(slots=True)
class Condition:
    ast: Node
    aliases: Mapping[str, str]
    branches: list[Branch]
    negated_types: frozenset[str]  # the types ``not exists`` names (most conditions: the one shared empty set)
    # the definitions the condition names (define:), evaluated when it fires for the trace and `log why`
    definitions: tuple[tuple[str, Eval], ...] = ()
    written: Mapping[str, str] = field(default_factory=empty_mapping)  # definition name -> its expression as rendered
    # per branch: the definitions whose value a firing implies (a conjunct of the branch: true; `not D`: false),
    # so the trace shows them without evaluating them again
    implied: tuple[Mapping[str, bool], ...] = ()


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
    lowered = checker.lower(ast)
    branches: list[Branch] = []
    for parts in split(lowered, checker.aliases):
        bindings: dict[str, str] = {}
        outside: dict[str, str] = {}
        for p in parts:
            bindings.update(bindings_of(p, checker.aliases))
            outside.update(bindings_of(p, checker.aliases, filters=False))
        aggregates = [a for p in parts for a in aggregates_in(p)]
        if not outside and aggregates:
            raise ExprError("aggregate_only", "this condition (or one 'or' branch of it) has only aggregates and "
                            "negations: it names no fact that must exist", min(n.pos for p in parts for n in walk(p)),
                            "join it with a positive condition, e.g. exists applicant and count(loan) >= 2")
        if not bindings:
            raise ExprError("negation_only", "this condition (or one 'or' branch of it) names no fact that must "
                            "exist", parts[0].pos, "join it with a positive condition, e.g. exists claim and not "
                            "exists policy")
        if len(bindings) > MAX_PATTERNS:
            raise ExprError("too_many_patterns", f"{len(bindings)} fact patterns in one rule; the engine runs at "
                            f"most {MAX_PATTERNS}", parts[0].pos, "split the rule, deriving an intermediate fact")
        epochs: dict[str, str] = {}
        evaluated: list[tuple[str, Eval]] = []
        for agg in aggregates:
            marker = EPOCH + aggregated_type(agg)
            epochs.setdefault(marker, marker)
            text = render(agg)
            if all(text != t for t, _ in evaluated):
                evaluated.append((text, compile_expr(agg, checker.aliases)))
        # its guard is compile.py's: what the engine's patterns leave to test
        branches.append(Branch(bindings, tuple(parts), epochs or EMPTY, tuple(evaluated)))
    negated: set[str] = set()
    _negated_types(ast, negated)
    return Condition(ast, checker.aliases or EMPTY, branches, frozenset(negated) if negated else _NONE)


_NONE: frozenset[str] = frozenset()


def _negated_types(n: Node, out: set[str]) -> None:
    """The fact types ``not exists`` names anywhere in ``n``. Not a closure over ``out``: one that calls
    itself is a reference cycle, kept to the end of a ruleset's load (the collector is paused there)."""
    if isinstance(n, Exists) and n.negated:
        out.add(n.type_name)
    for child in children(n):
        _negated_types(child, out)


def every_error(ast: Node, types: Mapping[str, FactType]) -> list[ExprError]:
    """All the type errors of a condition that failed to check, not only the first: each part of its
    and/or/not structure is checked on its own (aliases declared anywhere in it still count), so an analyst
    who mistyped two names hears about both. Errors come in the order they stand in the text."""
    checker = Checker(types)
    ast = normalise(ast)
    try:
        checker.collect_binds(ast, True)
    except ExprError as e:
        return [e]
    found: dict[int, ExprError] = {}

    def visit(node: Node) -> None:
        if isinstance(node, BoolOp):
            for o in node.operands:
                visit(o)
            return
        if isinstance(node, Not) and isinstance(node.operand, BoolOp):
            visit(node.operand)
            return
        try:
            checker.expect_bool(node, "when")
        except ExprError as e:
            found.setdefault(e.offset, e)

    visit(ast)
    return [found[k] for k in sorted(found)]


def check_value(ast: Node, types: Mapping[str, FactType], aliases: Mapping[str, str],
                visible: set[str] | None) -> tuple[Ty, Eval]:
    """Type-check a computed value (``=expr``) over the bindings a rule matched (``visible``; None: the
    latest fact of any type, as tool params see them) and compile it."""
    checker = Checker(types, visible)
    checker.aliases = dict(aliases)
    ast = normalise(ast)
    ty = checker.type_of(ast)
    if isinstance(ast, (Exists, Bind)) or any(isinstance(n, Exists) and not n.negated for n in walk(ast)):
        raise ExprError("syntax_error", "a computed value cannot test 'exists'", ast.pos,
                        "count(T) > 0 says whether a T fact exists")
    return ty, compile_expr(checker.lower(ast), aliases)


__all__ = ["AGGREGATES", "DECISION", "EPOCH", "FUNCTIONS", "MAX_BRANCHES", "MAX_MAGNITUDE", "MAX_PATTERNS", "MISSING",
           "ORDERED", "Branch", "Checker", "Condition", "Eval", "FactIndex", "Facts", "Guard", "TooLarge", "Ty",
           "Undefined", "aggregated_type", "aggregates_in", "always", "analyse", "bindings_of",
           "check_no_positive_exists_under_not", "check_value", "children", "compile_expr", "compile_guard",
           "every_error", "is_aggregate", "normalise", "orjson_key", "power", "round_half_even", "split", "suggest",
           "text_of"]
