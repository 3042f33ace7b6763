"""Group commit: one writer thread takes every decision waiting to be stored and writes them in one
transaction, then acknowledges each. Nothing is acknowledged before its transaction commits; a failed
batch is retried one decision at a time, so one bad record fails alone."""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from typing import Any

from adapters.store.sql import Pending, Saved, SqlStore

MAX_BATCH = 256


class GroupWriter:
    def __init__(self, store: SqlStore, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[tuple[Pending, Future[Saved]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="baton-store-writer", daemon=True)
        self.thread.start()
        self.batches = 0
        self.written = 0

    def submit(self, record: dict[str, Any], caller: str = "", idempotency_key: str | None = None) -> Future[Saved]:
        future: Future[Saved] = Future()
        self.queue.put((Pending(record, caller, idempotency_key), future))
        return future

    async def save(self, record: dict[str, Any], caller: str = "", idempotency_key: str | None = None) -> Saved:
        return await asyncio.wrap_future(self.submit(record, caller, idempotency_key))

    def close(self) -> None:
        """Write everything already submitted, then stop."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
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
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Pending, Future[Saved]]]) -> None:
        try:
            results = self.store.save_batch([p for p, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for item in batch:  # one at a time: a bad record (or a lost race) fails alone
                self._write([item])
            return
        self.batches += 1
        self.written += len(batch)
        for (_, future), saved in zip(batch, results, strict=True):
            future.set_result(saved)
