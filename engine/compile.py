"""Ruleset -> engine networks small enough for durable-rules, with Baton's index routing facts into them.

A ruleset of up to ``GUARD_ONLY_RULES`` engine rules runs as before: one network whose patterns test the
fact type and the string/boolean equalities the rules name (pushed down as the rules' own literals);
everything else in a condition is the guard, checked when the activation fires. Routing a fact through
the index costs more than the guards it would save at that size. One thing is added there: a rule of one
pattern has its other literal tests (ranges, ``in``, ``contains``, ``not flag``) evaluated by Baton when
a fact is encoded and carried as one flag the pattern tests (``_Cut.flag``), so a fact activates only the
rules it can fire - an activation refused by its guard cost a core activation, a Python pass of the loop
and the guard (bench/engine_speed.py).

Any larger ruleset is indexed. Each branch of each rule becomes one engine rule; each of its patterns
is a *slot* of the literal index (engine/index.py). The engine rules, in agenda order (priority, then
the rule written first, then the branch), are cut into *shards*: consecutive runs of at most
``SHARD_RULES`` engine rules and ``SHARD_SLOTS`` patterns, each its own durable-rules ruleset. A
pattern tests the fact type, the same pushed-down equalities, and one token, ``k<slot>``, that the
router (``Router``) sets on a fact exactly when the slot's literal tests hold and its rule can match.

Why shards, and why this size (durable-rules 2.0.28, measured; see tests/engine/test_durable_rules.py):
- a session costs time for every rule of its ruleset (its state is allocated per rule node, per
  pattern), so one network of a large ruleset would cost every decision that time even when no rule can
  match, while a session on a shard's few rules costs little (bench/rules_scale.py measures both);
- per network: 256 rules per alpha node (error 108), 512 equality children per node (the core hangs),
  4,096 rules (error 106), 64 alpha nodes a fact passes at once (error 303), 255 fact properties.
A shard of 8 rules and 16 patterns stays under every one of them whatever the ruleset, which
``check_fits`` proves for each shard at compile time. Since shards follow agenda order, the first shard
with a pending activation holds the next one to fire (engine/driver.py walks them that way), so the
engine keeps owning priority, rule order, recency and forward chaining.

Replays: the indexed engine must fire exactly what the single network did, ties included, for every
ruleset the single network could run (tests/engine/test_index.py compares them). That is why the
indexed patterns keep the pushed-down equalities, and why tokens are written in descending slot order:
the core joins a fact's patterns in the order it reaches their nodes.

No user data reaches the C core: an engine fact is its type, a sequence number and its tokens. Engine
rule, pattern and token names are Baton's own (``r3``, ``p0``, ``k12``), never a user's.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from engine.errors import BatonError
from engine.index import LiteralIndex, LiteralTest, literal_test
from engine.language.check import Branch, FactIndex, Guard, always, compile_guard
from engine.language.expr import Bind, Exists, Node
from engine.language.source import collector_paused
from engine.language.trees import shape
from engine.model import Rule, Ruleset
from engine.router import EngineFact, Router

PRI_OFFSET = 1001  # priority p in [-1000, 1000] -> pri 1001 - p in [1, 2001]; pri 0 is the start rule
START_RULE = "start"
START_TYPE = "__start"
OTHER = "~"  # a pushed-down string field whose value is none of the ruleset's literals
SHARD_RULES = 8
SHARD_SLOTS = 16
GUARD_ONLY_RULES = 32  # measured on the example rulesets: below this the index costs more than it saves
GUARD_ONLY_SLOTS = 64  # and far below 256 patterns of one type on the network's one node per type
MAX_FLAGS = 24  # flags and pushed fields of one fact type: each an alpha test a fact may pass (64 at most)
NO_FACTS = FactIndex()  # what a flag's check is given as working memory: tests of one fact never read it
# durable-rules 2.0.28 (rules.h, events.c, state.h): what one network may hold
ENGINE_MAX_RULES = 4096
ENGINE_CHILDREN_PER_NODE = 512
ENGINE_STACK = 64
ENGINE_PROPERTIES = 255
_T = TypeVar("_T")


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
    # its network's definition (``engine_json``) zlib-compressed, as a version keeps it for every shard until
    # the network is registered, and again after each eviction (engine/driver.py): a quarter of the JSON
    packed: bytes
    rules: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)

    @property
    def engine_json(self) -> str:
        return zlib.decompress(self.packed).decode()


def _packed(definition: dict[str, object]) -> bytes:
    return zlib.compress(json.dumps(definition, separators=(",", ":")).encode())


@dataclass(slots=True)
class CompiledRuleset:
    ruleset: Ruleset
    shards: list[Shard]
    rules: dict[str, EngineRule]
    index: LiteralIndex
    tokens: list[tuple[int, str]]  # slot -> (shard, token)
    slot_rule: list[int]  # slot -> engine rule number
    rule_slots: list[tuple[tuple[int, ...], tuple[int, ...]]]  # engine rule -> (constrained, free) slots
    static_checked: dict[str, list[int]]  # type -> always-routed slots with a test to verify (!=, substring)
    static_tokens: dict[str, list[tuple[int, dict[str, int]]]]  # type -> [(shard, tokens)] of the others
    type_shards: dict[str, list[int]]  # type -> shards with a pattern of that type
    pushed: dict[str, tuple[tuple[str, str, frozenset[object]], ...]]  # guard-only: (field, engine field, values)
    indexed: bool = True  # False: patterns test the fact type only (the guard-only reference, in tests)
    layout: str = ""  # "" for the default cut; else a suffix that keeps other cuts' engine names apart
    # guard-only: type -> (engine field, binding, check) of each one-pattern rule whose literal tests the
    # network reads as a flag the fact carries (see ``_Cut.flag``)
    flags: dict[str, tuple[tuple[str, str, Guard], ...]] = field(default_factory=dict)

    def router(self, wm: FactIndex) -> Router:
        return Router(self, wm)

    def encode(self, seq: int, type_name: str, values: Mapping[str, object]) -> EngineFact:
        """A fact as the network sees it: type, sequence number and the pushed-down equality fields
        (the rule's literal, or a sentinel for any value no rule names). Tokens come after these."""
        fact: EngineFact = {"bt": type_name, "bn": seq}
        for fname, efield, literals in self.pushed.get(type_name, ()):
            if fname in values:
                v = values[fname]
                fact[efield] = v if isinstance(v, bool) or v in literals else OTHER
        flags = self.flags.get(type_name)
        if flags:
            for efield, binding, check in flags:
                if check({binding: values}, NO_FACTS):
                    fact[efield] = 1
        return fact


def _kind_of(rs: Ruleset, aliases: Mapping[str, str]) -> Callable[[str, str], str]:
    def kind(binding: str, fname: str) -> str:
        ft = rs.types.get(aliases.get(binding, binding))
        spec = ft.fields.get(fname) if ft is not None else None
        if spec is None:  # decision.date / decision.time: not a pattern's field
            return ""
        return "list" if spec.kind == "list" else spec.scalar_kind

    return kind


def split_branch(parts: Sequence[Node], bindings: Mapping[str, str], kind_of: Callable[[str, str], str],
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


def compile_ruleset(ruleset: Ruleset, indexed: bool | None = None, shard_rules: int = SHARD_RULES,
                    shard_slots: int = SHARD_SLOTS, pushdown: bool = True) -> CompiledRuleset:
    """``indexed=None`` chooses: a ruleset small enough for one network runs guard-only (patterns test the
    fact type; routing a fact costs more than the guards it would save), any other is indexed and cut
    into shards. ``indexed=False`` with one unbounded shard is the reference the tests compare with; it
    has no flags (``_Cut.flag``), which only the guard-only network chosen by default carries."""
    default = indexed is None and pushdown and (shard_rules, shard_slots) == (SHARD_RULES, SHARD_SLOTS)
    if default and isinstance(ruleset.compiled, CompiledRuleset):
        return ruleset.compiled
    with collector_paused():
        if indexed is None:
            branches = [b for r in ruleset.rules for b in r.condition.branches]
            indexed = len(branches) > GUARD_ONLY_RULES or sum(len(b.bindings) for b in branches) > GUARD_ONLY_SLOTS
            if not indexed:
                shard_rules, shard_slots = GUARD_ONLY_RULES, GUARD_ONLY_SLOTS
        # any cut but the default one gets engine names of its own (a process may hold several of a version)
        layout = "" if default else f"~{'i' if indexed else 'g'}{shard_rules}x{shard_slots}{'p' if pushdown else ''}"
        compiled = _compile(ruleset, indexed, shard_rules, shard_slots, pushdown, layout, default and not indexed)
    if default:
        ruleset.compiled = compiled
    return compiled


def _both(guard: Guard, then: Guard) -> Guard:
    if guard is always:
        return then
    return lambda env, wm: guard(env, wm) and then(env, wm)


SAFE_TOKEN = re.compile(r"[A-Za-z0-9 _.:/@+-]{1,64}")


def _pushable(test: LiteralTest) -> bool:
    """An equality the network can test itself: a boolean, or a short plain string."""
    if test.op == "is-true":
        return True
    return test.op == "==" and (isinstance(test.value, bool) or (isinstance(test.value, str)
                                                                   and SAFE_TOKEN.fullmatch(test.value) is not None))


Pushed = dict[str, dict[str, tuple[str, set[object]]]]  # type -> field -> (engine field, values)


def _compile(ruleset: Ruleset, indexed: bool, shard_rules: int, shard_slots: int, pushdown: bool,
             layout: str, flagged: bool = False) -> CompiledRuleset:
    ordered = sorted(((rule, b, branch) for rule in ruleset.rules for b, branch in enumerate(rule.condition.branches)),
                     key=lambda x: (-x[0].priority, x[0].index, x[1]))
    pushed = _pushed_equalities(ruleset, pushdown)
    cut = _Cut(indexed, shard_rules, shard_slots, pushed, pushdown, flagged)
    for rule, b, branch in ordered:
        cut.add(ruleset, rule, b, branch)
    cut.written()
    cut.index.freeze()
    if indexed:
        for shard in cut.shards:
            check_fits(shard, cut.slot_types, len(shard.rules))
    if not cut.shards:
        start = json.dumps({START_RULE: {"pri": 0, "all": [{"m": {"bt": START_TYPE}}]}})  # as written before: spaced
        cut.shards.append(Shard(0, zlib.compress(start.encode())))
    static_checked, static_tokens = _static_routes(cut.index, cut.tokens, cut.static_free)
    encoders = {t: tuple((f, e, frozenset(v)) for f, (e, v) in per.items()) for t, per in pushed.items()}
    flags = {t: tuple(per) for t, per in cut.flags.items()}
    return CompiledRuleset(ruleset, cut.shards, cut.rules, cut.index, cut.tokens, cut.slot_rule, cut.rule_slots,
                           static_checked, static_tokens, cut.type_shards, encoders, indexed, layout, flags)


def _pushed_equalities(ruleset: Ruleset, pushdown: bool) -> Pushed:
    """Equalities on strings and booleans are also tested in the network, as Baton always has: fields named
    f0, f1, ... in the order the ruleset first names them. Besides filtering in guard-only networks, they
    give the network the shape in which the core joins a fact's patterns in the order decisions stored by
    earlier versions were made in (ties between combinations of one rule, e.g. self-joins). Each branch's
    own equalities are read again as it is cut (``_equalities``): held for every rule through the compile,
    they left holes beside the version's objects when they went (bench/rules_scale.py --memory)."""
    pushed: Pushed = {}
    count = 0
    if not pushdown:
        return pushed
    for rule in ruleset.rules:
        kind_of = _kind_of(ruleset, rule.condition.aliases)
        for branch in rule.condition.branches:
            for binding, eqs in _equalities(split_branch(branch.parts, branch.bindings, kind_of)[0]).items():
                for t in eqs:
                    per_type = pushed.setdefault(branch.bindings[binding], {})
                    if t.field not in per_type:
                        per_type[t.field] = (f"f{count}", set())
                        count += 1
                    per_type[t.field][1].add(t.value)
    return pushed


def _equalities(tests: Mapping[str, list[LiteralTest]]) -> dict[str, list[LiteralTest]]:
    """A branch's literal tests (per binding) that the network tests as well."""
    return {k: [t for t in v if _pushable(t)] for k, v in tests.items()}


@dataclass(slots=True)
class _Cut:
    """The engine rules in agenda order as they are cut into shards: each branch's patterns become slots
    of the literal index, each slot a token of its shard."""

    indexed: bool
    shard_rules: int
    shard_slots: int
    pushed: Pushed
    pushdown: bool
    flagged: bool = False  # one-pattern rules' literal tests as flags (guard-only networks only)
    flags: dict[str, list[tuple[str, str, Guard]]] = field(default_factory=dict)
    index: LiteralIndex = field(default_factory=LiteralIndex)
    tokens: list[tuple[int, str]] = field(default_factory=list)
    slot_types: list[str] = field(default_factory=list)
    shards: list[Shard] = field(default_factory=list)
    definition: dict[str, object] = field(default_factory=dict)  # the last shard's network, until it is written
    shared: dict[object, object] = field(default_factory=dict)  # one copy of each equal pattern list and name
    guards: dict[object, Guard] = field(default_factory=dict)  # what the guard's parts compute -> its guard
    rules: dict[str, EngineRule] = field(default_factory=dict)
    slot_rule: list[int] = field(default_factory=list)
    rule_slots: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    static_free: dict[str, list[int]] = field(default_factory=dict)
    type_shards: dict[str, list[int]] = field(default_factory=dict)

    def add(self, ruleset: Ruleset, rule: Rule, b: int, branch: Branch) -> None:
        """One branch of one rule as the next engine rule, in the last shard or a new one if it is full."""
        kind_of = _kind_of(ruleset, rule.condition.aliases)
        tests, rest = split_branch(branch.parts, branch.bindings, kind_of, self.indexed)
        equalities: dict[str, list[LiteralTest]] = {}
        if self.pushdown:
            equalities = _equalities(tests if self.indexed else split_branch(branch.parts, branch.bindings, kind_of)[0])
        patterned = {**branch.bindings, **branch.epochs}  # aggregates: a marker pattern per aggregated type
        flag = self.flag(len(self.rules), rule, branch, kind_of, equalities) \
            if self.flagged and len(patterned) == 1 else None
        if self.flagged:  # what the network tests exactly (flags, pushed equalities) the guard need not test again
            tested = [t.node for eqs in equalities.values() for t in eqs]
            tested += [t.node for t in flag[1]] if flag is not None else []
            rest = [p for p in rest if not any(p is n for n in tested)]
        if not self.shards or len(self.shards[-1].rules) >= self.shard_rules or len(self.shards[-1].slots) \
                + len(patterned) > self.shard_slots:
            self.written()
            self.shards.append(Shard(len(self.shards), b""))
            self.definition = {START_RULE: {"pri": 0, "all": [{"m": {"bt": START_TYPE}}]}}
        shard = self.shards[-1]
        number = len(self.rules)
        ename = f"r{number}"
        patterns, pattern_json, own = self.patterns(shard, number, patterned, tests, equalities,
                                                    flag[0] if flag is not None else None)
        self.rule_slots.append((tuple(s for s in own if not self.index.is_free(s)),
                                tuple(s for s in own if self.index.is_free(s))))
        if not self.rule_slots[-1][0]:  # no literal test anywhere: every fact of its types goes to it, as in Rete
            for slot in own:
                self.static_free.setdefault(self.index.slots[slot].type_name, []).append(slot)
        self.definition[ename] = {"pri": PRI_OFFSET - rule.priority, "all": pattern_json}
        shard.rules.append(ename)
        guard = self.guard(rest, rule.condition.aliases)
        if rule.precedence is not None:
            guard = _both(guard, rule.precedence)
        self.rules[ename] = EngineRule(ename, rule, b, self.share(tuple(patterns)), guard, shard.number)

    def written(self) -> None:
        """The last shard's network as the JSON it is registered from, as soon as the shard is full: its
        dictionaries go then, and the next shard's objects take their place in memory."""
        if self.shards and not self.shards[-1].packed:
            self.shards[-1].packed = _packed(self.definition)
        self.definition = {}

    def guard(self, parts: list[Node], aliases: Mapping[str, str]) -> Guard:
        """``compile_guard``'s, one for every set of parts that computes the same (``shape``): most engine
        rules of a large ruleset test what others test, on other literals or at other places."""
        shapes = tuple(shape(p) for p in parts)
        if any(s is None for s in shapes):
            return compile_guard(parts, aliases)
        key = (shapes, tuple(sorted(aliases.items())))
        guard = self.guards.get(key)
        if guard is None:
            guard = self.guards[key] = compile_guard(parts, aliases)
        return guard

    def share(self, value: _T) -> _T:
        """One copy of each equal name and pattern list, which most engine rules repeat (p0, k3, (("p0", "txn"),))."""
        return self.shared.setdefault(value, value)  # type: ignore[return-value]

    def flag(self, number: int, rule: Rule, branch: Branch, kind_of: Callable[[str, str], str],
             equalities_of: Mapping[str, list[LiteralTest]]) -> tuple[str, list[LiteralTest]] | None:
        """A guard-only network's one-pattern rule whose literal tests (other than the equalities the
        network already tests) the fact carries as one flag, ``g<rule>``, set by ``encode`` exactly when
        they all hold, computed by the same closures as the guard: the network then activates the rule
        only where it fires, instead of every fact of its type activating it for the guard to refuse -
        the cost of a rule that cannot match is what Rete saves. Tests of one fact alone depend on
        nothing else, so when they are checked does not change what fires. None when there is nothing to
        flag, or the type already carries ``MAX_FLAGS`` (a bound well inside the network's limits)."""
        binding, tname = next(iter(branch.bindings.items()))
        tests = split_branch(branch.parts, branch.bindings, kind_of)[0].get(binding, [])
        equalities = equalities_of.get(binding, [])
        flagged = [t for t in tests if not any(t.node is e.node for e in equalities)]
        if not flagged or len(self.flags.get(tname, ())) + len(self.pushed.get(tname, {})) >= MAX_FLAGS:
            return None
        efield = f"g{number}"
        self.flags.setdefault(tname, []).append(
            (efield, binding, self.guard([t.node for t in flagged], rule.condition.aliases)))
        return efield, flagged

    def patterns(self, shard: Shard, number: int, patterned: Mapping[str, str],
                 tests: Mapping[str, list[LiteralTest]], eqs_of: Mapping[str, list[LiteralTest]],
                 flag: str | None = None) -> tuple[list[tuple[str, str]], list[dict[str, object]], list[int]]:
        """The engine rule's patterns (name, binding), their network JSON, and the index slots they fill;
        ``flag``: the one pattern's flag (``flag``), tested after its equalities."""
        patterns: list[tuple[str, str]] = []
        pattern_json: list[dict[str, object]] = []
        own: list[int] = []
        for k, (binding, tname) in enumerate(patterned.items()):
            slot = self.index.add(tname, binding, tests.get(binding, []))
            own.append(slot)
            self.slot_rule.append(number)
            if shard.number not in self.type_shards.setdefault(tname, []):
                self.type_shards[tname].append(shard.number)
            token = self.share(f"k{len(shard.slots)}")
            self.tokens.append((shard.number, token))
            self.slot_types.append(tname)
            shard.slots.append(slot)
            pname = self.share(f"p{k}")
            patterns.append(self.share((pname, binding)))
            conjunction: list[dict[str, object]] = [{"bt": tname}]
            conjunction.extend({self.pushed[tname][t.field][0]: t.value} for t in eqs_of.get(binding, []))
            if self.indexed:
                conjunction.append({token: 1})
            if flag is not None:
                conjunction.append({flag: 1})
            pattern_json.append({pname: conjunction[0] if len(conjunction) == 1 else {"$and": conjunction}})
        return patterns, pattern_json, own


def _static_routes(index: LiteralIndex, tokens: list[tuple[int, str]], static_free: dict[str, list[int]]
                   ) -> tuple[dict[str, list[int]], dict[str, list[tuple[int, dict[str, int]]]]]:
    """Per fact type, the slots every fact of it goes to: those with a check to verify, and the others'
    tokens grouped by shard."""
    static_checked: dict[str, list[int]] = {}
    static_tokens: dict[str, list[tuple[int, dict[str, int]]]] = {}
    for tname, slots in static_free.items():
        for slot in sorted(slots, reverse=True):  # descending, as Router._emit writes tokens
            if index.slots[slot].checks:
                static_checked.setdefault(tname, []).append(slot)
                continue
            number, token = tokens[slot]
            per = static_tokens.setdefault(tname, [])
            if not per or per[-1][0] != number:
                per.append((number, {}))
            per[-1][1][token] = 1
        static_tokens.get(tname, []).sort(key=lambda x: x[0])
    return static_checked, static_tokens
