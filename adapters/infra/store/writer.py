"""Group commit: one writer thread takes every decision waiting to be stored and writes them in one
transaction, then acknowledges each. Nothing is acknowledged before its transaction commits; a failed
batch is retried one decision at a time, so one bad record fails alone.

Records are serialised (canonical JSON, hashed text, call rows, search text) on the writer thread, before
the chain head is locked, not by the caller: a caller on a busy event loop then hands over a record and
nothing else, and the writer, holding the GIL for the whole batch's Python work at once, no longer waits
for the loop thread to let go of it between the serialising and the inserting (bench/store.py: stored/s).

Acknowledgements to asyncio callers are delivered with one wake-up of their event loop per batch,
not one per decision (a thread-safe wake-up costs a pipe write). A DecideBatch hands its decisions over
a window at a time, as one group (``save_many``): one queue entry, one transaction with whatever else is
waiting, and one future resolved with every decision's outcome."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from adapters.infra.documents import Incoming
from adapters.infra.system import name_thread
from adapters.ports import DecisionLog, Pending, Resolution, Saved
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
    future: Future[Saved] | asyncio.Future[Saved] | None  # None: one of a group's
    group: _Group | None = None
    slot: int = 0  # its place in the group's outcomes


@dataclass(slots=True)
class _Group:
    """Decisions handed over together (``save_many``): acknowledged together, each with its own outcome."""

    items: list[_Item]
    future: asyncio.Future[list[Saved | BaseException]]
    outcomes: list[Saved | BaseException | None]
    left: int


Outcome = tuple[Any, Saved | None, BaseException | None]  # (future or _Item of a group, saved, error)


class GroupWriter:
    def __init__(self, store: DecisionLog, max_batch: int = MAX_BATCH,
                 private: Callable[[str], Mapping[str, Collection[str]] | None] | None = None,
                 timed: Callable[[float], None] | None = None) -> None:
        self.store = store
        self.timed = timed  # each batch write's seconds (the service's baton_store_write_seconds)
        # version -> {fact type: pii fields} (the registry's private_fields), so search never indexes personal data
        self.private_fields = private
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[_Item | list[_Item] | _Group | None] = queue.SimpleQueue()
        self._held: dict[asyncio.AbstractEventLoop, list[_Item]] = {}  # saved in this pass of each loop
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
        """For coroutines: returns once the decision (and the documents it read) is committed. Decisions saved
        in one pass of the event loop are handed over together at its end (one queue entry, one wake-up of
        the writer thread), not one at a time: woken by the first, the writer took the GIL from the loop
        thread while the others were still being decided, and wrote them in a transaction each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Saved] = loop.create_future()
        item = _Item(record, caller, idempotency_key, resolves, documents, future)
        held = self._held.get(loop)
        if held is None:
            held = self._held[loop] = []
            loop.call_soon(self._hand_over, loop)
        held.append(item)
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        held = self._held.pop(loop, None)
        if held:
            self.queue.put(held)

    def save_many(self, entries: Sequence[tuple[DecisionRecord, str, str | None, Sequence[Incoming]]]
                  ) -> asyncio.Future[list[Saved | BaseException]]:
        """For coroutines: (record, caller, idempotency_key, documents) each, stored as ``save`` stores one
        (a record that fails, fails alone) but handed over now, as one entry, and acknowledged once for them
        all: the future resolves to each one's Saved or error, in order, once they are committed."""
        future: asyncio.Future[list[Saved | BaseException]] = asyncio.get_running_loop().create_future()
        if not entries:
            future.set_result([])
            return future
        group = _Group([], future, [None] * len(entries), len(entries))
        group.items = [_Item(record, caller, key, None, documents, None, group, i)
                       for i, (record, caller, key, documents) in enumerate(entries)]
        self.queue.put(group)
        return future

    def private(self, record: DecisionRecord) -> Mapping[str, Collection[str]] | None:
        """The PII fields of the record's ruleset version (search leaves them out), when the writer was told how
        to find them."""
        lookup = self.private_fields
        return lookup(str(record.get("version", ""))) if lookup is not None else None

    def close(self) -> None:
        """Write everything already submitted, then stop."""
        for loop in list(self._held):  # saved in a pass of a loop that has not ended yet
            held = self._held.pop(loop, None)
            if held:
                self.queue.put(held)
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        name_thread(WRITER_THREAD)
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = list(first.items) if isinstance(first, _Group) else list(first) if isinstance(first, list) \
                else [first]
            stop = False
            while len(batch) < self.max_batch:  # a group is never split: a batch may pass max_batch by one
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, _Group):
                    batch.extend(item.items)
                elif isinstance(item, list):
                    batch.extend(item)
                else:
                    batch.append(item)
            outcomes, ready = self._serialise(batch)
            if ready:
                outcomes.extend(self._write(ready))
            self._deliver(outcomes)
            if stop:
                return

    def _serialise(self, batch: list[_Item]) -> tuple[list[Outcome], list[tuple[Pending, Any]]]:
        """Each record as it will be stored; one that cannot be serialised fails alone."""
        failed: list[Outcome] = []
        ready: list[tuple[Pending, Any]] = []
        for item in batch:
            try:
                pending = Pending(item.record, item.caller, item.idempotency_key, item.resolves, item.documents,
                                  self.private(item.record))
            except Exception as error:
                failed.append((item.future or item, None, error))
                continue
            ready.append((pending, item.future or item))
        return failed, ready

    def _write(self, batch: list[tuple[Pending, Any]]) -> list[Outcome]:
        try:
            started = time.perf_counter()
            results = self.store.save_batch([p for p, _ in batch])
            if self.timed is not None:
                self.timed(time.perf_counter() - started)
        except Exception as error:
            if len(batch) == 1:
                return [(batch[0][1], None, error)]
            # one at a time: a bad record (or a lost race) fails alone
            return [outcome for item in batch for outcome in self._write([item])]
        self.batches += 1
        self.written += len(batch)
        return [(future, saved, None) for (_, future), saved in zip(batch, results, strict=True)]

    @staticmethod
    def _deliver(outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        for future, saved, error in outcomes:
            if isinstance(future, _Item):  # one of a group's: the group is answered once all of its are
                group = future.group
                assert group is not None
                group.outcomes[future.slot] = error if error is not None else saved
                group.left -= 1
                if group.left == 0:
                    by_loop.setdefault(group.future.get_loop(), []).append((group.future, group.outcomes, None))
            elif isinstance(future, asyncio.Future):
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


def _resolve(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, saved, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(saved)
