"""The shape of a ruleset file, described once: each section's keys, what each key holds (its type, range,
pattern or allowed values), which keys are required and which sections nest in which.

Two things are made from it. The loader checks a file's shape against it (:meth:`Section.unknown`,
:meth:`Key.accepts`, :meth:`Key.complaint`, :meth:`Key.left_out`; engine/language/sections/base.py's
``take``, ``container``, ``entry`` and ``require``): an unknown key, a value of the wrong type or out of range,
a list or mapping of the wrong kind, a required key left out - each reported at its line and column, with the
codes and words written here. And :func:`json_schema` writes it out as the JSON Schema (draft-07) that
``baton schema`` prints for editors. What no shape can say (that a condition type-checks, that a fact type is
declared, a table's cells) the loader checks by meaning; those places are described here only as far as a
schema can.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.language.check import FUNCTIONS
from engine.language.tables import AGGREGATES, HIT_POLICIES
from engine.model import DEFAULT_CHUNK_CHARS, DEFAULT_STEP_LIMIT

Schema = dict[str, Any]

SCALAR_TYPES = ("str", "string", "number", "float", "int", "integer", "bool", "boolean", "date", "datetime")
OUTCOMES = ("decided", "escalated", "failed", "no_decision")
DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*\Z")
_SCALES = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WHOLE = "a whole number"


def parse_duration(value: object) -> float | None:
    """Seconds, from a duration as written (500ms, 10s, 5m, 4h, 1d; a bare number is seconds); None: not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _SCALES[m.group(2) or "s"]
            return seconds if seconds > 0 else None
    return None


@dataclass(frozen=True)
class Key:
    """What one key (or one list item, or one mapping value) holds.

    ``kind``: str, int, number, bool, duration, enum, list, map (names to ``items``), section, any_of
    (``options``), or schema (a place the loader judges by meaning, described by ``schema`` alone)."""

    kind: str
    description: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # unanchored: the whole value must match
    min_length: int | None = None  # of a string, not counting the spaces around it
    values: tuple[str, ...] = ()
    items: Key | None = None
    section: Section | None = None
    options: tuple[Key, ...] = ()
    names: str | None = None  # a map's keys must match this (unanchored)
    min_items: int | None = None
    max_items: int | None = None
    default: object = None
    example: str = ""  # a duration's: "such as ..."
    message: str = ""  # the complaint about a wrong value, when the kind's own would not do ({name}: the key's)
    missing: str = ""  # the complaint about a required key left out ({name}: what holds it, "model 'x'")
    missing_code: str = "missing_key"
    # an optional key written with nothing after it counts as left out (False: the loader wants a value)
    null: bool = True
    hint: str = ""  # given with either complaint
    schema: Schema | None = None

    def accepts(self, value: object) -> bool:
        """Does ``value`` have this key's shape? A list or mapping's kind and least size, not its items (the
        loader walks them, each at its own place) nor its most (the loader reports too many and goes on)."""
        if self.kind == "list":
            return isinstance(value, list) and len(value) >= (self.min_items or 0)
        if self.kind in ("map", "section"):
            return isinstance(value, dict) and len(value) >= (self.min_items or 0)
        if self.kind == "any_of":
            return any(option.accepts(value) for option in self.options)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "duration":
            return parse_duration(value) is not None
        if self.kind == "enum":
            return isinstance(value, str) and value in self.values  # a quoted "decided" is one (a str subclass)
        if self.kind == "str":
            return isinstance(value, str) and (self.pattern is None or re.fullmatch(self.pattern, value) is not None) \
                and len(value.strip()) >= (self.min_length or 0)
        if self.kind in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else (int, float)):
                return False
            return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        return True

    def complaint(self, name: str) -> str:
        """The message for a wrong value of the key ``name``."""
        if self.message:
            return self.message.replace("{name}", name)
        if self.kind == "list":
            return f"{name} must be a list"
        if self.kind in ("map", "section"):
            return f"{name} must be a mapping"
        if self.kind == "bool":
            return f"{name} is true or false"
        if self.kind == "duration":
            return f"{name} must be a duration such as {self.example or '10s'}"
        if self.kind == "enum":
            return f"{name} must be one of {', '.join(map(str, self.values))}"
        if self.kind in ("int", "number"):
            what = _WHOLE if self.kind == "int" else "a number"
            if self.minimum is not None and self.maximum is not None:
                return f"{name} must be {what} from {_num(self.minimum)} to {_num(self.maximum)}"
            return f"{name} must be {what}"
        return f"{name} must be a {self.kind}"

    def value(self, raw: object) -> object:
        """The accepted ``raw`` as the loader keeps it (a duration in seconds)."""
        return parse_duration(raw) if self.kind == "duration" else raw

    def left_out(self, value: object) -> bool:
        """Is a required key holding ``value`` as good as left out? Absent (None) is; so is a scalar or a list
        not of its shape, which the missing words describe ("needs a 'when:' condition"). A mapping, or one of
        several shapes, given with the wrong shape has a complaint of its own (:meth:`complaint`)."""
        return value is None or (self.kind not in ("map", "section", "any_of") and not self.accepts(value))

    def missing_message(self, name: str) -> str:
        """The message for this required key left out of ``name`` (what holds it: "model 'x'", "escalate")."""
        return self.missing.replace("{name}", name)

    def empty(self) -> object:
        """What a list or mapping left out (or left empty: null) holds."""
        return [] if self.kind == "list" else {} if self.kind in ("map", "section") else None


@dataclass(frozen=True)
class Section:
    """A mapping with known keys: ``what`` names it in messages (``unknown key 'x' in a rule``)."""

    what: str
    keys: dict[str, Key]
    open: bool = False  # other keys are allowed (a tool's connector settings)
    extra: Key | None = None  # what any other key holds (a payload's values); implies open
    refused: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key -> code, message, hint
    description: str = ""
    min_keys: int | None = None

    @property
    def names(self) -> set[str]:
        return set(self.keys)

    def required(self) -> list[str]:
        return [k for k, spec in self.keys.items() if spec.required]

    def unknown(self, node: dict[Any, Any], also: set[str] | frozenset[str] = frozenset()
                ) -> list[tuple[Any, str, str, str]]:
        """The keys of ``node`` this section does not take, in order: (key, code, message, hint). ``also``:
        keys taken here besides the section's own. The hint is left to the caller (it knows the words)."""
        out = []
        for key in node:
            name = str(key)
            if name in self.refused:
                code, message, hint = self.refused[name]
                out.append((key, code, message, hint))
            elif name not in self.keys and name not in also and not self.open and self.extra is None:
                out.append((key, "unknown_key", f"unknown key '{name}' in {self.what}", ""))
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# -- the description ---------------------------------------------------------------------------------------
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
RULESET_NAME = r"[a-z0-9][a-z0-9_.-]{0,99}"
RULE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.:# -]{0,127}"
TABLE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"

_TEXT = Key("str")
_DURATION_SCHEMA: Schema = {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0},
              {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"}],
    "description": "a duration: 500ms, 10s, 5m, 4h, 1d (a number is seconds)"}
_VALUE = Key("schema", schema={"description": "a value, or a computed value: a string starting with = is an "
                               f"expression (functions: {', '.join(FUNCTIONS)}; aggregates: count, sum, min, max, "
                               "list)"})
_SCALAR = Key("schema", schema={"type": ["string", "number", "boolean"]})
_CONDITION = Key("str", "a condition: claim.amount > 50000 and not exists policy; see docs/language.md",
                 required=True, min_length=1, missing="{name} needs a 'when:' condition")
_PRIORITY = Key("int", minimum=-1000, maximum=1000, default=0)
_RETRIES = Key("int", minimum=0, maximum=10, default=0)
_RULE_NAMES = Key("list", items=_TEXT, message="expect.{name} must be a list of rule names")
_OBJECT = Key("schema", schema={"type": "object"})

_MAPPING = "{name} must be a mapping (key: value lines)"
_SCALAR_TYPE = Key("enum", values=(*SCALAR_TYPES, "list"))
FIELD = Section("a field", {
    "type": _SCALAR_TYPE,
    "enum": Key("list", items=_TEXT, min_items=1),
    "items": Key("any_of", options=(Key("enum", values=SCALAR_TYPES), _OBJECT)),
    "min": Key("number"), "max": Key("number"),
    "min_length": Key("int", minimum=0), "max_length": Key("int", minimum=0),
    "optional": Key("bool"), "pii": Key("bool"), "description": _TEXT,
})
_FIELD = Key("any_of", options=(_SCALAR_TYPE, Key("section", section=FIELD)))
FACT_TYPE = Key("map", items=_FIELD, names=NAME, min_items=1, max_items=200,
                 message="{name} needs its fields (name: type)")

# a model's or tool's produces: names a fact type (one it does not name is unknown_fact_type)
_PRODUCES = Key("str", required=True, missing="{name} needs 'produces:' (the fact type its answer becomes)")
MODEL = Section("a model", {
    "group": Key("str", required=True, min_length=1, missing="{name} needs 'group:' (a model group such as fast)"),
    "produces": _PRODUCES,
    "prompt": Key("str", required=True, min_length=1, missing="{name} needs a 'prompt:'"),
    "retries": _RETRIES, "timeout": Key("duration", default=30, example="10s"), "description": _TEXT,
    "from_document": Key("bool", default=False),
    "chunk_chars": Key("int", minimum=500, maximum=200_000, default=DEFAULT_CHUNK_CHARS),
})
TOOL = Section("a tool", {
    "connector": Key("str", required=True, min_length=1, missing="{name} needs 'connector:' (sql, http, lookup, ...)"),
    "produces": _PRODUCES,
    "params": Key("map", items=Key("schema", schema={
        "description": "a field path (claim.policy_ref), a value, or =expression"})),
    "retries": _RETRIES, "timeout": Key("duration", default=10, example="10s"), "description": _TEXT,
}, open=True, description="connector settings (query, corpus, url, ...) go beside these keys")
MODEL_ENTRY = Key("section", section=MODEL, message=_MAPPING)
TOOL_ENTRY = Key("section", section=TOOL, message=_MAPPING)

# -- actions (a rule's then:) --------------------------------------------------------------------------
PAYLOAD = Section("decide", {"reason": _TEXT}, extra=_VALUE)
ESCALATE = Section("escalate", {
    "queue": Key("str", required=True, missing="{name} needs a 'queue:'"), "reason": _TEXT,
    "expects": Key("str", "the fact type of the reviewer's answer"),
    "sla": Key("duration", example="4h or 30m"),
}, extra=_VALUE)
_EFFECT_WORDS = "effect takes {name: EFFECT, with: {...}}"  # "{name:" is the key's, not a placeholder
_EFFECT_HINT = "EFFECT is a name from the service config's effects: section"
EFFECT = Section("effect", {
    "name": Key("str", required=True, min_length=1, missing=_EFFECT_WORDS, missing_code="bad_shape",
                hint=_EFFECT_HINT),
    "with": Key("map", items=_VALUE, message="effect: with: takes a mapping"),
})
_PROPOSAL_WORDS = "{name} takes a mapping, e.g. {route: standard-queue}"
ACTIONS = {  # each action a rule's then: may write as a one-key mapping, by its key
    "decide": Key("section", required=True, section=PAYLOAD, message=_PROPOSAL_WORDS),
    "escalate": Key("section", required=True, section=ESCALATE, message=_PROPOSAL_WORDS),
    "assert": Key("map", required=True, min_items=1, items=Key("map", items=_VALUE),
                  message="assert takes {fact_type: {field: value}}"),
    "effect": Key("section", required=True, section=EFFECT, message=_EFFECT_WORDS, hint=_EFFECT_HINT),
}
_ACTION_WORDS = "an action is a model/tool action name, or one of decide:, escalate:, assert:"
_ACTION_HINT = "several actions go in a list"
ONE_ACTION = Key("any_of", options=(Key("str", "a model or tool action's name"), *(
    Key("section", section=Section("an action", {verb: spec})) for verb, spec in ACTIONS.items())),
    message=_ACTION_WORDS, hint=_ACTION_HINT)
ACTION = Key("any_of", options=(ONE_ACTION, Key("list", items=ONE_ACTION, min_items=1)))

RULE = Section("a rule", {
    "name": Key("str", required=True, pattern=RULE_NAME, missing_code="bad_name",
                missing="each rule needs a 'name:' (letters, digits, spaces, - _ . : #)"),
    "description": _TEXT, "when": _CONDITION,
    "then": Key("any_of", required=True, options=ACTION.options, missing="{name} needs a 'then:' action",
                message=_ACTION_WORDS),
    "priority": _PRIORITY,
    "final": Key("bool", "when it fires, the decision stops (a rule that decides or escalates)", default=False),
})
TABLE = Section("a decision table", {
    "name": Key("str", required=True, pattern=TABLE_NAME, missing_code="bad_name",
                missing="each table needs a 'name:' (letters, digits, - _ .)"),
    "description": _TEXT,
    "hit": Key("enum", values=HIT_POLICIES, default="unique"),
    "when": Key("str", _CONDITION.description, default="", message="when must be a condition"),
    "priority": _PRIORITY,
    "inputs": Key("list", required=True, items=Key(
        "str", "TYPE.field, a definition's name, or =expression", pattern=r"\w+\.\w+|\w+|=.+"),
        missing="{name} needs 'inputs:' (a list of TYPE.field columns)"),
    "aggregate": Key("enum", values=AGGREGATES),
    "outputs": Key("list", required=True, min_items=1, items=Key("str", pattern=r"\w+\.\w+"),
                   missing="{name} needs 'outputs:' (a list of TYPE.field columns)"),
    "rows": Key("list", required=True, min_items=1, items=Key("schema", schema={"type": "array"}),
                missing="{name} needs 'rows:' (a list of rows of cells)"),
    "ranking": Key("schema", schema={"type": "array"}),
}, refused={"final": ("bad_final", "a table cannot be final: final: true stops a decision when a rule that "
                      "decides or escalates fires", "give a rule final: true, or the table a high priority")})

# -- tests -----------------------------------------------------------------------------------------------
EXPECT = Section("expect", {
    "outcome": Key("enum", values=OUTCOMES, message=f"expect.outcome must be one of {sorted(OUTCOMES)}",
                   null=False),
    "decision": _OBJECT, "reason": _TEXT,
    "fired": _RULE_NAMES, "fired_includes": _RULE_NAMES, "not_fired": _RULE_NAMES,
})
_MOMENT = Key("str", "fixes decision.date / decision.time for this test", null=False)
TEST_DOCUMENTS = "documents: [{name: claim.txt, text: '...'}] or [{name: claim.pdf, pages: ['page 1', 'page 2']}]"
# a test's document: a name, and a text or pages (the loader judges which)
DOCUMENT = Key("schema", schema={"type": "object", "required": ["name"]}, hint=TEST_DOCUMENTS,
               message="a test document has a name and a text (or pages)")
TEST = Section("a test", {
    "name": _TEXT, "description": _TEXT, "given": _OBJECT,
    "answers": Key("map", message="answers must map action names to answers"),
    "documents": Key("list", items=DOCUMENT, hint=TEST_DOCUMENTS),
    "human": Key("map", message="human maps a fact type to a reviewer's answer"),
    "decision_date": _MOMENT, "decision_time": _MOMENT,
    "expect": Key("section", section=EXPECT),
})

# -- the file --------------------------------------------------------------------------------------------
RULE_ENTRY = Key("section", section=RULE, message="each rule is a mapping with name, when and then")
TABLE_ENTRY = Key("section", section=TABLE, message="a decision table is a mapping with name, inputs, outputs and rows")
TEST_ENTRY = Key("section", section=TEST, message="each test is a mapping with name, given, answers, expect")
BUDGET = Section("settings.budget", {
    "max_calls": Key("int", minimum=0), "max_cost_usd": Key("number", minimum=0),
})
SETTINGS = Section("settings", {
    "step_limit": Key("int", minimum=1, maximum=100_000, default=DEFAULT_STEP_LIMIT),
    "deadline": Key("duration", example="2s or 500ms", null=False),
    "budget": Key("section", section=BUDGET, message="budget takes {max_calls: N, max_cost_usd: X}"),
})
RULESET = Section("the ruleset", {
    "ruleset": Key("str", required=True, pattern=RULESET_NAME, missing_code="bad_name",
                   missing="the ruleset needs 'ruleset: NAME' (lowercase letters, digits, - _ .)"),
    "description": _TEXT,
    "facts": Key("map", required=True, items=FACT_TYPE, names=NAME, message=_MAPPING,
                 missing="a ruleset declares its fact types under 'facts:'"),
    "values": Key("map", "named values used by name in any expression (an unquoted 2026-03-31 is a date)",
                  names=NAME, items=Key("any_of", options=(_SCALAR, Key("list", items=_SCALAR)))),
    "define": Key("map", "named expressions (conditions or values) used by name in any expression",
                  names=NAME, items=_SCALAR),
    "input": Key("any_of", options=(_TEXT, Key("list", items=_TEXT)),
                 message="input must list fact types, e.g. input: [claim]"),
    "models": Key("map", names=NAME, items=MODEL_ENTRY, message="models must be a mapping of action names"),
    "tools": Key("map", names=NAME, items=TOOL_ENTRY, message="tools must be a mapping of action names"),
    # not required: a ruleset of tables alone leaves it out; written, it lists at least one rule
    "rules": Key("list", min_items=1, items=RULE_ENTRY, missing="a ruleset needs a non-empty 'rules:' list"),
    "tables": Key("list", items=TABLE_ENTRY, message="tables must be a list of decision tables"),
    "tests": Key("list", items=TEST_ENTRY),
    "settings": Key("section", section=SETTINGS),
}, description="A Baton ruleset file: facts, rules, decision tables, models, tools and tests.")
FILE = Key("section", section=RULESET, message="a ruleset file is a YAML mapping starting with 'ruleset: NAME'")


# -- the JSON Schema -------------------------------------------------------------------------------------
def json_schema(spec: Key | Section) -> Schema:
    """``spec`` as a draft-07 JSON Schema."""
    if isinstance(spec, Section):
        return _section_schema(spec)
    if spec.kind == "schema":
        return dict(spec.schema or {})
    out = _KIND_SCHEMA[spec.kind](spec)
    if spec.description:
        out["description"] = spec.description
    return out


def _section_schema(section: Section) -> Schema:
    out: Schema = {"type": "object"}
    if section.extra is not None:
        out["additionalProperties"] = json_schema(section.extra)
    elif not section.open:
        out["additionalProperties"] = False
    if section.required():
        out["required"] = section.required()
    if section.min_keys is not None:
        out["minProperties"] = section.min_keys
    out["properties"] = {k: _or_left_out(json_schema(v)) if _null_left_out(v) else json_schema(v)
                         for k, v in section.keys.items()}
    if section.description:
        out["description"] = section.description
    return out


def _null_left_out(spec: Key) -> bool:
    """Does the loader take this key written with nothing after it as left out? An optional key with no
    default does, unless marked otherwise; one with a default wants a value (tests/engine/test_shape.py)."""
    return not spec.required and spec.default is None and spec.null


def _or_left_out(schema: Schema) -> Schema:
    """An optional key written with nothing after it (``settings:``, ``description:``) is null in YAML, and
    the loader takes it as left out: so does the schema. Null is added to the key's own type (or enum, or
    alternatives), so an error inside a value given is still reported where it is."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    if "enum" in out and isinstance(out["enum"], list):
        out["enum"] = [*out["enum"], None]
    if kind is None and isinstance(out.get("anyOf"), list):
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def _anchored(pattern: str) -> str:
    return f"^({pattern})$" if "|" in pattern else f"^{pattern}$"


def _str_schema(spec: Key) -> Schema:
    out: Schema = {"type": "string"}
    if spec.pattern is not None:
        out["pattern"] = _anchored(spec.pattern)
    if spec.min_length is not None:
        out["minLength"] = spec.min_length
    return out


def _number_schema(spec: Key) -> Schema:
    out: Schema = {"type": "integer" if spec.kind == "int" else "number"}
    if spec.minimum is not None:
        out["minimum"] = _int_if_whole(spec.minimum)
    if spec.maximum is not None:
        out["maximum"] = _int_if_whole(spec.maximum)
    return out


def _int_if_whole(x: float) -> float:
    return int(x) if not isinstance(x, bool) and math.isfinite(x) and float(x).is_integer() else x


def _list_schema(spec: Key) -> Schema:
    out: Schema = {"type": "array"}
    if spec.items is not None:
        out["items"] = json_schema(spec.items)
    if spec.min_items is not None:
        out["minItems"] = spec.min_items
    return out


def _map_schema(spec: Key) -> Schema:
    out: Schema = {"type": "object"}
    if spec.names is not None:
        out["propertyNames"] = {"type": "string", "pattern": _anchored(spec.names)}
    if spec.min_items is not None:
        out["minProperties"] = spec.min_items
    if spec.max_items is not None:
        out["maxProperties"] = spec.max_items
    if spec.items is not None:
        out["additionalProperties"] = json_schema(spec.items)
    return out


def _bool_schema(spec: Key) -> Schema:
    return {"type": "boolean"}


def _duration_schema(spec: Key) -> Schema:
    return dict(_DURATION_SCHEMA)


def _enum_schema(spec: Key) -> Schema:
    return {"type": "string", "enum": list(spec.values)}


def _nested_schema(spec: Key) -> Schema:
    return _section_schema(spec.section) if spec.section is not None else {"type": "object"}


def _any_of_schema(spec: Key) -> Schema:
    return {"anyOf": [json_schema(o) for o in spec.options]}


_KIND_SCHEMA: dict[str, Callable[[Key], Schema]] = {
    "str": _str_schema, "int": _number_schema, "number": _number_schema, "bool": _bool_schema,
    "duration": _duration_schema, "enum": _enum_schema, "list": _list_schema, "map": _map_schema,
    "section": _nested_schema, "any_of": _any_of_schema,
}
