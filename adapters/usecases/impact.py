"""Impact of a candidate ruleset over stored decisions: what `baton impact`, the `Impact` RPC, the
console's impact preview and shadow reports all compute — one what-if per stored decision, with its
stored documents, recorded answers only."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import sys
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

from adapters.infra.store.sql import SqlStore
from adapters.ports import Store
from engine.documents import Document
from engine.errors import BatonError
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.replay import Divergence, WhatIf, replay, what_if

R = TypeVar("R")


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


async def impact_steps(store: Store, engine: Engine, ids: list[str], impact: Impact, every: int = 25
                       ) -> AsyncIterator[tuple[int, int]]:
    """Fill ``impact`` with a what-if per stored decision; (done, total) every ``every`` and at the end."""
    for start in range(0, len(ids), FETCH):
        chunk = ids[start:start + FETCH]
        records, documents = await asyncio.to_thread(_read, store, chunk)
        for n, record in enumerate(records, start + 1):
            if record is not None:
                impact.results.append(await what_if(engine, record, documents=_documents_of(record, documents)))
            if n % every == 0 or n == len(ids):
                yield n, len(ids)
    if not ids:
        yield 0, 0


def _read(store: Store, ids: list[str]) -> tuple[list[DecisionRecord | None], dict[str, Document]]:
    records = store.get_many(ids)
    refs = [str(ref["id"]) for r in records if r is not None for ref in r.get("documents") or ()]
    return records, {d.id: d for d in store.documents(list(dict.fromkeys(refs)))}


def _documents_of(record: DecisionRecord, documents: Mapping[str, Document]) -> list[Document]:
    return [documents[str(ref["id"])] for ref in record.get("documents") or () if str(ref["id"]) in documents]


# Backtests on every core: the history split across worker processes, chunks handed out in order and their
# results gathered in order, so N processes give exactly what one does. Where the platform can fork, the workers
# are forked from this process once it has imported Baton and compiled the candidate (shared copy-on-write), its
# store's connections closed first so that no worker inherits one; each worker opens its own. Elsewhere they are
# spawned and each imports and compiles for itself. `--part K/N` splits a history across machines instead.

CHUNK = 250  # decisions a worker takes at a time: small enough to balance, large enough to keep reads batched


def parse_part(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) as (K, N); ValueError with what is wrong."""
    k, slash, n = text.partition("/")
    if not slash or not k.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"--part {text!r}: give K/N, e.g. 2/4 (the second of four parts)")
    part, parts = int(k), int(n)
    if not 1 <= part <= parts:
        raise ValueError(f"--part {text!r}: K must be from 1 to N")
    return part, parts


def part_of(ids: Sequence[str], part: int, parts: int) -> list[str]:
    """The ids in part ``part`` of ``parts``: decided by a hash of the id alone, so that machines that each list
    the history (in any order, with decisions stored between their lists) take disjoint parts whose union is
    all of it."""
    return [i for i in ids if zlib.crc32(i.encode()) % parts == part - 1]


def effective_jobs(jobs: int | None, n: int) -> int:
    """Processes worth starting for ``n`` decisions: ``jobs`` (default: the machine's cores), no more than there
    are chunks; 1 means in this process."""
    wanted = jobs if jobs is not None else os.cpu_count() or 1
    return max(1, min(wanted, -(-n // CHUNK)))


_WORKER: dict[str, Any] = {}  # in a worker process: its store, and the candidate engine or the engines by version


def start_method() -> str:
    """How worker processes start: ``fork`` where the platform has it safely (Linux), else ``spawn``."""
    return "fork" if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods() else "spawn"


def _init(url: str, candidate: Engine | str | None) -> None:
    _WORKER["store"] = SqlStore(url, migrate=False)
    _WORKER["engines"] = {}
    # one event loop for the worker's life, not one (with its reader thread) per chunk; a worker reads on its
    # own thread, as it has nothing else to do meanwhile
    _WORKER["loop"] = asyncio.new_event_loop()
    if isinstance(candidate, Engine):  # forked: compiled by the parent
        _WORKER["candidate"] = candidate
    elif candidate is not None:
        from adapters.infra.rulesets import load_file

        _WORKER["candidate"] = Engine(load_file(Path(candidate)))


# Results cross back as plain tuples of their fields and are rebuilt in the parent: pickling a slotted dataclass
# costs twice what its tuple does, and the parent's share of the work is taken from the workers' cores.
_WHAT_IF = attrgetter(*(f.name for f in fields(WhatIf)))


def _impact_chunk(ids: list[str]) -> list[tuple[Any, ...]]:
    engine: Engine = _WORKER["candidate"]
    records, documents = _read(_WORKER["store"], ids)

    async def go() -> list[WhatIf]:
        return [await what_if(engine, record, documents=_documents_of(record, documents))
                for record in records if record is not None]

    return [_WHAT_IF(w) for w in _WORKER["loop"].run_until_complete(go())]


@dataclass(slots=True)
class Replayed:
    """One stored decision replayed: identical, or its first divergence (or why it could not be replayed)."""

    decision_id: str
    identical: bool
    divergence: Divergence | None = None
    error: str = ""


def _engine_for(store: Store, engines: dict[str, Engine], version: str) -> Engine:
    if version not in engines:
        found = store.ruleset_source(version)
        if found is None:
            raise LookupError(f"ruleset version {version[:12]} is not in the store")
        engines[version] = Engine(load_ruleset(found[1], f"{found[0]}@{version[:12]}"))
    return engines[version]


async def replay_many(store: Store, engines: dict[str, Engine], ids: list[str]) -> list[Replayed]:
    """Replay each stored decision on its own version, with its documents (`baton replay --all`)."""
    out: list[Replayed] = []
    for start in range(0, len(ids), FETCH):
        chunk = ids[start:start + FETCH]
        records, documents = await asyncio.to_thread(_read, store, chunk)
        out.extend(await _replay_records(store, engines, chunk, records, documents))
    return out


async def _replay_records(store: Store, engines: dict[str, Engine], ids: list[str],
                          records: list[DecisionRecord | None], documents: Mapping[str, Document]) -> list[Replayed]:
    out: list[Replayed] = []
    for decision_id, record in zip(ids, records, strict=True):
        if record is None:
            out.append(Replayed(decision_id, False, error="not in the store"))
            continue
        try:
            engine = _engine_for(store, engines, str(record["version"]))
        except (LookupError, BatonError) as e:
            out.append(Replayed(decision_id, False, error=str(e)))
            continue
        result = await replay(engine, record, _documents_of(record, documents))
        out.append(Replayed(decision_id, result.identical, result.divergence))
    return out


_REPLAYED = attrgetter(*(f.name for f in fields(Replayed)))


def _replay_chunk(ids: list[str]) -> list[tuple[Any, ...]]:
    store: Store = _WORKER["store"]
    records, documents = _read(store, ids)
    replayed = _WORKER["loop"].run_until_complete(_replay_records(store, _WORKER["engines"], ids, records, documents))
    return [_REPLAYED(r) for r in replayed]


def _run_jobs(work: Callable[[list[str]], list[tuple[Any, ...]]], rebuild: Callable[..., R], store: SqlStore,
              candidate: Engine | str | None, ids: list[str], jobs: int, progress: Callable[[int], None]) -> list[R]:
    chunks = [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]
    method = start_method()
    if method == "fork":
        # a pooled connection shared by two processes breaks both (SQLite's locks, PostgreSQL's protocol stream):
        # close this process's (its pools reopen on their next use); the workers open their own by URL
        store.engine.dispose()
        store.writer.dispose()
    elif isinstance(candidate, Engine):
        raise ValueError("spawned workers compile the candidate themselves: give its path")
    # the objects this process holds now, out of the cyclic collector's sight while the workers live: a collection
    # (here or in a worker) writes to every object it visits, and every page written after the fork is copied;
    # frozen, the heap is shared, not copied page by page, and each worker's collections visit its own objects only
    freeze = method == "fork" and not gc.get_freeze_count()  # not if the caller froze its own: theirs to undo
    if freeze:
        gc.freeze()
    out: list[R] = []
    done = 0
    try:
        with mp.get_context(method).Pool(jobs, initializer=_init, initargs=(store.url, candidate)) as pool:
            for chunk, rows in zip(chunks, pool.imap(work, chunks), strict=True):
                out.extend(rebuild(*row) for row in rows)
                done += len(chunk)
                progress(done)
    finally:
        if freeze:
            gc.unfreeze()
    return out


def impact_jobs(store: SqlStore, candidate: Engine, source: Path, ids: list[str], jobs: int,
                progress: Callable[[int], None]) -> list[WhatIf]:
    """The candidate (compiled as ``candidate``, from the file ``source``) over the stored decisions ``ids`` in
    ``jobs`` processes: the results in the order of ``ids``, as :func:`impact_steps` in one process gives them.
    Forked workers share ``candidate``; spawned ones compile ``source``."""
    return _run_jobs(_impact_chunk, WhatIf, store, candidate if start_method() == "fork" else str(source), ids,
                     jobs, progress)


def replay_jobs(store: SqlStore, ids: list[str], jobs: int, progress: Callable[[int], None]) -> list[Replayed]:
    """:func:`replay_many` over ``ids`` in ``jobs`` processes, in the order of ``ids``."""
    return _run_jobs(_replay_chunk, Replayed, store, None, ids, jobs, progress)
