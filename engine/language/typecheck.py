"""The type checker: the type of every expression against the fact types, with the built-in
functions' signatures; a mistake raises ExprError at its position."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

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
from engine.language.runtime import DECISION
from engine.language.trees import is_aggregate
from engine.language.types import FactType, FieldSpec
from engine.regex import RegexError, compile_regex

FUNCTIONS = ("len", "lower", "upper", "abs", "min", "max", "round", "coalesce", "date", "datetime", "days",
             "years", "add_days", "add_months", "add_years", "text", "distinct", "sort", "join")
ORDERED = ("number", "str", "date", "datetime")


@dataclass(frozen=True, slots=True)
class Ty:
    kind: str  # number | str | bool | list | date | datetime
    item: str = ""  # list item kind; "" for an empty list literal
    enum: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"list of {self.item or 'anything'}" if self.kind == "list" else self.kind


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
        meaning depends on their argument's kind carry it (``days:date``). A node that lowering leaves as it
        is stays the same object (a version keeps both trees: the copy was most of a rule's nodes again)."""
        if isinstance(node, Binary):
            left, right = self.lower(node.left), self.lower(node.right)
            seen = self.seen.get(id(node.left))
            if node.op in COMPARISONS and seen is not None and seen.kind == "datetime":
                left, right = Call(left.pos, "$key", (left,)), Call(right.pos, "$key", (right,))
            if left is node.left and right is node.right:
                return node
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
            if name == node.name and where is node.where and _same(args, node.args):
                return node
            return Call(node.pos, name, args, where)
        if isinstance(node, BoolOp):
            operands = tuple(self.lower(o) for o in node.operands)
            return node if _same(operands, node.operands) else BoolOp(node.pos, node.op, operands)
        if isinstance(node, (Not, Neg)):
            operand = self.lower(node.operand)
            return node if operand is node.operand else type(node)(node.pos, operand)
        if isinstance(node, ListLit):
            items = tuple(self.lower(i) for i in node.items)
            return node if _same(items, node.items) else ListLit(node.pos, items)
        return node


def _same(these: tuple[Node, ...], those: tuple[Node, ...]) -> bool:
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))


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
