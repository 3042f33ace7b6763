"""Impact of a candidate ruleset over stored decisions: what `baton impact`, the `Impact` RPC, the
console's impact preview and shadow reports all compute — one what-if per stored decision, with its
stored documents, recorded answers only."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.store.sql import SqlStore
from engine.documents import Document
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.replay import WhatIf, what_if


def outcome_label(summary: Mapping[str, Any] | None) -> str:
    return str((summary or {}).get("outcome") or "error")


def decision_label(summary: Mapping[str, Any] | None, outcome: str = "") -> str:
    """``decided route=senior`` / ``escalated queue=review`` / ``no_decision``: what an analyst compares."""
    if not isinstance(summary, Mapping) or not summary:
        return outcome or "error"
    decision = summary.get("decision") or {}
    values = " ".join(f"{k}={v}" for k, v in sorted(decision.items())) if isinstance(decision, Mapping) else ""
    return f"{summary.get('outcome', outcome)} {values}".strip()


@dataclass(slots=True)
class Impact:
    results: list[WhatIf] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        return len(self.results)

    @property
    def changed(self) -> list[WhatIf]:
        return [w for w in self.results if w.changed]

    @property
    def unanswered(self) -> int:
        return sum(1 for w in self.results if w.unanswered)

    def moves(self, label: Callable[[Mapping[str, Any] | None], str] = outcome_label, examples: int = 5
              ) -> list[tuple[str, str, int, list[str]]]:
        """(from, to, count, example decision ids), most common first."""
        counts: Counter[tuple[str, str]] = Counter()
        seen: dict[tuple[str, str], list[str]] = {}
        for w in self.changed:
            key = (label(w.old), label(w.new) if w.new else f"error: {w.error}")
            counts[key] += 1
            if len(seen.setdefault(key, [])) < examples:
                seen[key].append(w.decision_id)
        return [(a, b, n, seen[(a, b)]) for (a, b), n in counts.most_common()]


FETCH = 100  # stored decisions read per query (one thread hop each, not two per decision)


async def impact_steps(store: SqlStore, engine: Engine, ids: list[str], impact: Impact, every: int = 25
                       ) -> AsyncIterator[tuple[int, int]]:
    """Fill ``impact`` with a what-if per stored decision; (done, total) every ``every`` and at the end."""
    for start in range(0, len(ids), FETCH):
        chunk = ids[start:start + FETCH]
        records, documents = await asyncio.to_thread(_read, store, chunk)
        for n, record in enumerate(records, start + 1):
            if record is not None:
                docs = [documents[str(ref["id"])] for ref in record.get("documents") or ()
                        if str(ref["id"]) in documents]
                impact.results.append(await what_if(engine, record, documents=docs))
            if n % every == 0 or n == len(ids):
                yield n, len(ids)
    if not ids:
        yield 0, 0


def _read(store: SqlStore, ids: list[str]) -> tuple[list[DecisionRecord | None], dict[str, Document]]:
    records = store.get_many(ids)
    refs = [str(ref["id"]) for r in records if r is not None for ref in r.get("documents") or ()]
    return records, {d.id: d for d in store.documents(list(dict.fromkeys(refs)))}
