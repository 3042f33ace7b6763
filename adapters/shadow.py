"""Shadow runs: every live decision of a ruleset is evaluated again against attached candidate versions.

A shadow evaluation never touches the live decision: it runs after the live decision is stored and
answered, on the live decision's recorded model and tool answers only (a call the candidate makes
that the live decision did not is *unanswered*, never made live), and its effects are never
delivered (only stored decisions have outbox rows). What differs is stored in ``shadow_results``
and summarised by ``baton shadow report`` / ``ShadowReport``. Work is bounded: when the queue is
full, shadow evaluations are dropped and counted (``baton_shadow_dropped_total``), never queued
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from adapters import metrics
from adapters.decisions import what_if_stored
from adapters.impact import decision_label
from adapters.registry import RulesetRegistry
from adapters.store.governance import ShadowInfo
from adapters.store.sql import SqlStore
from engine.errors import BatonError
from engine.model import Ruleset
from engine.record import DecisionRecord

log = logging.getLogger("baton.shadow")


@dataclass(slots=True)
class ShadowReport:
    ruleset: str
    version: str
    decisions: int = 0
    changed: int = 0
    unanswered: int = 0
    changes: list[tuple[str, str, int, list[str]]] = field(default_factory=list)  # from, to, count, examples


class Shadows:
    def __init__(self, store: SqlStore, registry: RulesetRegistry, queue_size: int = 1000,
                 refresh_s: float = 2.0) -> None:
        self.store = store
        self.registry = registry
        self.queue_size = queue_size
        self.refresh_s = refresh_s
        self.by_ruleset: dict[str, list[str]] = {}
        self.refreshed = 0.0
        self.background = False  # as RulesetRegistry.background: a server task refreshes, offer() never queries
        self.lock = threading.Lock()
        self.queue: asyncio.Queue[DecisionRecord] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- attaching ---------------------------------------------------------------------------------
    def attach(self, rs: Ruleset, by: str) -> ShadowInfo:
        info = self.store.attach_shadow(rs, by, f"shadow-{uuid.uuid4().hex[:16]}", time.time())
        self.refresh(force=True)
        return info

    def detach(self, version: str) -> bool:
        done = self.store.detach_shadow(version, time.time())
        self.refresh(force=True)
        return done

    def attached(self) -> list[ShadowInfo]:
        return self.store.attached_shadows()

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (self.background or now - self.refreshed < self.refresh_s):
            return
        by: dict[str, list[str]] = {}
        for info in self.attached():
            by.setdefault(info.ruleset, []).append(info.version)
        with self.lock:
            self.by_ruleset, self.refreshed = by, now

    # -- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)
        self.task = asyncio.get_running_loop().create_task(self._work(), name="baton-shadow")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def offer(self, record: DecisionRecord) -> None:
        """Queue a stored live decision for its ruleset's shadows (if any); never blocks."""
        self.refresh()
        if self.queue is None or not self.by_ruleset.get(str(record["ruleset"])):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            metrics.SHADOW_DROPPED.inc()

    async def drain(self) -> None:
        """Wait until everything queued has been evaluated (tests, shutdown)."""
        if self.queue is not None:
            await self.queue.join()

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            record = await self.queue.get()
            try:
                for version in list(self.by_ruleset.get(str(record["ruleset"]), ())):
                    if version != record["version"]:
                        await self.evaluate(record, version)
            except Exception:
                log.exception("shadow evaluation of %s failed", record.get("decision_id"))
            finally:
                self.queue.task_done()

    async def evaluate(self, record: DecisionRecord, version: str) -> bool:
        """Evaluate one live decision against one shadow version and store the result; True if it differs."""
        engine = await asyncio.to_thread(self.registry.engine_for, version)
        w = await what_if_stored(self.store, engine, record)  # no live ports: recorded answers only
        detail = {"live": w.old, "shadow": w.new, "fired_only_live": w.fired_only_before,
                  "fired_only_shadow": w.fired_only_after, "unanswered": w.unanswered, "error": w.error}
        row = {"decision_id": str(record["decision_id"]), "shadow_version": version,
               "ruleset": str(record["ruleset"]), "live_version": str(record["version"]),
               "live_outcome": str(record["outcome"]), "shadow_outcome": str(w.new.get("outcome", "error")),
               "changed": w.changed, "unanswered": len(w.unanswered),
               "detail": json.dumps(detail, sort_keys=True, default=str), "created_at": time.time()}
        await asyncio.to_thread(self.store.save_shadow_result, row)
        metrics.SHADOW_EVALUATIONS.labels(changed=str(w.changed).lower()).inc()
        return w.changed

    # -- reporting ---------------------------------------------------------------------------------
    def report(self, version: str, since: float | None = None, examples: int = 5) -> ShadowReport:
        rows = self.store.shadow_results(version, since)
        ruleset = rows[0][0] if rows else ""
        if not rows:
            found = self.store.ruleset_source(version)
            if found is None:
                raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
            ruleset = found[0]
        out = ShadowReport(ruleset, version, decisions=len(rows))
        counts: Counter[tuple[str, str]] = Counter()
        seen: dict[tuple[str, str], list[str]] = {}
        for _, decision_id, live, shadow, changed, unanswered, detail in rows:
            out.unanswered += bool(unanswered)
            if not changed:
                continue
            out.changed += 1
            d = json.loads(detail)
            key = (decision_label(d.get("live"), live), decision_label(d.get("shadow"), shadow))
            counts[key] += 1
            if len(seen.setdefault(key, [])) < examples:
                seen[key].append(decision_id)
        out.changes = [(a, b, n, seen[(a, b)]) for (a, b), n in counts.most_common()]
        return out
