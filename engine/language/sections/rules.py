"""rules: - each rule's name, condition and steps (call, assert, effect, decide, escalate), and the
``=expr`` values steps compute when the rule fires (decision tables' outputs compute them too)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jinja2

from engine.errors import BatonError, Where
from engine.language.check import DECISION, Condition, Ty, analyse, check_value, every_error, suggest
from engine.language.expr import ExprError, parse
from engine.language.names import definition_values
from engine.language.sections.base import JINJA, LoaderBase
from engine.language.shape import ACTIONS, EFFECT, ESCALATE, ONE_ACTION, RULE, RULE_ENTRY, RULE_NAME, RULESET
from engine.language.source import plain
from engine.language.types import BUILTIN_TYPES, FactType, all_optional
from engine.model import ModelAction, Rule, Step, ToolAction

RULE_NAME_RE = re.compile(RULE_NAME + r"\Z")
_TYPE_CODES = {"unknown_fact_type", "unknown_field", "type_mismatch", "unknown_value", "unknown_function",
               "bad_regex", "bad_date", "ambiguous_fact",
               "unknown_name"}  # errors of one part: the other parts are checked too
FIELD_PATH = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*\Z")


class RulesLoader(LoaderBase):
    """rules: and their steps."""

    def load_rules(self, doc: Any, types: dict[str, FactType], models: dict[str, ModelAction],
                   tools: dict[str, ToolAction]) -> list[Rule]:
        if doc.get("rules") is None and "tables" in doc:
            return []
        if not self.require(doc, RULESET, "", self.pos.key(doc, "rules") if "rules" in doc else
                            Where(self.file, 1, 1), "rules"):
            return []
        rules_node = doc["rules"]
        rules: list[Rule] = []
        seen: dict[str, Where] = {}
        for i in range(len(rules_node)):
            rule = self.load_rule(rules_node, i, seen, types, models, tools)
            if rule is not None:
                rules.append(rule)
            # read: what only the YAML held goes now, and the next rules' objects take its place in memory
            # (freed all at once at the end, it left holes beside them: bench/rules_scale.py --memory)
            rules_node[i] = None
        return rules

    def load_rule(self, rules_node: Any, i: int, seen: dict[str, Where], types: dict[str, FactType],
                  models: dict[str, ModelAction], tools: dict[str, ToolAction]) -> Rule | None:
        """Rule ``i`` of ``rules:`` (None: it has errors, reported, or its name is taken)."""
        named = self.named_entry(rules_node, i, RULE_ENTRY, RULE)
        if named is None:
            return None
        node, where, name = named
        # a rule with one error is still checked to its end: an analyst gets every error in one run
        duplicate = name in seen
        if duplicate:
            self.error("duplicate_rule", f"rule '{name}' is defined twice (first at line {seen[name].line})",
                       self.pos.value(node, "name"), "rule names must be unique in a ruleset")
        else:
            seen[name] = self.pos.value(node, "name")
        self.declared.add(name)
        priority = self.take(node, RULE, "priority")
        condition = self.rule_condition(node, name, where, types)
        if not self.require(node, RULE, f"rule '{name}'", where, "then"):
            return None
        steps = self.load_steps(node, "then", types, models, tools, condition)
        final = self.take(node, RULE, "final")
        if final and not any(s.kind in ("decide", "escalate") for s in steps):
            self.error("bad_final", f"rule '{name}' is final but neither decides nor escalates: final: true "
                       "stops the decision with the rule's proposal", self.pos.key(node, "final"),
                       "add a decide: or escalate: to its then:, or remove final")
        if condition is None or duplicate:
            return None
        self.check_document_reads(node, name, steps, models, condition)
        rule = Rule(name, i, priority, str(node["when"]), condition, steps, where)
        rule.final = final is True
        return rule

    def rule_condition(self, node: Any, name: str, where: Where, types: dict[str, FactType]) -> Condition | None:
        """A rule's when:, parsed and checked (None: it has errors, reported)."""
        if not self.require(node, RULE, f"rule '{name}'", where, "when"):
            return None
        when = node["when"]
        start = self.pos.text_start(node, "when")
        self.current = f"rule '{name}'"
        self.vocab.uses.clear()
        try:
            tree = parse(str(when))
        except ExprError as e:
            self.expr_error(e, start, str(when))
            return None
        try:
            condition = analyse(tree, types)
        except ExprError as e:
            more = every_error(tree, types) if e.code in _TYPE_CODES else []
            for x in more if any(x.offset == e.offset for x in more) else [e]:
                self.expr_error(x, start, str(when))
            return None
        condition.definitions = definition_values(self.vocab, self.vocab.uses, types, condition)
        for branch in condition.branches:  # one mapping of each set of patterns, which most rules repeat
            branch.bindings = self.shared.setdefault(("bindings", *branch.bindings.items()), branch.bindings)
        return condition

    def check_document_reads(self, node: Any, name: str, steps: list[Step], models: dict[str, ModelAction],
                             condition: Condition) -> None:
        """A rule that calls a model reading a document must match a document in every branch."""
        for step in steps:
            action = models.get(step.action) if step.kind == "call" else None
            if action is not None and action.from_document and not all(
                    "document" in b.bindings.values() for b in condition.branches):
                self.error("needs_document", f"rule '{name}' calls '{step.action}', which reads a document, but "
                           "its condition matches no document", self.pos.value(node, "then"),
                           "add 'exists document' (or a condition on document.*) to its when:")

    def load_steps(self, parent: Any, key: str | int, types: dict[str, FactType], models: dict[str, ModelAction],
                   tools: dict[str, ToolAction], condition: Condition | None = None) -> list[Step]:
        node = parent[key]
        where = self.pos.value(parent, key)
        if isinstance(node, list):
            return [s for i in range(len(node)) for s in self.load_steps(node, i, types, models, tools, condition)]
        if isinstance(node, str):
            if node in models or node in tools:
                return [Step("call", action=node)]
            self.error("unknown_action", f"unknown action '{node}'", where,
                       suggest(node, [*models, *tools, "decide", "escalate", "assert"]) or
                       "declare it under models: or tools:")
            return []
        if not isinstance(node, dict) or len(node) != 1:  # one action a mapping: its one key says which
            self.error("bad_shape", ONE_ACTION.complaint(""), where, ONE_ACTION.hint)
            return []
        key, body = next(iter(node.items()))
        verb = str(key)
        vwhere = self.pos.value(node, verb)
        if verb in ACTIONS and self.entry(node, key, ACTIONS[verb], verb) is None:
            return []
        if verb in ("decide", "escalate"):
            return self.proposal_step(verb, body, vwhere, types, condition)
        if verb == "effect":
            return self.effect_step(body, vwhere, types, condition)
        if verb == "assert":
            return self.assert_steps(body, types, condition)
        self.error("unknown_action", f"unknown action '{verb}'", self.pos.key(node, verb),
                   suggest(verb, ["decide", "escalate", "assert", "effect"]))
        return []

    def proposal_step(self, verb: str, body: Any, vwhere: Where, types: dict[str, FactType],
                      condition: Condition | None) -> list[Step]:
        """decide: or escalate: {key: value, ...}."""
        payload = plain(body)
        computed = self.computed_values(body, (), types, condition, verb,
                                        skip=("expects", "sla", "identity") if verb == "escalate" else ())
        reason = payload.pop("reason", "")
        step = Step(verb, payload=payload, reason=str(reason), computed=computed)
        if verb == "escalate":
            self.escalation(step, body, payload, vwhere, types)
        return [step]

    def escalation(self, step: Step, body: Any, payload: dict[str, Any], vwhere: Where,
                   types: dict[str, FactType]) -> None:
        """An escalate step's queue, expected answer, SLA and reviewer identity (taken out of its payload)."""
        self.require(body, ESCALATE, "escalate", vwhere, "queue")
        expects = payload.pop("expects", "")
        if expects and (expects not in types or expects in BUILTIN_TYPES):
            self.error("unknown_fact_type", f"escalate: expects unknown fact type {expects!r}",
                       self.pos.value(body, "expects"), suggest(str(expects), [t for t in types
                                                                            if t not in BUILTIN_TYPES]))
        sla = payload.pop("sla", None)
        sla_s = self.take(body, ESCALATE, "sla") if sla is not None else None
        identity = payload.pop("identity", "")
        if identity:
            ft = types.get(str(expects)) if expects else None
            spec = ft.fields.get(str(identity)) if ft is not None else None
            if spec is None or spec.kind != "str":
                self.error("unknown_field", f"escalate: identity names the field of the expected answer that "
                           f"holds the reviewer's name; {str(expects) or 'the answer'} has no str field "
                           f"{identity!r}", self.pos.value(body, "identity"),
                           "write expects: approval and identity: approver")
        step.expects, step.sla_s, step.identity = str(expects or ""), sla_s, str(identity or "")
        if not expects and sla_s is not None:  # it waits for an answer that cannot be given
            self.warnings.append(BatonError(
                "unanswerable_escalation", f"escalate to {payload.get('queue')!r} waits {sla} for a "
                "reviewer's answer but has no expects:, so no answer can resume the decision: it can "
                "only time out", vwhere, "name the fact type of the reviewer's answer (expects: "
                "review), or leave out sla: to hand the case over for good"))

    def effect_step(self, body: Any, vwhere: Where, types: dict[str, FactType],
                    condition: Condition | None) -> list[Step]:
        """effect: {name: EFFECT, with: {...}}."""
        if not self.require(body, EFFECT, "", vwhere, "name"):
            return []
        self.check_keys(body, EFFECT)
        given = self.container(body, "with", EFFECT.keys["with"])
        if given is None:
            return []
        payload = plain(given)
        templates: dict[str, jinja2.Template] = {}
        computed = self.computed_values(given, (), types, condition, "effect.with")
        for key, value in payload.items():
            name = str(key)
            if isinstance(value, str) and "{{" in value and not value.startswith("=") and self.check_template(
                    value, given, name, types):
                templates[name] = JINJA.from_string(value)
        return [Step("effect", payload=payload, action=str(body["name"]), templates=templates,
                     computed=computed)]

    def assert_steps(self, body: Any, types: dict[str, FactType], condition: Condition | None) -> list[Step]:
        """assert: {fact_type: {field: value}, ...}: one step per fact."""
        steps = []
        for tname, fields in body.items():
            fwhere = self.pos.key(body, tname)
            ft = types.get(str(tname))
            if ft is None or ft.builtin:
                self.error("unknown_fact_type", f"assert: unknown fact type {str(tname)!r}", fwhere,
                           suggest(str(tname), [t for t in types if t not in BUILTIN_TYPES]))
                continue
            computed = self.computed_values(fields, (), types, condition, f"assert.{tname}", ft) \
                if isinstance(fields, dict) else []
            try:
                value = fact_with_computed(ft, plain(fields), str(tname))
            except BatonError as e:
                self.error(e.code, f"assert: {e.message}", fwhere)
                continue
            steps.append(Step("assert", payload=value, fact_type=str(tname), computed=computed))
        return steps

    def computed_values(self, body: Any, path: tuple[str, ...], types: dict[str, FactType],
                        condition: Condition | None, what: str, fact: FactType | None = None,
                        skip: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, Any]]:
        """The ``=expr`` values of a payload, checked over the facts the rule matched; a plain string that
        spells one of those facts' fields is ``ambiguous_value`` (it would be sent as that text)."""
        out: list[tuple[tuple[str, ...], str, Any]] = []
        if not isinstance(body, dict):
            return out
        for key, value in body.items():
            name = str(key)
            if name in skip:
                continue
            here = (*path, name)
            if isinstance(value, dict) and fact is None:
                out.extend(self.computed_values(value, here, types, condition, what))
                continue
            if isinstance(value, list) and any(isinstance(v, str) and v.startswith("=") for v in value):
                self.error("bad_value", f"{what}.{'.'.join(here)}: a computed value (=...) cannot stand inside a "
                           "list", self.pos.value(body, key), "compute each value in a field of its own")
                continue
            if not isinstance(value, str):
                continue
            start = self.pos.text_start(body, key)
            if condition is None:
                continue  # the condition has errors of its own: its values cannot be checked
            if value.startswith("="):
                try:
                    ev = computed_value(value, name, types, condition, fact)
                except ExprError as e:
                    self.expr_error(e, start, value, 1, f"{what}.{'.'.join(here)}: ")
                    continue
                out.append((here, value, ev))
            elif spells_a_field(value, types, condition):
                self.error("ambiguous_value", f"{what}.{'.'.join(here)}: '{value.strip()}' spells the field "
                           f"{value.strip()}, but it is written as text and would be sent as that text", start,
                           f"write ={value.strip()} for the field's value, or quote the text as an expression: "
                           f"='{value.strip()}'")
        return out


def _fits(ty: Ty, kind: str, item: str) -> bool:
    """May a value of type ``ty`` fill a field of ``kind``? (Ranges, enums and whole numbers are checked when
    the value is known: a value outside them fails the decision, naming the field.)"""
    if kind in ("number", "int"):
        return ty.kind == "number"
    if kind in ("str", "enum"):
        return ty.kind == "str"
    if kind == "list":
        return ty.kind == "list" and (not ty.item or ty.item == {"int": "number", "enum": "str"}.get(item, item))
    return ty.kind == kind


def _kind_name(kind: str) -> str:
    return {"int": "whole number", "enum": "one of its values (a string)", "str": "string"}.get(kind, kind)


def computed_value(value: str, field: str, types: Mapping[str, FactType], condition: Condition,
                   fact: FactType | None) -> Any:
    """The evaluator of ``=expr`` written for ``field``: checked over the facts every branch of the rule
    matches, and - for a field of an asserted ``fact`` - against the field's type. Raises ExprError."""
    matched = set.intersection(*(set(b.bindings) for b in condition.branches)) if condition.branches else set()
    ty, ev = check_value(parse(value[1:]), types, condition.aliases, matched)
    if fact is not None:
        spec = fact.fields.get(field)
        if spec is None:
            raise ExprError("unknown_field", f"{fact.name} has no field '{field}'", -1,
                            suggest(field, list(fact.fields)))
        if not _fits(ty, spec.kind, spec.items.kind if spec.items else ""):
            raise ExprError("type_mismatch", f"{fact.name}.{field} is a {_kind_name(spec.kind)}, but this value is a "
                            f"{ty}", 0)
    return ev


def spells_a_field(value: str, types: Mapping[str, FactType], condition: Condition) -> bool:
    """Does this literal text spell a field path the rule can see (``fee.code``, ``decision.date``)? Then it
    is ``ambiguous_value``: the analyst almost certainly meant ``=fee.code``."""
    m = FIELD_PATH.match(value)
    if not m:
        return False
    binding, fname = m.groups()
    aliases = condition.aliases
    if binding == DECISION and binding not in aliases:
        return fname in ("date", "time")
    if not any(binding in b.bindings for b in condition.branches):
        return False
    ft = types.get(aliases.get(binding, binding))
    return ft is not None and fname in ft.fields


def fact_with_computed(ft: FactType, literal: object, path: str) -> dict[str, object]:
    """An asserted fact whose ``=expr`` fields are computed when its rule fires: the literal fields are
    validated now, every required field must be given (literally or computed), and the computed ones keep
    their text until then. Raises BatonError (the validator's, or ``missing_field``)."""
    if not isinstance(literal, Mapping):
        return ft.validate(literal, path)
    names = {str(k) for k, v in literal.items() if isinstance(v, str) and v.startswith("=")}
    if not names:
        return ft.validate(literal, path)
    value = all_optional(ft).validate({k: v for k, v in literal.items() if k not in names}, path)
    missing = [n for n, spec in ft.fields.items() if not spec.optional and n not in value and n not in names]
    if missing:
        raise BatonError("missing_field", f"{ft.name}.{missing[0]}: missing field of {ft.name}")
    value.update({k: literal[k] for k in names if k in ft.fields})
    return value
