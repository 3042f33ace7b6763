"""Compile a checked expression into a closure over the matched facts and the working memory: the
operators, the built-in functions and the aggregates as they run when an activation fires."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any

from engine.language import dates
from engine.language.expr import ARITHMETIC, Binary, Bind, BoolOp, Call, Exists, ListLit, Lit, Neg, Node, Not, Ref
from engine.language.runtime import DECISION, MAX_MAGNITUDE, MISSING, Eval, FactIndex, Facts, Guard, TooLarge, Undefined
from engine.language.trees import aggregated_type, bindings_of, is_aggregate
from engine.regex import compile_regex

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
        if isinstance(node.left, Ref) and isinstance(node.right, Lit) and (
                node.left.binding != DECISION or node.left.binding in aliases):
            return _compare_field(cmp, node.left.binding, node.left.field, node.right.value)

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


def _compare_field(cmp: Callable[[Any, Any], Any], binding: str, fname: str, value: object) -> Eval:
    """``binding.field OP literal``, the most common test of all: what ``compare`` over a field reader and
    a literal gives, read in one call instead of three."""

    def compare_field(env: Facts, wm: FactIndex) -> object:
        a = env[binding].get(fname, MISSING)
        return False if a is MISSING else cmp(a, value)

    return compare_field


def always(env: Facts, wm: FactIndex) -> bool:
    """The guard of a branch whose every test the network makes: nothing left to check."""
    return True


def compile_guard(parts: list[Node], aliases: Mapping[str, str]) -> Guard:
    evals = [compile_expr(p, aliases) for p in parts if not isinstance(p, (Bind,))
             and not (isinstance(p, Exists) and not p.negated)]
    if not evals:
        return always
    if len(evals) == 1:
        only = evals[0]

        def guard_one(env: Facts, wm: FactIndex) -> bool:
            try:
                return only(env, wm) is True
            except (Undefined, OverflowError):
                return False

        return guard_one

    def guard(env: Facts, wm: FactIndex) -> bool:
        try:
            for e in evals:
                if e(env, wm) is not True:
                    return False
        except (Undefined, OverflowError):
            return False
        return True

    return guard
