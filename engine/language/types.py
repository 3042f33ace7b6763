"""Fact types: declared fields, and the validators that check and normalise facts against them.

Every value that reaches the engine passed through here: wrong types, missing or unknown fields,
enum and range violations, NaN/Infinity, over-long strings and unpaired surrogates are rejected with
the field path. Validators are plain closures built once per fact type (this is on the hot path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from engine.errors import InvalidInput, Where
from engine.language.dates import DateError, canonical_date, canonical_datetime

SCALARS = {"str": "str", "string": "str", "number": "number", "float": "number", "int": "int",
           "integer": "int", "bool": "bool", "boolean": "bool", "date": "date", "datetime": "datetime"}
MAX_FIELDS = 200
DEFAULT_MAX_STRING = 100_000
MAX_LIST = 10_000
MAX_NUMBER = 1e300  # finite, and far from anything that overflows a double in arithmetic
MAX_INT = 2**63 - 1  # whole numbers beyond 64 bits are refused (send them as decimals)


@dataclass(slots=True)
class FieldSpec:
    name: str
    kind: str  # str | number | int | bool | enum | list | date | datetime
    items: FieldSpec | None = None
    enum: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    optional: bool = False
    pii: bool = False
    where: Where = field(default_factory=Where)

    @property
    def scalar_kind(self) -> str:
        """The comparison kind: enums compare as strings, ints as numbers."""
        if self.kind == "enum":
            return "str"
        if self.kind == "int":
            return "number"
        return self.kind

    def json_schema(self) -> dict[str, object]:
        schema: dict[str, object]
        if self.kind == "enum":
            schema = {"type": "string", "enum": list(self.enum)}
        elif self.kind == "list":
            assert self.items is not None
            schema = {"type": "array", "items": self.items.json_schema()}
        elif self.kind in ("date", "datetime"):
            schema = {"type": "string", "format": "date" if self.kind == "date" else "date-time"}
        else:
            schema = {"type": {"str": "string", "number": "number", "int": "integer", "bool": "boolean"}[self.kind]}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.max_length is not None:
            schema["maxLength" if self.kind == "str" else "maxItems"] = self.max_length
        return schema


@dataclass(slots=True)
class FactType:
    name: str
    fields: dict[str, FieldSpec]
    where: Where = field(default_factory=Where)
    builtin: bool = False
    validate: Callable[[object, str], dict[str, object]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate = build_validator(self)

    def json_schema(self) -> dict[str, object]:
        return {
            "type": "object",
            "properties": {n: f.json_schema() for n, f in self.fields.items()},
            "required": [n for n, f in self.fields.items() if not f.optional],
            "additionalProperties": False,
        }


def all_optional(ft: FactType) -> FactType:
    """The same fact type with every field optional (a partial fact: a document chunk's answer, the literal
    fields of a fact whose other fields are computed when its rule fires)."""
    return FactType(ft.name, {n: replace(spec, optional=True) for n, spec in ft.fields.items()}, ft.where, ft.builtin)


def failure_type() -> FactType:
    """The built-in fact a failed model or tool call asserts."""
    return FactType("failure", {n: FieldSpec(n, "str") for n in ("action", "kind", "error")}, builtin=True)


def timeout_type() -> FactType:
    """The built-in fact asserted when an escalation's SLA passes with no answer."""
    return FactType("timeout", {n: FieldSpec(n, "str") for n in ("queue", "reason")}, builtin=True)


def document_type() -> FactType:
    """The built-in fact each document sent with a decision asserts (its text stays out of working memory)."""
    fields = {n: FieldSpec(n, "str") for n in ("id", "name", "media_type")}
    fields.update({n: FieldSpec(n, "int", minimum=0) for n in ("pages", "chars")})
    return FactType("document", fields, builtin=True)


def passage_type() -> FactType:
    """The built-in fact a `retrieve` tool asserts for each passage of policy text it found."""
    fields = {n: FieldSpec(n, "str") for n in ("corpus", "document", "section", "content_hash", "text")}
    fields["corpus_version"] = FieldSpec("corpus_version", "int", minimum=0)
    fields["score"] = FieldSpec("score", "number")
    return FactType("passage", fields, builtin=True)


BUILTIN_TYPES = ("failure", "timeout", "document", "passage")


def _fail(path: str, message: str, code: str = "invalid_fact") -> InvalidInput:
    return InvalidInput(code, f"{path}: {message}", Where(path=path))


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


def _scalar_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    return {"number": _number_checker, "int": _number_checker, "str": _str_checker, "enum": _enum_checker,
            "bool": _bool_checker, "date": _date_checker, "datetime": _date_checker}[spec.kind](spec)


def _number_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    kind = spec.kind
    lo, hi = spec.minimum, spec.maximum

    def check_number(value: object, path: str) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"expected a number, got {_type_name(value)}", "type_mismatch")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _fail(path, "NaN and Infinity are not numbers Baton accepts", "not_finite")
            if value.is_integer() and abs(value) < 2**53:
                value = int(value)  # 5.0 and 5 are one value: one canonical form for identity
        if kind == "int" and not isinstance(value, int):
            raise _fail(path, f"expected a whole number, got {value}", "type_mismatch")
        if abs(value) > (MAX_INT if isinstance(value, int) else MAX_NUMBER):
            raise _fail(path, "number out of range", "out_of_range")
        if lo is not None and value < lo:
            raise _fail(path, f"{value} is below the minimum {lo}", "out_of_range")
        if hi is not None and value > hi:
            raise _fail(path, f"{value} is above the maximum {hi}", "out_of_range")
        return value

    return check_number


def _str_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    max_len = spec.max_length if spec.max_length is not None else DEFAULT_MAX_STRING
    min_len = spec.min_length or 0

    def check_str(value: object, path: str) -> object:
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {_type_name(value)}", "type_mismatch")
        n = len(value)
        if n > max_len:
            raise _fail(path, f"string of {n} characters is longer than {max_len}", "too_long")
        if n < min_len:
            raise _fail(path, f"string shorter than {min_len} characters", "too_short")
        try:
            if not value.isascii():  # only a non-ASCII string can hold an unpaired surrogate
                value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(path, "string is not valid UTF-8 (unpaired surrogate)", "bad_encoding") from None
        return value

    return check_str


def _enum_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    enum = frozenset(spec.enum)

    def check_enum(value: object, path: str) -> object:
        if not isinstance(value, str):
            raise _fail(path, f"expected one of {sorted(enum)}, got {_type_name(value)}", "type_mismatch")
        if value not in enum:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise _fail(path, f"{shown!r} is not one of {list(spec.enum)}", "not_in_enum")
        return value

    return check_enum


def _date_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    kind = spec.kind

    def check_date(value: object, path: str) -> object:
        if not isinstance(value, str):
            raise _fail(path, f"expected a {kind} as text, got {_type_name(value)}", "type_mismatch")
        try:
            return canonical_date(value) if kind == "date" else canonical_datetime(value)
        except DateError as e:
            raise _fail(path, str(e), "bad_date") from None

    return check_date


def _bool_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    def check_bool(value: object, path: str) -> object:
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {_type_name(value)}", "type_mismatch")
        return value

    return check_bool


def _field_checker(spec: FieldSpec) -> Callable[[object, str], object]:
    if spec.kind != "list":
        return _scalar_checker(spec)
    assert spec.items is not None
    item_check = _scalar_checker(spec.items)
    max_items = spec.max_length if spec.max_length is not None else MAX_LIST

    def check_list(value: object, path: str) -> object:
        if not isinstance(value, (list, tuple)):
            raise _fail(path, f"expected a list, got {_type_name(value)}", "type_mismatch")
        if len(value) > max_items:
            raise _fail(path, f"list of {len(value)} items is longer than {max_items}", "too_long")
        try:
            return [item_check(v, "") for v in value]
        except InvalidInput:  # the same refusal again, now named by the item's path (built only on failure)
            return [item_check(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check_list


def check_field(spec: FieldSpec, value: object, path: str) -> object:
    """One field's value checked and normalised as a fact's would be (raises InvalidInput)."""
    return _field_checker(spec)(value, path)


def _fast_test(spec: FieldSpec, consts: dict[str, object]) -> str | None:
    """A Python expression true of ``v`` exactly when the field's checker would return ``v`` itself (a plain
    value already in canonical form); None for kinds with no such test (dates, lists). False never means
    invalid: the full checker decides then."""
    k = len(consts)
    if spec.kind == "str":
        consts[f"lo{k}"] = spec.min_length or 0
        consts[f"hi{k}"] = spec.max_length if spec.max_length is not None else DEFAULT_MAX_STRING
        return f"type(v) is str and lo{k} <= len(v) <= hi{k} and v.isascii()"
    if spec.kind == "enum":
        consts[f"e{k}"] = frozenset(spec.enum)
        return f"type(v) is str and v in e{k}"
    if spec.kind == "bool":
        return "type(v) is bool"
    if spec.kind in ("number", "int"):
        consts[f"lo{k}"] = spec.minimum if spec.minimum is not None else -math.inf
        consts[f"hi{k}"] = spec.maximum if spec.maximum is not None else math.inf
        whole = f"(type(v) is int and -MAX_INT <= v <= MAX_INT and lo{k} <= v <= hi{k})"
        if spec.kind == "int":
            return whole
        # a float stays as it is only when it is not whole (5.0 becomes 5) and finite (NaN fails every <=)
        return (f"{whole} or (type(v) is float and -MAX_NUMBER <= v <= MAX_NUMBER and not v.is_integer() "
                f"and lo{k} <= v <= hi{k})")
    return None


def _fast_validator(fact_type: FactType, checked: Callable[[object, str], dict[str, object]]) \
        -> Callable[[object, str], dict[str, object]]:
    """``checked`` with a fast path written out for this type: a plain dict whose values are already
    canonical is copied field by field without a call per field; anything else (a missing, unknown or wrong
    field, a value to normalise) goes to ``checked``, which gives the answer or the error."""
    consts: dict[str, object] = {"checked": checked, "known": frozenset(fact_type.fields).issuperset,
                                 "MAX_INT": MAX_INT, "MAX_NUMBER": MAX_NUMBER, "InvalidInput": InvalidInput}
    lines = ["def validate(value, path):",
             "    if type(value) is not dict or not known(value):",
             "        return checked(value, path)",
             "    out = {}"]
    for name, spec in fact_type.fields.items():
        key = repr(name)
        test = _fast_test(spec, consts)
        lines.append(f"    v = value.get({key})")
        indent = "    "
        if spec.optional:
            lines.append("    if v is not None:")
            indent = "        "
        if test is None:
            fn = f"c{len(consts)}"
            consts[fn] = _field_checker(spec)
            lines += [f"{indent}if v is None:", f"{indent}    return checked(value, path)",
                      f"{indent}try:", f"{indent}    out[{key}] = {fn}(v, '')",
                      f"{indent}except InvalidInput:", f"{indent}    return checked(value, path)"]
        else:
            lines += [f"{indent}if {test}:", f"{indent}    out[{key}] = v",
                      f"{indent}else:", f"{indent}    return checked(value, path)"]
    lines.append("    return out")
    exec("\n".join(lines), consts)  # source made above from the spec: constants by name, field names by repr
    fast: Callable[[object, str], dict[str, object]] = consts["validate"]  # type: ignore[assignment]
    return fast


def build_validator(fact_type: FactType) -> Callable[[object, str], dict[str, object]]:
    return _fast_validator(fact_type, _checked_validator(fact_type))


def _checked_validator(fact_type: FactType) -> Callable[[object, str], dict[str, object]]:
    checks = [(name, _field_checker(spec), spec.optional) for name, spec in fact_type.fields.items()]
    known = frozenset(fact_type.fields)
    type_name = fact_type.name

    def validate(value: object, path: str) -> dict[str, object]:
        if not isinstance(value, dict) and not isinstance(value, Mapping):  # dict first: the ABC check is slow
            raise _fail(path, f"a {type_name} fact must be an object, got {_type_name(value)}", "type_mismatch")
        for key in value:
            if key not in known:
                shown = key if isinstance(key, str) and len(key) <= 60 else repr(key)[:60]
                raise _fail(f"{path}.{shown}", f"unknown field of {type_name}", "unknown_field")
        out: dict[str, object] = {}
        get = value.get
        for name, check, optional in checks:
            v = get(name)
            if v is not None:
                try:
                    out[name] = check(v, "")
                except InvalidInput:  # the same refusal again, named by the field's path (built only on failure)
                    out[name] = check(v, f"{path}.{name}")
            elif not optional:
                raise _fail(f"{path}.{name}", f"missing field of {type_name}", "missing_field")
        return out

    return validate
