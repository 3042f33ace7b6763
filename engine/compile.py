"""Ruleset -> engine networks small enough for durable-rules, with Baton's index routing facts into them.

Each branch of each rule becomes one engine rule; each of its patterns is a *slot* of the literal index
(engine/index.py). The engine rules, in agenda order (priority, then the rule written first, then the
branch), are cut into *shards*: consecutive runs of at most ``SHARD_RULES`` engine rules and
``SHARD_SLOTS`` patterns, each its own durable-rules ruleset. A pattern tests the fact type and one
token, ``k<slot>``, that the index sets on a fact exactly when the slot's literal tests hold; the rest
of the branch condition is the guard, checked when the activation fires.

Why shards, and why this size (durable-rules 2.0.28, measured; see tests/engine/test_durable_rules.py):
- a session costs time for every rule of its ruleset (state is allocated per rule node), so one network
  of 10,000 rules would cost milliseconds per decision even when no rule can match;
- per network: 256 rules per alpha node (error 108), 512 equality children per node (the core hangs),
  4,096 rules (error 106), 64 alpha nodes a fact passes at once (error 303), 255 fact properties.
A shard of 32 rules and 48 patterns stays under every one of them whatever the ruleset, which
``check_fits`` proves for each shard at compile time. Since shards follow agenda order, the first shard
with a pending activation holds the next one to fire (engine/driver.py walks them that way), so the
engine keeps owning priority, rule order, recency and forward chaining.

No user data reaches the C core: an engine fact is its type, a sequence number and its tokens. Engine
rule, pattern and token names are Baton's own (``r3``, ``p0``, ``k12``), never a user's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine.errors import BatonError
from engine.index import LiteralIndex, LiteralTest, literal_test
from engine.language.check import FactIndex, Guard, compile_guard
from engine.language.expr import Bind, Exists, Node
from engine.model import Rule, Ruleset

PRI_OFFSET = 1001  # priority p in [-1000, 1000] -> pri 1001 - p in [1, 2001]; pri 0 is the start rule
START_RULE = "start"
START_TYPE = "__start"
SHARD_RULES = 32
SHARD_SLOTS = 48
# durable-rules 2.0.28 (rules.h, events.c, state.h): what one network may hold
ENGINE_MAX_RULES = 4096
ENGINE_BETAS_PER_NODE = 256
ENGINE_CHILDREN_PER_NODE = 512
ENGINE_STACK = 64
ENGINE_PROPERTIES = 255


@dataclass(frozen=True, slots=True)
class EngineRule:
    name: str  # the engine's name: r0, r1, ...
    rule: Rule
    branch: int
    patterns: tuple[tuple[str, str], ...]  # (pattern name p0.., binding)
    guard: Guard
    shard: int


@dataclass(slots=True)
class Shard:
    number: int
    engine_json: str
    rules: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)


@dataclass(slots=True)
class CompiledRuleset:
    ruleset: Ruleset
    shards: list[Shard]
    rules: dict[str, EngineRule]
    index: LiteralIndex
    tokens: list[tuple[int, str]]  # slot -> (shard, token)
    indexed: bool = True  # False: patterns test the fact type only (the guard-only reference, in tests)

    def route(self, type_name: str, values: Mapping[str, object], wm: FactIndex) -> list[tuple[int, list[str]]]:
        """The shards this fact goes to, in shard order, with the tokens it carries in each."""
        tokens = self.tokens
        out: list[tuple[int, list[str]]] = []
        for slot in self.index.candidates(type_name, values, wm):
            shard, token = tokens[slot]
            if not out or out[-1][0] != shard:
                out.append((shard, []))
            if self.indexed:
                out[-1][1].append(token)
        return out


def _kind_of(rs: Ruleset, aliases: Mapping[str, str]) -> Callable[[str, str], str]:
    def kind(binding: str, fname: str) -> str:
        spec = rs.types[aliases.get(binding, binding)].fields[fname]
        return "list" if spec.kind == "list" else spec.scalar_kind

    return kind


def split_branch(parts: list[Node], bindings: Mapping[str, str], kind_of: Callable[[str, str], str],
                 indexed: bool = True) -> tuple[dict[str, list[LiteralTest]], list[Node]]:
    """A branch's parts as literal tests per binding, and the rest (the guard)."""
    tests: dict[str, list[LiteralTest]] = {b: [] for b in bindings}
    rest: list[Node] = []
    for part in parts:
        if isinstance(part, Bind) or (isinstance(part, Exists) and not part.negated):
            continue
        found = literal_test(part, kind_of) if indexed else None
        if found is not None and found[0] in tests:
            tests[found[0]].append(found[1])
        else:
            rest.append(part)
    return tests, rest


def check_fits(shard: Shard, slot_types: list[str], rule_count: int) -> None:
    """Raise ``engine_limit`` if this shard's network could reach a durable-rules limit (never expected:
    shards are cut to fit; this is the proof, run on every compile)."""
    per_type: dict[str, int] = {}
    for slot in shard.slots:
        per_type[slot_types[slot]] = per_type.get(slot_types[slot], 0) + 1
    widest = max(per_type.values(), default=0)
    if (rule_count + 1 > ENGINE_MAX_RULES or widest >= ENGINE_CHILDREN_PER_NODE or widest + 2 >= ENGINE_STACK
            or widest + 3 >= ENGINE_PROPERTIES or len(per_type) + 1 >= ENGINE_CHILDREN_PER_NODE):
        raise BatonError("engine_limit", f"engine network {shard.number} of this ruleset does not fit "
                         f"durable-rules' limits ({rule_count} rules, {widest} patterns on one fact type)",
                         hint="report this: the compiler should have cut the network smaller")


def compile_ruleset(ruleset: Ruleset, indexed: bool = True, shard_rules: int = SHARD_RULES,
                    shard_slots: int = SHARD_SLOTS) -> CompiledRuleset:
    """``indexed=False`` with a single large shard is the guard-only reference the tests compare with."""
    ordered = sorted(((rule, b, branch) for rule in ruleset.rules for b, branch in enumerate(rule.condition.branches)),
                     key=lambda x: (-x[0].priority, x[0].index, x[1]))
    index = LiteralIndex()
    tokens: list[tuple[int, str]] = []
    slot_types: list[str] = []
    shards: list[Shard] = []
    definitions: list[dict[str, object]] = []
    rules: dict[str, EngineRule] = {}
    for rule, b, branch in ordered:
        kind_of = _kind_of(ruleset, rule.condition.aliases)
        tests, rest = split_branch(branch.parts, branch.bindings, kind_of, indexed)
        if not shards or len(shards[-1].rules) >= shard_rules or len(shards[-1].slots) + len(branch.bindings) \
                > shard_slots:
            shards.append(Shard(len(shards), ""))
            definitions.append({START_RULE: {"pri": 0, "all": [{"m": {"bt": START_TYPE}}]}})
        shard = shards[-1]
        ename = f"r{len(rules)}"
        patterns = []
        pattern_json = []
        for k, (binding, tname) in enumerate(branch.bindings.items()):
            slot = index.add(tname, binding, tests[binding])
            token = f"k{len(shard.slots)}"
            tokens.append((shard.number, token))
            slot_types.append(tname)
            shard.slots.append(slot)
            pname = f"p{k}"
            patterns.append((pname, binding))
            test: dict[str, object] = {"$and": [{"bt": tname}, {token: 1}]} if indexed else {"bt": tname}
            pattern_json.append({pname: test})
        definitions[-1][ename] = {"pri": PRI_OFFSET - rule.priority, "all": pattern_json}
        shard.rules.append(ename)
        rules[ename] = EngineRule(ename, rule, b, tuple(patterns), compile_guard(rest, rule.condition.aliases),
                                  shard.number)
    index.freeze()
    for shard, definition in zip(shards, definitions, strict=True):
        if indexed:
            check_fits(shard, slot_types, len(shard.rules))
        shard.engine_json = json.dumps(definition, separators=(",", ":"))
    if not shards:
        shards.append(Shard(0, json.dumps({START_RULE: {"pri": 0, "all": [{"m": {"bt": START_TYPE}}]}})))
    return CompiledRuleset(ruleset, shards, rules, index, tokens, indexed)
