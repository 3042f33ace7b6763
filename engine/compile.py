"""Ruleset -> what durable-rules runs exactly, and the rest as guards.

Each branch of each rule becomes one engine rule. Its patterns carry only the fact type and the
string/boolean equality tests the engine runs exactly; the whole branch condition is a guard checked
when the activation fires. No user data reaches the C core: facts are encoded as their type, a unique
sequence number, and - for pushed-down fields - a token from the ruleset's own literals (or a sentinel).
Engine rule, pattern and field names are Baton's own (``r3``, ``p0``, ``f2``), never a user's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from engine.language.check import Guard
from engine.model import Rule, Ruleset

PRI_OFFSET = 1001  # priority p in [-1000, 1000] -> pri 1001 - p in [1, 2001]; pri 0 is the start rule
START_RULE = "start"
START_TYPE = "__start"
OTHER = "~"  # a pushed-down string field whose value is none of the ruleset's literals


@dataclass(frozen=True, slots=True)
class EngineRule:
    name: str  # the engine's name: r0, r1, ...
    rule: Rule
    branch: int
    patterns: tuple[tuple[str, str], ...]  # (pattern name p0.., binding)
    guard: Guard


@dataclass(slots=True)
class CompiledRuleset:
    ruleset: Ruleset
    engine_json: str
    rules: dict[str, EngineRule]
    fields: dict[str, dict[str, tuple[str, frozenset[object]]]]  # type -> field -> (engine field, literals)

    def encode(self, sid: str, seq: int, type_name: str, values: Mapping[str, object]) -> dict[str, object]:
        out: dict[str, object] = {"sid": sid, "bt": type_name, "bn": seq}
        for fname, (efield, literals) in self.fields.get(type_name, {}).items():
            if fname in values:
                v = values[fname]
                if isinstance(v, bool) or v in literals:
                    out[efield] = v
                else:
                    out[efield] = OTHER
        return out


def compile_ruleset(ruleset: Ruleset) -> CompiledRuleset:
    fields: dict[str, dict[str, tuple[str, set[object]]]] = {}
    counter = 0
    for rule in ruleset.rules:
        for branch in rule.condition.branches:
            for binding, fname, value in branch.pushdown:
                tname = branch.bindings[binding]
                per_type = fields.setdefault(tname, {})
                if fname not in per_type:
                    per_type[fname] = (f"f{counter}", set())
                    counter += 1
                per_type[fname][1].add(value)

    definition: dict[str, object] = {START_RULE: {"pri": 0, "all": [{"m": {"bt": START_TYPE}}]}}
    engine_rules: dict[str, EngineRule] = {}
    for rule in ruleset.rules:
        for b, branch in enumerate(rule.condition.branches):
            ename = f"r{len(engine_rules)}"
            patterns = []
            pattern_json = []
            for k, (binding, tname) in enumerate(branch.bindings.items()):
                tests: list[dict[str, object]] = [{"bt": tname}]
                for pb, fname, value in branch.pushdown:
                    if pb == binding:
                        tests.append({fields[tname][fname][0]: value})
                pname = f"p{k}"
                patterns.append((pname, binding))
                pattern_json.append({pname: tests[0] if len(tests) == 1 else {"$and": tests}})
            definition[ename] = {"pri": PRI_OFFSET - rule.priority, "all": pattern_json}
            engine_rules[ename] = EngineRule(ename, rule, b, tuple(patterns), branch.guard)
    frozen = {t: {f: (e, frozenset(lits)) for f, (e, lits) in per.items()} for t, per in fields.items()}
    return CompiledRuleset(ruleset, json.dumps(definition, separators=(",", ":")), engine_rules, frozen)
