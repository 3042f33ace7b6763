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
import queue
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from adapters.infra import metrics
from adapters.infra.candidates import CandidateCompiler, Item
from adapters.ports import ShadowInfo, Store, VersionSource
from adapters.usecases.commands import Refused
from adapters.usecases.decisions import what_if_stored
from adapters.usecases.impact import decision_label
from adapters.usecases.registry import RulesetRegistry
from engine.codes import Code
from engine.documents import Document
from engine.errors import BatonError
from engine.model import Ruleset
from engine.record import DecisionRecord
from engine.replay import WhatIf

log = logging.getLogger("baton.shadow")


@dataclass(slots=True)
class ShadowReport:
    ruleset: str
    version: str
    decisions: int = 0
    changed: int = 0
    unanswered: int = 0
    changes: list[tuple[str, str, int, list[str]]] = field(default_factory=list)  # from, to, count, examples


class _Child:
    """One shadow version evaluating this worker's live decisions in a bounded child process of its own
    (adapters/infra/candidates.py): an attached shadow is a candidate nobody has approved, so it is compiled and
    run there, never in the worker. Decisions go in a line each; results come back in the same order."""

    def __init__(self, compiler: CandidateCompiler, version: str, name: str, source: str) -> None:
        self.items: queue.Queue[Item | None] = queue.Queue()
        self.waiting: deque[asyncio.Future[WhatIf]] = deque()
        loop = asyncio.get_running_loop()

        def each(w: WhatIf) -> None:  # on the run's thread
            loop.call_soon_threadsafe(self._answer, w)

        self.task = loop.create_task(compiler.awhat_if(
            source, f"{name}@{version[:12]}", lambda _: (0, iter(self.items.get, None)), each=each))
        self.task.add_done_callback(self._ended)

    def _answer(self, w: WhatIf) -> None:
        if self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(w)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        error = task.exception() if not task.cancelled() else None
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error or BatonError("shadow_ended", "the shadow's process ended"))

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def evaluate(self, record: DecisionRecord, documents: list[Document]) -> WhatIf:
        if not self.alive:
            raise BatonError("shadow_ended", "the shadow's process ended")
        future: asyncio.Future[WhatIf] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.items.put((record, documents))
        return await future

    def close(self) -> None:
        self.items.put(None)  # its input closes: the child ends once it has answered what it has


class Shadows:
    def __init__(self, store: Store, registry: RulesetRegistry, queue_size: int = 1000,
                 refresh_s: float = 2.0, candidates: CandidateCompiler | None = None,
                 retry_s: float = 60.0, background: bool = False) -> None:
        self.store = store
        self.registry = registry
        # with a compiler, each shadow version runs in a bounded child (the service); without, in this process
        # (the CLI's own attach/report commands, which evaluate nothing)
        self.candidates = candidates
        self.children: dict[str, _Child] = {}
        self.failed: dict[str, float] = {}  # version -> when its child last failed (not restarted for retry_s)
        self.retry_s = retry_s
        self.queue_size = queue_size
        self.refresh_s = refresh_s
        self.by_ruleset: dict[str, list[str]] = {}
        self.refreshed = 0.0
        self.background = background  # as RulesetRegistry.background: a server task refreshes, offer() never queries
        self.lock = threading.Lock()
        self.queue: asyncio.Queue[DecisionRecord] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- attaching ---------------------------------------------------------------------------------
    def attach(self, rs: Ruleset | VersionSource, by: str) -> ShadowInfo:
        info = self.store.attach_shadow(rs, by, f"shadow-{uuid.uuid4().hex[:16]}", time.time())
        self.refresh(force=True)
        return info

    async def attach_named(self, by: str, *, version: str = "", source: str = "",
                           ruleset: Ruleset | None = None) -> ShadowInfo:
        """Attach a stored ``version`` (hash or prefix), a candidate's ``source`` (compiled by the bounded child
        first) or a ``ruleset`` compiled by the caller (`baton shadow attach FILE`) as a shadow of its ruleset,
        which must be live."""
        checked: Ruleset | VersionSource | None = ruleset
        if checked is None and source:  # compiled in a bounded child, as every source a caller sends
            compiler = self.candidates if self.candidates is not None else CandidateCompiler()
            checked = (await compiler.acheck(source, "shadow.yaml")).stored(source)
        elif checked is None and not version:
            raise Refused(Code.BAD_REQUEST, "version or source is required", "version", "required")

        def attach() -> ShadowInfo:
            rs: Ruleset | VersionSource
            if checked is not None:
                rs = checked
            else:
                resolved = self.registry.resolve(version)
                found = self.store.ruleset_source(resolved)
                if found is None:
                    raise BatonError(Code.UNKNOWN_VERSION.value, f"no ruleset version {resolved[:12]}")
                rs = VersionSource(found[0], resolved, found[1], "", 0, 0)  # stored already: only named here
            if not self.registry.active_version(rs.name):
                raise BatonError(Code.UNKNOWN_RULESET.value, f"no live ruleset named {rs.name!r} to shadow")
            return self.attach(rs, by)

        return await asyncio.to_thread(attach)

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
        for child in self.children.values():
            child.close()
            child.task.cancel()
        self.children.clear()
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
            self._prune()
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
        if self.candidates is None:
            engine = await asyncio.to_thread(self.registry.engine_for, version)
            w = await what_if_stored(self.store, engine, record)  # no live ports: recorded answers only
        else:
            child = await self._child(version)
            if child is None:
                metrics.SHADOW_DROPPED.inc()
                return False
            try:
                w = await child.evaluate(record, await asyncio.to_thread(self.store.documents_of, record))
            except BatonError as e:  # over its bounds, or it ended: logged, counted, retried after retry_s
                log.error("shadow %s could not evaluate %s: %s", version[:12], record.get("decision_id"), e)
                self.failed[version] = time.monotonic()
                self.children.pop(version, None)
                metrics.SHADOW_DROPPED.inc()
                return False
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

    def _prune(self) -> None:
        """Children of shadows detached since (here or on another replica) end."""
        attached = {v for versions in self.by_ruleset.values() for v in versions}
        for version in [v for v in self.children if v not in attached]:
            self.children.pop(version).close()

    async def _child(self, version: str) -> _Child | None:
        child = self.children.get(version)
        if child is not None and child.alive:
            return child
        if time.monotonic() - self.failed.get(version, -1e9) < self.retry_s:
            return None
        found = await asyncio.to_thread(self.store.ruleset_source, version)
        if found is None or self.candidates is None:
            return None
        child = self.children[version] = _Child(self.candidates, version, found[0], found[1])
        return child

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
