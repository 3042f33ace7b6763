"""A JSON Schema (draft-07) for ruleset files, so editors validate and complete them as analysts type
(``baton schema`` prints it; a ``# yaml-language-server: $schema=...`` line at the top of a ruleset
points VS Code, IntelliJ or Neovim at it). It describes the shape; ``baton check`` remains the judge of
meaning (types of conditions, names, positions)."""

from __future__ import annotations

from typing import Any

from engine.language.check import FUNCTIONS
from engine.language.tables import AGGREGATES, HIT_POLICIES

SCALAR_TYPES = ["str", "string", "number", "float", "int", "integer", "bool", "boolean", "date", "datetime"]
_DURATION = {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                       {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"}],
             "description": "a duration: 500ms, 10s, 5m, 4h, 1d (a number is seconds)"}
_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_VALUE = {"description": "a value, or a computed value: a string starting with = is an expression "
          f"(functions: {', '.join(FUNCTIONS)}; aggregates: count, sum, min, max, list)"}
_SCALAR = {"type": ["string", "number", "boolean"]}


def _field() -> dict[str, Any]:
    scalar = {"type": "string", "enum": [*SCALAR_TYPES, "list"]}
    return {"anyOf": [scalar, {
        "type": "object", "additionalProperties": False,
        "properties": {
            "type": scalar, "enum": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "items": {"anyOf": [{"type": "string", "enum": SCALAR_TYPES}, {"type": "object"}]},
            "min": {"type": "number"}, "max": {"type": "number"},
            "min_length": {"type": "integer", "minimum": 0}, "max_length": {"type": "integer", "minimum": 0},
            "optional": {"type": "boolean"}, "pii": {"type": "boolean"}, "description": {"type": "string"},
        }}]}


def _payload(required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": _VALUE,
                           "properties": {"reason": {"type": "string"}}}
    if required:
        out["required"] = required
    return out


def _action() -> dict[str, Any]:
    escalate = _payload(["queue"])
    escalate["properties"] = {"queue": {"type": "string"}, "reason": {"type": "string"},
                              "expects": {"type": "string", "description": "the fact type of the reviewer's answer"},
                              "sla": _DURATION}
    one = {"anyOf": [
        {"type": "string", "description": "a model or tool action's name"},
        {"type": "object", "additionalProperties": False, "required": ["decide"],
         "properties": {"decide": _payload()}},
        {"type": "object", "additionalProperties": False, "required": ["escalate"],
         "properties": {"escalate": escalate}},
        {"type": "object", "additionalProperties": False, "required": ["assert"],
         "properties": {"assert": {"type": "object", "minProperties": 1,
                                   "additionalProperties": {"type": "object", "additionalProperties": _VALUE}}}},
        {"type": "object", "additionalProperties": False, "required": ["effect"],
         "properties": {"effect": {"type": "object", "additionalProperties": False, "required": ["name"],
                                   "properties": {"name": {"type": "string"},
                                                  "with": {"type": "object", "additionalProperties": _VALUE}}}}},
    ]}
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def ruleset_schema() -> dict[str, Any]:
    condition = {"type": "string", "minLength": 1,
                 "description": "a condition: claim.amount > 50000 and not exists policy; see docs/language.md"}
    rule = {"type": "object", "additionalProperties": False, "required": ["name", "when", "then"],
            "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.:# -]{0,127}$"},
                           "description": {"type": "string"}, "when": condition, "then": _action(),
                           "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                           "final": {"type": "boolean", "description": "when it fires, the decision stops (a rule "
                                     "that decides or escalates)"}}}
    model = {"type": "object", "additionalProperties": False, "required": ["group", "produces", "prompt"],
             "properties": {"group": {"type": "string"}, "produces": {"type": "string"},
                            "prompt": {"type": "string"}, "retries": {"type": "integer", "minimum": 0, "maximum": 10},
                            "timeout": _DURATION, "description": {"type": "string"},
                            "from_document": {"type": "boolean"},
                            "chunk_chars": {"type": "integer", "minimum": 500, "maximum": 200000}}}
    tool = {"type": "object", "required": ["connector", "produces"],
            "description": "connector settings (query, corpus, url, ...) go beside these keys",
            "properties": {"connector": {"type": "string"}, "produces": {"type": "string"},
                           "params": {"type": "object", "additionalProperties": {
                               "description": "a field path (claim.policy_ref), a value, or =expression"}},
                           "retries": {"type": "integer", "minimum": 0, "maximum": 10}, "timeout": _DURATION,
                           "description": {"type": "string"}}}
    table = {"type": "object", "additionalProperties": False, "required": ["name", "inputs", "outputs", "rows"],
             "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                            "hit": {"enum": list(HIT_POLICIES)}, "when": condition,
                            "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                            "inputs": {"type": "array", "items": {"type": "string", "pattern": r"^(\w+\.\w+|\w+|=.+)$",
                                       "description": "TYPE.field, a definition's name, or =expression"}},
                            "aggregate": {"enum": list(AGGREGATES)},
                            "outputs": {"type": "array", "minItems": 1,
                                        "items": {"type": "string", "pattern": r"^\w+\.\w+$"}},
                            "rows": {"type": "array", "minItems": 1, "items": {"type": "array"}},
                            "ranking": {"type": "array"}}}
    moment = {"type": "string", "description": "fixes decision.date / decision.time for this test"}
    test = {"type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "given": {"type": "object"}, "answers": {"type": "object"},
                           "documents": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                           "human": {"type": "object"}, "decision_date": moment, "decision_time": moment,
                           "expect": {"type": "object", "additionalProperties": False, "properties": {
                               "outcome": {"enum": ["decided", "escalated", "failed", "no_decision"]},
                               "decision": {"type": "object"}, "reason": {"type": "string"},
                               "fired": {"type": "array", "items": {"type": "string"}},
                               "fired_includes": {"type": "array", "items": {"type": "string"}},
                               "not_fired": {"type": "array", "items": {"type": "string"}}}}}}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://baton.invalid/schema/ruleset.json",
        "title": "Baton ruleset",
        "description": "A Baton ruleset file: facts, rules, decision tables, models, tools and tests.",
        "type": "object", "additionalProperties": False, "required": ["ruleset", "facts"],
        "properties": {
            "ruleset": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,99}$"},
            "description": {"type": "string"},
            "facts": {"type": "object", "propertyNames": _NAME,
                      "additionalProperties": {"type": "object", "propertyNames": _NAME, "minProperties": 1,
                                               "maxProperties": 200, "additionalProperties": _field()}},
            "values": {"type": "object", "propertyNames": _NAME,
                       "description": "named values used by name in any expression (an unquoted 2026-03-31 is a "
                       "date)", "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}},
            "define": {"type": "object", "propertyNames": _NAME,
                       "description": "named expressions (conditions or values) used by name in any expression",
                       "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "models": {"type": "object", "propertyNames": _NAME, "additionalProperties": model},
            "tools": {"type": "object", "propertyNames": _NAME, "additionalProperties": tool},
            "rules": {"type": "array", "items": rule},
            "tables": {"type": "array", "items": table},
            "tests": {"type": "array", "items": test},
            "settings": {"type": "object", "additionalProperties": False, "properties": {
                "step_limit": {"type": "integer", "minimum": 1, "maximum": 100000}, "deadline": _DURATION,
                "budget": {"type": "object", "additionalProperties": False, "properties": {
                    "max_calls": {"type": "integer", "minimum": 0}, "max_cost_usd": {"type": "number",
                                                                                     "minimum": 0}}}}},
        },
    }
