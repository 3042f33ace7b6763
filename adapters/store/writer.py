"""Group commit: one writer thread takes every decision waiting to be stored and writes them in one
transaction, then acknowledges each. Nothing is acknowledged before its transaction commits; a failed
batch is retried one decision at a time, so one bad record fails alone.

Records are serialised (canonical JSON, hashed text, call rows, search text) on the writer thread, before
the chain head is locked, not by the caller: a caller on a busy event loop then hands over a record and
nothing else, and the writer, holding the GIL for the whole batch's Python work at once, no longer waits
for the loop thread to let go of it between the serialising and the inserting (bench/store.py: stored/s).

Acknowledgements to asyncio callers are delivered with one wake-up of their event loop per batch,
not one per decision (a thread-safe wake-up costs a pipe write)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from adapters.documents import Incoming
from adapters.metrics import STORE_WRITE
from adapters.store.sql import Pending, Resolution, Saved, SqlStore
from adapters.system import name_thread
from engine.record import DecisionRecord

MAX_BATCH = 256
WRITER_THREAD = "baton-writer"  # its OS-level name: `top -H` and `baton bench` show the writer's CPU apart

Ack = Callable[[Saved | None, BaseException | None], None]


@dataclass(slots=True)
class _Item:
    """A decision handed to the writer, not yet serialised."""

    record: DecisionRecord
    caller: str
    idempotency_key: str | None
    resolves: Resolution | None
    documents: Sequence[Incoming]
    future: Future[Saved] | asyncio.Future[Saved]


class GroupWriter:
    def __init__(self, store: SqlStore, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=WRITER_THREAD, daemon=True)
        self.thread.start()
        self.batches = 0
        self.written = 0

    def submit(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None) -> Future[Saved]:
        """For threads: a concurrent Future resolved once the decision is committed."""
        future: Future[Saved] = Future()
        self.queue.put(_Item(record, caller, idempotency_key, None, (), future))
        return future

    async def save(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None,
                   resolves: Resolution | None = None, documents: Sequence[Incoming] = ()) -> Saved:
        """For coroutines: returns once the decision (and the documents it read) is committed."""
        future: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self.queue.put(_Item(record, caller, idempotency_key, resolves, documents, future))
        return await future

    def private(self, record: DecisionRecord) -> Mapping[str, Collection[str]] | None:
        """The PII fields of the record's ruleset version (search leaves them out), when the service told the
        store how to find them."""
        lookup = self.store.private
        return lookup(str(record.get("version", ""))) if lookup is not None else None

    def close(self) -> None:
        """Write everything already submitted, then stop."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        name_thread(WRITER_THREAD)
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            outcomes, ready = self._serialise(batch)
            if ready:
                outcomes.extend(self._write(ready))
            self._deliver(outcomes)
            if stop:
                return

    def _serialise(self, batch: list[_Item]) -> tuple[list[tuple[Any, Saved | None, BaseException | None]],
                                                       list[tuple[Pending, Any]]]:
        """Each record as it will be stored; one that cannot be serialised fails alone."""
        failed: list[tuple[Any, Saved | None, BaseException | None]] = []
        ready: list[tuple[Pending, Any]] = []
        for item in batch:
            try:
                pending = Pending(item.record, item.caller, item.idempotency_key, item.resolves, item.documents,
                                  self.private(item.record))
            except Exception as error:
                failed.append((item.future, None, error))
                continue
            ready.append((pending, item.future))
        return failed, ready

    def _write(self, batch: list[tuple[Pending, Any]]) -> list[tuple[Any, Saved | None, BaseException | None]]:
        try:
            with STORE_WRITE.time():
                results = self.store.save_batch([p for p, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                return [(batch[0][1], None, error)]
            # one at a time: a bad record (or a lost race) fails alone
            return [outcome for item in batch for outcome in self._write([item])]
        self.batches += 1
        self.written += len(batch)
        return [(future, saved, None) for (_, future), saved in zip(batch, results, strict=True)]

    @staticmethod
    def _deliver(outcomes: list[tuple[Any, Saved | None, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Saved | None, BaseException | None]]] = {}
        for future, saved, error in outcomes:
            if isinstance(future, asyncio.Future):
                by_loop.setdefault(future.get_loop(), []).append((future, saved, error))
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(saved)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _resolve(items: list[tuple[Any, Saved | None, BaseException | None]]) -> None:
    for future, saved, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(saved)
