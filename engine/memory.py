"""A decision's working memory: every fact by sequence number, identical facts kept once."""

from __future__ import annotations

from engine.decision import Values
from engine.language.check import FactIndex
from engine.language.dates import from_timestamp


class WorkingMemory(FactIndex):
    """Every fact of one decision, by sequence number (1-based). Facts only grow; identical ones are one."""

    __slots__ = ("by_type", "facts", "keys", "last", "listy", "now", "started_at", "store")

    def __init__(self, now: tuple[str, str] | None = None, started_at: float = 0.0,
                 listy: frozenset[str] | None = None) -> None:
        self.facts: list[tuple[str, Values]] = []
        self.keys: set[tuple[str, tuple[tuple[str, object], ...]]] = set()
        self.by_type: dict[str, list[int]] = {}
        self.last: dict[str, Values] = {}  # type -> its latest fact (aggregate markers left out)
        self.listy = listy  # the types whose facts may hold lists (None: not known, find out per fact)
        self.now = now  # None: the date and time of ``started_at``, worked out when a rule first asks
        self.started_at = started_at
        self.store: dict[object, object] = {}

    def memo(self) -> dict[object, object]:
        return self.store

    def moment(self) -> tuple[str, str]:
        now = self.now
        if now is None:
            try:
                now = from_timestamp(self.started_at)
            except (OverflowError, OSError, ValueError):
                now = from_timestamp(0.0)
            self.now = now
        return now

    def add(self, type_name: str, values: Values) -> int:
        """The new fact's sequence number, or 0 when an identical fact is already known."""
        # validated values come in declaration order with lists only of scalars: a cheap exact key
        # (the items as they are when no value is a list, else lists as tuples)
        listy = self.listy
        if listy is not None and type_name in listy:
            key: tuple[str, tuple[tuple[str, object], ...]] = \
                (type_name, tuple((k, tuple(v) if type(v) is list else v) for k, v in values.items()))
            known = key in self.keys
        else:
            key = (type_name, tuple(values.items()))
            try:
                known = key in self.keys
            except TypeError:  # a list among the values (hashing says so)
                key = (type_name, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))
                known = key in self.keys
        if known:
            return 0
        self.keys.add(key)
        facts = self.facts
        facts.append((type_name, values))
        seq = len(facts)
        seqs = self.by_type.get(type_name)
        if seqs is None:
            self.by_type[type_name] = [seq]
        else:
            seqs.append(seq)
        self.last[type_name] = values
        return seq

    def add_marker(self, type_name: str, values: Values) -> int:
        """An aggregate's marker fact (see ``_Run.epoch_facts``): added as ``add`` does, but it is no
        fact a template or a call reads, so it is never the latest of its type."""
        seq = self.add(type_name, values)
        if seq:
            del self.last[type_name]
        return seq

    def has_type(self, type_name: str) -> bool:
        return type_name in self.by_type

    def get(self, seq: int) -> tuple[str, Values]:
        return self.facts[seq - 1]

    def of_type(self, type_name: str) -> list[int]:
        return self.by_type.get(type_name, [])

    def values(self, seq: int) -> Values:
        return self.facts[seq - 1][1]

    def type_of(self, seq: int) -> str:
        return self.facts[seq - 1][0]

    def latest(self) -> dict[str, Values]:
        return dict(self.last)
