"""One decision's routing of facts to the shards of an indexed ruleset (engine/compile.py cuts them):
which engine facts each Baton fact becomes, and when."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

from engine.language.check import FactIndex

if TYPE_CHECKING:
    from engine.compile import CompiledRuleset

EngineFact = dict[str, object]
Fact = tuple[int, str, Mapping[str, object]]


class Router:
    """One decision's routing of facts to shards: which engine facts each Baton fact becomes.

    A rule can only activate once each of its patterns has a fact to fill it, so a fact reaches a rule's
    pattern only from the moment the rule is *complete*; until then its candidates wait here. The
    moment a rule completes, the facts that waited are asserted into its shard as copies carrying only
    that rule's tokens, in sequence order before the fact that completed it - so the engine sees that
    rule's facts in the order Baton asserted them, and each Baton fact carries a rule's token on exactly
    one engine fact. A free pattern (no literal test: ``exists claim``, a join's unconstrained side)
    therefore costs nothing until the rest of its rule can match."""

    __slots__ = ("c", "complete", "free_live", "pending", "seen", "types", "waiting", "wm")

    def __init__(self, compiled: CompiledRuleset, wm: FactIndex) -> None:
        self.c, self.wm = compiled, wm
        if not compiled.indexed:  # facts go by type alone: route() keeps no state, so none is made
            return
        self.seen: set[int] = set()  # constrained slots that have a candidate
        self.pending: dict[int, list[int]] = {}  # constrained slot of an incomplete rule -> candidate seqs
        self.complete: set[int] = set()
        self.free_live: dict[str, list[int]] = {}  # type -> free slots of complete rules
        self.waiting: dict[str, list[int]] = {}  # type -> rules that wait only for a first fact of it
        self.types: set[str] = set()

    def route(self, facts: Iterable[Fact]) -> dict[int, list[EngineFact]]:
        out: dict[int, list[EngineFact]] = {}
        c = self.c
        if not c.indexed:
            for seq, type_name, values in facts:
                fact = c.encode(seq, type_name, values)
                for shard in c.type_shards.get(type_name, ()):
                    out.setdefault(shard, []).append(dict(fact))
            return out
        index, wm, slot_rule, complete = c.index, self.wm, c.slot_rule, self.complete
        for seq, type_name, values in facts:
            extra: list[int] = [s for s in c.static_checked.get(type_name, ()) if index.holds(s, values, wm)]
            if self.free_live:
                extra.extend(s for s in self.free_live.get(type_name, ()) if index.holds(s, values, wm))
            later: list[tuple[int, int]] = []
            for slot in index.candidates(type_name, values, wm):
                rule = slot_rule[slot]
                if rule in complete:
                    extra.append(slot)
                    continue
                self.pending.setdefault(slot, []).append(seq)
                if slot not in self.seen:
                    self.seen.add(slot)
                    self._try(rule, seq, extra, later)
            if type_name not in self.types:
                self.types.add(type_name)
                for rule in self.waiting.pop(type_name, ()) if self.waiting else ():
                    if rule not in complete:
                        self._try(rule, seq, extra, later)
            for q, group in groupby(sorted(later), key=itemgetter(0)):  # waiting facts first, oldest first
                self._emit(out, q, wm.type_of(q), [s for _, s in group], ())
            static = c.static_tokens.get(type_name, ())
            if extra:
                self._emit(out, seq, type_name, extra, static)
            elif static:
                base = c.encode(seq, type_name, values)
                for shard, tokens in static:
                    out.setdefault(shard, []).append({**base, **tokens})
        return out

    def _emit(self, out: dict[int, list[EngineFact]], seq: int, type_name: str, slots: list[int],
              static: Sequence[tuple[int, dict[str, int]]]) -> None:
        tokens = self.c.tokens
        base = self.c.encode(seq, type_name, self.wm.values(seq))
        per: dict[int, EngineFact] = {shard: {**base, **toks} for shard, toks in static}
        # Tokens go in descending slot order: the core pushes the nodes a fact passes on a stack, so the
        # last token written is joined first - and a rule's first pattern must be joined first, as in one
        # network where its patterns hang from one node in written order (self-joins: claim as a, claim as b).
        # A rule's patterns are all always-routed (``static``) or none are, so only the order within
        # each group matters.
        for slot in sorted(set(slots), reverse=True):
            shard, token = tokens[slot]
            fact = per.get(shard)
            if fact is None:
                fact = per[shard] = dict(base)
            fact[token] = 1
        for shard in sorted(per):
            out.setdefault(shard, []).append(per[shard])

    def _try(self, rule: int, seq: int, direct: list[int], later: list[tuple[int, int]]) -> None:
        """Complete ``rule`` if each of its patterns now has a fact; its waiting candidates are released."""
        constrained, free = self.c.rule_slots[rule]
        if any(s not in self.seen for s in constrained):
            return
        for s in free:
            type_name = self.c.index.slots[s].type_name
            if type_name not in self.types:  # no fact of it routed yet
                self.waiting.setdefault(type_name, []).append(rule)
                return
        self.complete.add(rule)
        for s in constrained:
            for q in self.pending.pop(s, ()):
                if q == seq:
                    direct.append(s)
                else:
                    later.append((q, s))
        index, wm = self.c.index, self.wm
        for s in free:
            type_name = index.slots[s].type_name
            self.free_live.setdefault(type_name, []).append(s)
            for q in wm.of_type(type_name):
                if q > seq:
                    break  # asserted later in this batch: routed when its turn comes
                if index.holds(s, wm.values(q), wm):
                    if q == seq:
                        direct.append(s)
                    else:
                        later.append((q, s))
