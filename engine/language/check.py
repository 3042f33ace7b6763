"""Type-check a parsed condition, split it into engine branches, and compile it into a guard.

A branch is one conjunction of condition parts; an ``or`` whose operands name different facts splits
into one branch per operand (each becomes its own engine rule, as in CLIPS and Drools). Within a
branch, the facts it names become the engine patterns; the whole branch condition is also compiled
into a *guard*: a closure evaluated when the activation fires, against the matched facts and Baton's
working memory. Guards are exact because facts never change within a decision.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from itertools import product
from typing import Any

from engine.errors import Where
from engine.language import dates
from engine.language.expr import (
    ARITHMETIC,
    COMPARISONS,
    Binary,
    Bind,
    BoolOp,
    Call,
    Exists,
    ExprError,
    ListLit,
    Lit,
    Name,
    Neg,
    Node,
    Not,
    Ref,
    TypeName,
    known_names,
    render,
)
from engine.language.types import FactType, FieldSpec
from engine.regex import RegexError, compile_regex

MAX_PATTERNS = 16
MAX_BRANCHES = 64
DECISION = "decision"  # decision.date / decision.time: the decision's own, recorded date and time
AGGREGATES = ("count", "sum", "min", "max", "list")
FUNCTIONS = ("len", "lower", "upper", "abs", "min", "max", "round", "coalesce", "date", "datetime", "days",
             "years", "add_days", "add_months", "add_years", "text", "distinct", "sort", "join")
MAX_MAGNITUDE = 1e300  # a computed number beyond this fails the decision, naming the rule (input beyond it is refused)
ORDERED = ("number", "str", "date", "datetime")
EPOCH = "$agg:"  # engine/loop.py: the marker fact re-asserted when facts of an aggregated type are added


class _Missing:
    """An absent optional field: every comparison on it is false."""

    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


class Undefined(Exception):
    """Division by zero: the whole condition is false."""


class TooLarge(Exception):
    """A computed number whose magnitude exceeds 1e300: the decision fails, naming the rule (never a
    condition quietly false, nor an infinity reaching a decision)."""


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

    def memo(self) -> dict[object, object]:
        """Where aggregates keep values computed in this decision (keyed by what they depend on)."""
        return {}

    def moment(self) -> tuple[str, str]:
        """decision.date and decision.time: the decision's own, from its record."""
        return "1970-01-01", "1970-01-01T00:00:00Z"


Eval = Callable[[Facts, FactIndex], object]
Guard = Callable[[Facts, FactIndex], bool]


@dataclass(frozen=True, slots=True)
class Ty:
    kind: str  # number | str | bool | list | date | datetime
    item: str = ""  # list item kind; "" for an empty list literal
    enum: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"list of {self.item or 'anything'}" if self.kind == "list" else self.kind


@dataclass(slots=True)
class Branch:
    """One conjunction: the engine patterns (binding -> fact type) and the parts of the condition."""

    bindings: dict[str, str]
    parts: list[Node]
    # aggregates: a marker pattern per aggregated type (binding -> engine type), so the rule is considered
    # again whenever facts of that type are added; and the aggregates' text and evaluators, for the trace
    epochs: dict[str, str] = field(default_factory=dict)
    aggregates: list[tuple[str, Eval]] = field(default_factory=list)


@dataclass(slots=True)
class Condition:
    ast: Node
    aliases: dict[str, str]
    branches: list[Branch]
    negated_types: set[str]
    # the definitions the condition names (define:), evaluated when it fires for the trace and `log why`
    definitions: list[tuple[str, Eval]] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)  # definition name -> its expression as rendered
    # per branch: the definitions whose value a firing implies (a conjunct of the branch: true; `not D`: false),
    # so the trace shows them without evaluating them again
    implied: list[dict[str, bool]] = field(default_factory=list)


def suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean '{close[0]}'?" if close else (f"known: {', '.join(sorted(options))}" if options else "")


class Checker:
    def __init__(self, types: Mapping[str, FactType], visible: set[str] | None = None) -> None:
        self.types = types
        self.aliases: dict[str, str] = {}
        self.negated: set[str] = set()
        self.local: list[str] = []  # the fact types aggregates iterate over, innermost last
        self.seen: dict[int, Ty] = {}  # id(node) -> its type, read when lowering (datetimes, kinds)
        self.visible = visible  # computed values: the bindings the rule matched (None: any)

    # -- names -------------------------------------------------------------------------------
    def collect_binds(self, node: Node, positive: bool) -> None:
        if isinstance(node, Bind):
            if not positive:
                raise ExprError("syntax_error", f"'{node.type_name} as {node.alias}' cannot stand inside 'or' or 'not'",
                                node.pos, "declare aliases at the start: claim as a, claim as b, ...")
            self.fact_type(node.type_name, node.pos)
            if node.alias in self.types or node.alias in self.aliases or node.alias == DECISION:
                raise ExprError("duplicate_alias", f"alias '{node.alias}' is already a fact type or alias", node.pos)
            if node.alias in known_names():
                raise ExprError("name_clash", f"alias '{node.alias}' is already a named value or definition",
                                node.pos, "choose another alias")
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
        if binding in self.local:
            return self.types[binding]
        if self.visible is not None and binding not in self.visible:
            known = binding in self.types or binding in self.aliases
            raise ExprError("unbound_fact" if known else "unknown_fact_type",
                            f"'{binding}' is not a fact this rule matched" if known else
                            f"unknown fact type or alias '{binding}'", pos,
                            f"add it to the rule's when (e.g. exists {binding}), or aggregate over it: "
                            f"count({binding})" if known else suggest(binding, sorted(self.visible)))
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
        ty = self._type_of(node)
        self.seen[id(node)] = ty
        return ty

    def _type_of(self, node: Node) -> Ty:
        if isinstance(node, Call):
            return self.call_type(node)
        if isinstance(node, TypeName):
            if node.name not in self.types and node.name not in self.aliases:
                return self._type_of(Name(node.pos, node.name))
            raise ExprError("syntax_error", f"'{node.name}' needs a field, as in {node.name}.field", node.pos,
                            f"count({node.name}) counts {node.name} facts")
        if isinstance(node, Name):
            if node.name in self.types or node.name in self.aliases:
                raise ExprError("syntax_error", f"'{node.name}' needs a field, as in {node.name}.field", node.pos,
                                f"write 'exists {node.name}' to test that a {node.name} fact exists")
            raise ExprError("unknown_name", f"unknown name '{node.name}'", node.pos,
                            suggest(node.name, list(known_names())) if known_names() else
                            "a bare name is a named value (values:) or a definition (define:)")
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
        if node.binding == DECISION and DECISION not in self.types and DECISION not in self.aliases:
            if node.field not in ("date", "time"):
                raise ExprError("unknown_field", f"decision has no field '{node.field}'",
                                node.pos + len(DECISION) + 1, "decision.date (a date) or decision.time (a datetime)")
            return FieldSpec(node.field, "date" if node.field == "date" else "datetime")
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
        if op == "+" and left.kind == "str" and right.kind == "str":
            return Ty("str")  # '+' joins two strings
        if op in ARITHMETIC:
            for side, ty in ((node.left, left), (node.right, right)):
                if ty.kind != "number":
                    hint = "days(a, b) counts the days between two dates; add_days(d, n) moves one" if ty.kind in (
                        "date", "datetime") else "'+' joins two strings; text(n) writes a number as text: " \
                        "claim.ref + \"-\" + text(claim.year)" if op == "+" and "str" in (left.kind, right.kind) \
                        else ""
                    raise ExprError("type_mismatch", f"'{op}' needs numbers, but this is a {ty}", side.pos, hint)
            return Ty("number")
        if op in COMPARISONS:
            if left.kind != right.kind or (op not in ("==", "!=") and left.kind not in ORDERED):
                dated = {left.kind, right.kind} & {"date", "datetime"}
                raise ExprError("type_mismatch", f"cannot compare a {left} with a {right} using '{op}'", node.pos,
                                'a date compares with a date: date("2026-01-31"), datetime("2026-01-31T09:00:00Z")'
                                if dated else "numbers compare with numbers, strings with strings; quotes make a "
                                "string")
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


    # -- functions and aggregates ---------------------------------------------------------------------
    def call_type(self, node: Call) -> Ty:
        name, args = node.name, node.args
        if is_aggregate(node):
            return self.aggregate_type(node)
        if node.where is not None:
            raise ExprError("syntax_error", f"'where' filters an aggregate (count, sum, min, max, list), not {name}()",
                            node.pos, "sum(loan.amount where loan.status == \"open\")")
        if name in ("count", "sum") or (name in ("min", "max") and len(args) == 1):
            return self.list_function(node)
        if name not in FUNCTIONS:
            raise ExprError("unknown_function", f"unknown function '{name}'", node.pos,
                            suggest(name, list(FUNCTIONS)) or f"functions: {', '.join(FUNCTIONS)}")
        _check_arity(node)
        args_of = _Args(name, args, [self.type_of(a) for a in args])
        if name in ("min", "max", "coalesce"):
            return args_of.one_kind()
        if name in ("date", "datetime", "days", "years", "add_days", "add_months", "add_years"):
            return args_of.date_function()
        if name in ("distinct", "sort", "join"):
            return args_of.list_function()
        return args_of.scalar_function()

    def list_function(self, node: Call) -> Ty:
        """count, sum, min or max of a list value (count(high_risk_countries), max(list(loan.amount)))."""
        name, arg = node.name, node.args[0]
        ty = self.type_of(arg)
        if ty.kind != "list":
            raise ExprError("type_mismatch", f"{name}() of one value needs a list (or a fact field: "
                            f"{name}(loan.amount)), but this is a {ty}", arg.pos, _SIGNATURES.get(name, ""))
        if name == "count":
            return Ty("number")
        if name == "sum" and ty.item not in ("", "number"):
            raise ExprError("type_mismatch", f"sum() adds numbers, but this is a {ty}", arg.pos)
        if name in ("min", "max") and ty.item not in ("", *ORDERED):
            raise ExprError("type_mismatch", f"{name}() needs numbers, strings or dates, but this is a {ty}",
                            arg.pos)
        return Ty("number" if name == "sum" else ty.item or "number", "", ty.enum)

    def aggregate_type(self, node: Call) -> Ty:
        name, arg = node.name, node.args[0]
        if self.local:
            raise ExprError("syntax_error", "an aggregate cannot stand inside another aggregate", node.pos)
        if name == "list" and isinstance(arg, TypeName):
            tname = arg.name
        elif name == "count":
            if not isinstance(arg, TypeName):
                raise ExprError("type_mismatch", "count() counts the facts of one type: count(loan), or "
                                "count(loan where loan.status == \"open\")", arg.pos)
            tname = arg.name
        else:
            if not isinstance(arg, Ref):
                raise ExprError("type_mismatch", f"{name}() over facts names one field: {name}(loan.amount); with "
                                f"two or more values it is the function {name}(a, b)", arg.pos)
            tname = arg.binding
        if tname not in self.types or tname == DECISION:
            hint = "an aggregate runs over a fact type, not an alias" if tname in self.aliases else \
                suggest(tname, list(self.types)) or "declare it under facts:"
            raise ExprError("unknown_fact_type", f"unknown fact type '{tname}'", arg.pos, hint)
        self.local.append(tname)
        try:
            kind = self.type_of(arg).kind if isinstance(arg, Ref) else "number"
            if node.where is not None:
                self.expect_bool(node.where, "where")
        finally:
            self.local.pop()
        if name == "sum" and kind != "number":
            raise ExprError("type_mismatch", f"sum() adds numbers, but {render(arg)} is a {kind}", arg.pos)
        if name in ("min", "max") and kind not in ORDERED:
            raise ExprError("type_mismatch", f"{name}() needs numbers, strings or dates, but {render(arg)} is a {kind}",
                            arg.pos)
        if name == "list":
            if isinstance(arg, TypeName):
                return Ty("list", "object")
            ty = self.seen[id(arg)]
            if ty.kind == "list":
                raise ExprError("type_mismatch", f"list() collects single values, but {render(arg)} is a {ty}",
                                arg.pos)
            return Ty("list", ty.kind, ty.enum)
        return Ty("number" if name in ("count", "sum") else kind)

    def lower(self, node: Node) -> Node:
        """The checked tree, made ready to evaluate: datetimes compare by instant (``$key``), and functions whose
        meaning depends on their argument's kind carry it (``days:date``)."""
        if isinstance(node, Binary):
            left, right = self.lower(node.left), self.lower(node.right)
            seen = self.seen.get(id(node.left))
            if node.op in COMPARISONS and seen is not None and seen.kind == "datetime":
                left, right = Call(left.pos, "$key", (left,)), Call(right.pos, "$key", (right,))
            return Binary(node.pos, node.op, left, right)
        if isinstance(node, Call):
            args = tuple(self.lower(a) for a in node.args)
            where = self.lower(node.where) if node.where is not None else None
            name = node.name
            if name in ("min", "max", "days", "years", "add_days", "add_months", "add_years", "date", "datetime",
                        "sort", "text") and node.args:
                kind = self.seen.get(id(node.args[0]))
                name = f"{name}:{kind.kind if kind is not None else ''}"
            if name.startswith(("sort:", "min:list", "max:list")):  # of a list: its items' kind
                seen = self.seen.get(id(node.args[0]))
                name = f"{name.split(':')[0]}:{'list-' if name[:3] in ('min', 'max') else ''}" \
                    f"{seen.item if seen is not None else ''}"
            if name == "list" and isinstance(node.args[0], TypeName):  # whole facts: their declared fields
                ft = self.types[node.args[0].name]
                declared = [n for n, spec in ft.fields.items() if not (n == "row" and spec.where == Where())]
                args = (*args, ListLit(node.pos, tuple(Lit(node.pos, n) for n in declared)))
            return Call(node.pos, name, args, where)
        if isinstance(node, BoolOp):
            return BoolOp(node.pos, node.op, tuple(self.lower(o) for o in node.operands))
        if isinstance(node, Not):
            return Not(node.pos, self.lower(node.operand))
        if isinstance(node, Neg):
            return Neg(node.pos, self.lower(node.operand))
        if isinstance(node, ListLit):
            return ListLit(node.pos, tuple(self.lower(i) for i in node.items))
        return node


_A = {"str": "a string", "list": "a list", "number": "a number", "date": "a date", "datetime": "a datetime",
      "bool": "true or false"}
_SIGNATURES = {
    "len": "len(s) counts the characters of a string or the items of a list",
    "lower": "lower(s) is the string in lower case", "upper": "upper(s) is the string in upper case",
    "abs": "abs(n) is the number without its sign",
    "min": "min(a, b, ...) of numbers, strings or dates; min(loan.amount) is the smallest over loan facts",
    "max": "max(a, b, ...) of numbers, strings or dates; max(loan.amount) is the largest over loan facts",
    "round": "round(n, k) rounds to k decimal places, half to even (k defaults to 0)",
    "coalesce": "coalesce(a, b, ...) is the first value that is present",
    "date": 'date("2026-01-31"); date(x) of a datetime is its UTC date',
    "datetime": 'datetime("2026-01-31T09:00:00Z") (ISO 8601 with an offset)',
    "days": "days(a, b): whole days from a to b, two dates or two datetimes",
    "years": "years(a, b): whole years from a to b, as an age is counted",
    "add_days": "add_days(d, n): the date (or datetime) n days after d",
    "add_months": "add_months(d, n): n calendar months after d (the month's last day if d's day is missing)",
    "add_years": "add_years(d, n): n years after d (28 February for 29 February in a common year)",
    "text": "text(x) writes a number (as JSON does: 2700, not 2700.0), a date or a boolean as text",
    "distinct": "distinct(xs): the list without repeats, the first of each kept",
    "sort": "sort(xs): numbers, dates or strings (by code point), ascending",
    "join": 'join(xs, ", "): a list of strings joined with the separator',
}


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


# -- branches --------------------------------------------------------------------------------------

_ARITY = {"len": (1, 1), "lower": (1, 1), "upper": (1, 1), "abs": (1, 1), "min": (2, 99), "max": (2, 99),
          "round": (1, 2), "coalesce": (1, 99), "date": (1, 1), "datetime": (1, 1), "days": (2, 2),
          "years": (2, 2), "add_days": (2, 2), "add_months": (2, 2), "add_years": (2, 2), "text": (1, 1),
          "distinct": (1, 1), "sort": (1, 1), "join": (1, 2)}


def _check_arity(node: Call) -> None:
    name, args = node.name, node.args
    arity = _ARITY[name]
    if not arity[0] <= len(args) <= arity[1]:
        want = str(arity[0]) if arity[0] == arity[1] else f"{arity[0]} or more" if arity[1] == 99 else \
            f"{arity[0]} or {arity[1]}"
        raise ExprError("type_mismatch", f"{name}() takes {want} argument{'s' if want != '1' else ''}, "
                        f"not {len(args)}", node.pos, _SIGNATURES[name])


@dataclass
class _Args:
    """A function call's arguments and their types, checked against the function's signature by kind."""

    name: str
    args: tuple[Node, ...]
    tys: list[Ty]

    def need(self, i: int, *kinds: str) -> Ty:
        if self.tys[i].kind not in kinds:
            raise ExprError("type_mismatch", f"{self.name}() needs {' or '.join(_A[k] for k in kinds)} here, but "
                            f"this is a {self.tys[i]}", self.args[i].pos, _SIGNATURES[self.name])
        return self.tys[i]

    def scalar_function(self) -> Ty:
        """len, lower, upper, abs, round, text."""
        name = self.name
        if name == "len":
            self.need(0, "str", "list")
            return Ty("number")
        if name in ("lower", "upper"):
            self.need(0, "str")
            return Ty("str")
        if name in ("abs", "round"):
            for i in range(len(self.args)):
                self.need(i, "number")
            return Ty("number")
        assert name == "text"
        self.need(0, "number", "str", "bool", "date", "datetime")
        return Ty("str")

    def one_kind(self) -> Ty:
        """min, max, coalesce: values of one kind (min and max: an ordered one)."""
        first = self.need(0, *ORDERED) if self.name != "coalesce" else self.tys[0]
        for i in range(1, len(self.args)):
            if self.tys[i].kind != first.kind or (first.kind == "list" and self.tys[i].item != first.item):
                raise ExprError("type_mismatch", f"{self.name}() needs values of one kind: a {first} and a "
                                f"{self.tys[i]}", self.args[i].pos, _SIGNATURES[self.name])
        return Ty(first.kind, first.item)

    def date_function(self) -> Ty:
        """date, datetime, days, years, add_days, add_months, add_years."""
        name, args, tys = self.name, self.args, self.tys
        if name in ("date", "datetime"):
            arg = self.need(0, "str", "date", "datetime")
            literal = args[0]
            if arg.kind == "str" and isinstance(literal, Lit) and isinstance(literal.value, str):
                try:
                    (dates.parse_date if name == "date" else dates.parse_datetime)(literal.value)
                except dates.DateError as e:
                    raise ExprError("bad_date", str(e), literal.pos + 1, _SIGNATURES[name]) from None
            return Ty(name)
        if name in ("days", "years"):
            first = self.need(0, "date", "datetime")
            if tys[1].kind != first.kind:
                raise ExprError("type_mismatch", f"{name}() needs two dates or two datetimes, not a {first} and a "
                                f"{tys[1]}", args[1].pos, "date(x) turns a datetime into its (UTC) date")
            return Ty("number")
        assert name in ("add_days", "add_months", "add_years")
        first = self.need(0, "date", "datetime")
        self.need(1, "number")
        return Ty(first.kind)

    def list_function(self) -> Ty:
        """distinct, sort, join."""
        xs = self.need(0, "list")
        if self.name == "sort" and xs.item not in ("", *ORDERED):
            raise ExprError("type_mismatch", f"sort() orders numbers, strings or dates, not a {xs}", self.args[0].pos,
                            _SIGNATURES[self.name])
        if self.name == "join":
            if xs.item not in ("", "str"):
                raise ExprError("type_mismatch", f"join() joins a list of strings, not a {xs}", self.args[0].pos,
                                "text(n) writes a number as text")
            if len(self.args) == 2:
                self.need(1, "str")
            return Ty("str")
        return xs


def bindings_of(node: Node, aliases: Mapping[str, str], filters: bool = True) -> dict[str, str]:
    """The patterns a node needs: binding name -> fact type (negated 'exists' needs none). The facts an
    aggregate runs over are not patterns; a fact its filter names from outside is (``filters=False``
    leaves aggregates out entirely: what the condition needs besides them)."""
    out: dict[str, str] = {}

    def walk(n: Node, local: str) -> None:
        if isinstance(n, Ref):
            if n.binding != local and (n.binding != DECISION or n.binding in aliases):
                out[n.binding] = aliases.get(n.binding, n.binding)
        elif isinstance(n, Exists):
            if not n.negated:
                out[n.type_name] = n.type_name
        elif isinstance(n, Bind):
            out[n.alias] = n.type_name
        elif isinstance(n, Call):
            if is_aggregate(n):
                if filters:
                    for c in children(n):
                        walk(c, aggregated_type(n))
            else:
                for c in children(n):
                    walk(c, local)
        else:
            for c in children(n):
                walk(c, local)

    walk(node, "")
    return out


def aggregates_in(node: Node) -> list[Call]:
    """The aggregates a condition part computes, outermost, in written order."""
    if isinstance(node, Call) and is_aggregate(node):
        return [node]
    return [a for c in children(node) for a in aggregates_in(c)]


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
                            "negations: it names no fact that must exist", min(n.pos for p in parts for n in _walk(p)),
                            "join it with a positive condition, e.g. exists applicant and count(loan) >= 2")
        if not bindings:
            raise ExprError("negation_only", "this condition (or one 'or' branch of it) names no fact that must "
                            "exist", parts[0].pos, "join it with a positive condition, e.g. exists claim and not "
                            "exists policy")
        if len(bindings) > MAX_PATTERNS:
            raise ExprError("too_many_patterns", f"{len(bindings)} fact patterns in one rule; the engine runs at "
                            f"most {MAX_PATTERNS}", parts[0].pos, "split the rule, deriving an intermediate fact")
        branch = Branch(bindings, parts)  # its guard is compile.py's: what the engine's patterns leave to test
        for agg in aggregates:
            marker = EPOCH + aggregated_type(agg)
            branch.epochs.setdefault(marker, marker)
            text = render(agg)
            if all(text != t for t, _ in branch.aggregates):
                branch.aggregates.append((text, compile_expr(agg, checker.aliases)))
        branches.append(branch)
    negated: set[str] = set()

    def find_neg(n: Node) -> None:
        if isinstance(n, Exists) and n.negated:
            negated.add(n.type_name)
        for child in children(n):
            find_neg(child)

    find_neg(ast)
    return Condition(ast, checker.aliases, branches, negated)


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
    if isinstance(ast, (Exists, Bind)) or any(isinstance(n, Exists) and not n.negated for n in _walk(ast)):
        raise ExprError("syntax_error", "a computed value cannot test 'exists'", ast.pos,
                        "count(T) > 0 says whether a T fact exists")
    return ty, compile_expr(checker.lower(ast), aliases)


def _walk(node: Node) -> list[Node]:
    return [node, *(n for c in children(node) for n in _walk(c))]


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


# -- evaluation --------------------------------------------------------------------------------------

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@lru_cache(maxsize=4096)
def _field_reader(binding: str, fname: str) -> Eval:
    """One reader per field, shared by every expression that reads it (a large ruleset's many rules name
    few distinct fields)."""
    return lambda env, wm: env[binding].get(fname, MISSING)


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
        if binding == DECISION and binding not in aliases:
            which = 0 if fname == "date" else 1
            return lambda env, wm: env[binding].get(fname, MISSING) if binding in env else wm.moment()[which]
        return _field_reader(binding, fname)
    if isinstance(node, Call):
        return _compile_call(node, aliases)
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
    return _compile_binary(node, aliases)


def _compile_binary(node: Binary, aliases: Mapping[str, str]) -> Eval:
    """A comparison, arithmetic, matches, in, not in or contains, over its compiled sides."""
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


def _whole(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise Undefined
    return int(v)


def round_half_even(n: float, k: int = 0) -> float | int:
    """DMN's round: to k decimal places of the number as written, ties to the even digit."""
    if not -30 <= k <= 30:
        raise Undefined
    exact = Decimal(repr(n)) if isinstance(n, float) else Decimal(n)
    out = exact.quantize(Decimal(1).scaleb(-k), rounding=ROUND_HALF_EVEN)
    return int(out) if k <= 0 or out == out.to_integral_value() else float(out)


def _as_date(v: str, kind: str) -> str:
    if kind == "date":
        return v
    if kind == "datetime":
        return v[:10]
    try:
        return dates.canonical_date(v)
    except dates.DateError:
        raise Undefined from None


def _as_datetime(v: str, kind: str) -> str:
    if kind == "datetime":
        return v
    if kind == "date":
        return v + "T00:00:00Z"
    try:
        return dates.canonical_datetime(v)
    except dates.DateError:
        raise Undefined from None


def _add_days(v: str, n: object, kind: str) -> str:
    try:
        return dates.add_days(v, _whole(n), kind)
    except (OverflowError, ValueError):
        raise Undefined from None


def _add_months(v: str, n: object, months: int) -> str:
    try:
        return dates.add_months(v, _whole(n) * months)
    except (OverflowError, ValueError):
        raise Undefined from None


def text_of(v: object) -> str:
    """A value as text: numbers as JSON writes them (2700, not 2700.0; 15 significant digits, as computed
    values come out), booleans as true/false, strings and dates as they are."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        shown = f"{v:.15g}"
        if "e" in shown:
            mantissa, _, exponent = shown.partition("e")
            return f"{mantissa}e{'-' if exponent[0] == '-' else '+'}{exponent[1:].lstrip('0') or '0'}"
        return shown
    return str(v)


def _distinct(xs: list[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set[object] = set()
    for x in xs:
        key = orjson_key(x) if isinstance(x, dict) else (type(x) is bool, x)
        if key not in seen:
            seen.add(key)
            out.append(x)
    return out


def _sum(xs: list[float]) -> float:
    total = sum(xs)
    if not -MAX_MAGNITUDE <= total <= MAX_MAGNITUDE:
        raise TooLarge
    return total


def orjson_key(x: Mapping[str, object]) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def power(a: float, b: float) -> float | int:
    """``a ** b``: exact for whole numbers, a magnitude beyond 1e300 is TooLarge, 0 ** -1 and a negative
    number to a fraction are undefined (the condition is false)."""
    try:
        r = math.pow(a, b)
    except OverflowError:
        raise TooLarge from None
    except ValueError:
        raise Undefined from None
    if not -MAX_MAGNITUDE <= r <= MAX_MAGNITUDE:
        raise TooLarge
    if isinstance(a, int) and isinstance(b, int) and b >= 0 and abs(r) < 2**53:
        return int(a**b)
    return r


def _extreme(pick: Callable[..., Any], kind: str) -> Callable[[list[Any]], object]:
    if kind == "datetime":
        return lambda values: pick(values, key=dates.sort_key)
    return lambda values: pick(values)


def _compile_call(node: Call, aliases: Mapping[str, str]) -> Eval:
    base, _, kind = node.name.partition(":")
    if is_aggregate(node):
        return _compile_aggregate(node, base, kind, aliases)
    args = [compile_expr(a, aliases) for a in node.args]
    if base == "coalesce":
        def coalesce(env: Facts, wm: FactIndex) -> object:
            for a in args:
                v = a(env, wm)
                if v is not MISSING:
                    return v
            return MISSING

        return coalesce
    one = _function(base, kind)
    if len(args) == 1:
        (arg,) = args

        def call1(env: Facts, wm: FactIndex) -> object:
            v = arg(env, wm)
            return MISSING if v is MISSING else one(v)

        return call1

    def call(env: Facts, wm: FactIndex) -> object:
        values = [a(env, wm) for a in args]
        return MISSING if any(v is MISSING for v in values) else one(*values)

    return call


_NONE = object()


def _function(base: str, kind: str) -> Callable[..., Any]:
    """The function a call names, for arguments that are present (MISSING is handled by the caller)."""
    simple: dict[str, Callable[..., Any]] = {"$key": dates.sort_key, "len": len, "lower": str.lower,
                                             "upper": str.upper, "abs": abs}
    if base in simple:
        return simple[base]
    if base == "round":
        return lambda n, k=0: round_half_even(n, _whole(k))
    if base in ("min", "max"):
        if kind.startswith("list-"):  # of a list value: absent when it is empty
            over = _extreme(min if base == "min" else max, kind[5:])
            return lambda xs: over(xs) if xs else MISSING
        pick = _extreme(min if base == "min" else max, kind)
        return lambda *values: pick(list(values))
    if base == "count":
        return len
    if base == "sum":
        return _sum
    if base == "date":
        return lambda v: _as_date(v, kind)
    if base == "datetime":
        return lambda v: _as_datetime(v, kind)
    if base == "days":
        return lambda a, b: dates.days_between(a, b, kind)
    if base == "years":
        return lambda a, b: dates.years_between(a, b, kind)
    if base in ("add_months", "add_years"):
        months = 1 if base == "add_months" else 12
        return lambda d, n: _add_months(d, n, months)
    if base == "text":
        return text_of
    if base == "distinct":
        return _distinct
    if base == "sort":
        if kind == "datetime":
            return lambda xs: sorted(xs, key=dates.sort_key)
        return sorted
    if base == "join":
        return lambda xs, sep="": sep.join(xs)
    assert base == "add_days", base
    return lambda d, n: _add_days(d, n, kind)


def _compile_aggregate(node: Call, base: str, kind: str, aliases: Mapping[str, str]) -> Eval:
    """count/sum/min/max over the facts of one type at this moment, filtered by ``where``. Its value is kept
    per decision, keyed by how many facts of the type exist and which facts from outside the filter names,
    so a rule re-considered on many combinations costs one pass over the facts, not one per combination."""
    arg = node.args[0]
    tname = aggregated_type(node)
    fname = arg.field if isinstance(arg, Ref) else ""
    keep = compile_expr(node.where, aliases) if node.where is not None else None
    outer = tuple(sorted(bindings_of(node.where, aliases))) if node.where is not None else ()
    outer = tuple(b for b in outer if b != tname)
    token = object()
    if base in ("min", "max"):
        pick = _extreme(min if base == "min" else max, kind)
    extra = node.args[1] if len(node.args) > 1 else None
    declared = [str(i.value) for i in extra.items if isinstance(i, Lit)] if isinstance(extra, ListLit) else []

    def run(env: Facts, wm: FactIndex) -> object:
        seqs = wm.of_type(tname)
        memo = wm.memo()
        key = (token, len(seqs), *(id(env[b]) for b in outer))
        found = memo.get(key, _NONE)
        if found is not _NONE:
            return found
        if keep is not None:
            local = dict(env)
            chosen = []
            for s in seqs:
                values = wm.values(s)
                local[tname] = values
                try:
                    if keep(local, wm) is True:
                        chosen.append(values)
                except (Undefined, OverflowError):
                    continue
        else:
            chosen = [wm.values(s) for s in seqs]
        result: object
        if base == "count":
            result = len(chosen)
        elif base == "list":
            if fname:
                result = [v for f in chosen if (v := f.get(fname, MISSING)) is not MISSING]
            else:
                result = [{k: f[k] for k in declared if k in f} for f in chosen]
        else:
            items = [v for f in chosen if (v := f.get(fname, MISSING)) is not MISSING]
            if base == "sum":
                total = sum(items)  # type: ignore[arg-type]
                if isinstance(total, float) and not math.isfinite(total):
                    raise Undefined
                result = total
            else:
                result = pick(items) if items else MISSING
        memo[key] = result
        return result

    return run


def _truth(v: object) -> bool:
    return v is True


def _neg(v: object) -> object:
    return v if v is MISSING else -v  # type: ignore[operator]


def _arith(op: str, left: Eval, right: Eval) -> Eval:
    def run(env: Facts, wm: FactIndex) -> object:
        a, b = left(env, wm), right(env, wm)
        if a is MISSING or b is MISSING:
            return MISSING
        if op == "+" and a.__class__ is str:
            return a + b  # type: ignore[operator]  # '+' of two strings (the checker saw to it)
        assert isinstance(a, (int, float)) and isinstance(b, (int, float))
        if op == "**":
            return power(a, b)
        if op == "+":
            r = a + b
        elif op == "-":
            r = a - b
        elif op == "*":
            r = a * b
        elif b == 0:
            raise Undefined
        else:
            r = a / b
        if not -MAX_MAGNITUDE <= r <= MAX_MAGNITUDE:
            raise TooLarge
        return r

    return run


def compile_guard(parts: list[Node], aliases: Mapping[str, str]) -> Guard:
    evals = [compile_expr(p, aliases) for p in parts if not isinstance(p, (Bind,))
             and not (isinstance(p, Exists) and not p.negated)]

    def guard(env: Facts, wm: FactIndex) -> bool:
        try:
            for e in evals:
                if e(env, wm) is not True:
                    return False
        except (Undefined, OverflowError):
            return False
        return True

    return guard
