"""The one path every decision takes, whatever door it came in by (gRPC `Decide`, broker intake, an
escalation resumed from the console, gRPC or CLI): run it in a span, store it (durable before anyone is
told), then - only for a decision stored now, not an idempotent repeat - count it, write its decision-log
line and offer it to the ruleset's shadow versions. Doors translate their request into ``decide`` and its
result back; none of them assembles these steps itself (tests/e2e/test_doors.py holds them to it).
Replaying a stored decision and running it on a candidate version (``replay_stored``, ``what_if_stored``)
are here too, for the same reason; resolving an escalation is adapters/usecases/escalations.py (which decides
through this path), publishing is adapters/usecases/registry.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.infra import metrics
from adapters.infra.documents import Incoming
from adapters.infra.logs import log_decision
from adapters.infra.store.writer import GroupWriter
from adapters.infra.system import LoopLag, SystemClock
from adapters.infra.tracing import annotate, decision_span, installed_tracer
from adapters.ports import Documents, Resolution, Saved
from engine.loop import Decision, Engine
from engine.ports import Clock, ModelGateway, ToolConnector
from engine.record import DecisionRecord
from engine.replay import ReplayResult, WhatIf, replay, what_if


class ShadowSink(Protocol):
    """Where a decision stored now is offered to the ruleset's shadow versions (adapters/usecases/shadow.py
    Shadows; named here as a port, so that shadow.py - which evaluates through what_if_stored below - and this
    file do not import each other)."""

    def offer(self, record: DecisionRecord) -> None: ...


NO_SPAN = contextlib.nullcontext(None)  # without a tracer: not even decision_span's generator


class StartGate:
    """Under load, decisions start their engine runs together. One that arrives while at least
    ``min_active`` - 1 other decisions are in flight (deciding or being stored) waits, until half of those in
    flight are waiting with it or ``window_s`` has passed, and then every waiting decision starts in one pass
    of the event loop, their engine runs back to back.

    Why: run one at a time, each between the gRPC library's work for other calls, converting the facts and
    running the engine cost the worker several times what the engine alone costs in process
    (bench/grpc_parts.py): the code and data it needs are colder by then. Run in groups, each decision costs
    the server less CPU (bench/grpc_load.py; the figures are in docs/deploy.md), and their stores and
    responses go in groups too.

    With fewer decisions in flight nothing waits, so a lightly loaded service adds no latency; ``window_s``
    0 turns the gate off (``limits.batch_window_ms``)."""

    def __init__(self, window_s: float = 0.004, min_active: int = 4, share: float = 0.5) -> None:
        self.window_s = window_s
        self.min_active = min_active
        self.share = share
        self.active = 0  # decisions between enter() and leave()
        self.groups = 0  # gates opened, and the decisions they let through: the mean group size
        self.grouped = 0
        self._waiting: list[asyncio.Future[None]] = []  # one future each: a cancelled waiter cancels only itself
        self._timer: asyncio.TimerHandle | None = None

    async def enter(self) -> None:
        """Wait for this decision's turn to start (none when the gate is off or few decisions are in flight).
        Every enter() is paired with a leave() once the decision is stored or has failed, cancelled included."""
        self.active += 1
        loop = asyncio.get_running_loop()
        if self._waiting and self._waiting[0].get_loop() is not loop:  # left by a loop that has ended
            self._waiting, self._timer = [], None
        if self.window_s <= 0 or self.active < self.min_active:
            if self._waiting:  # load fell: those waiting go now, with this one
                self._open()
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        if len(self._waiting) == 1:
            self._timer = loop.call_later(self.window_s, self._open)
        elif len(self._waiting) >= self.active * self.share:
            self._open()
        await waiter

    def leave(self) -> None:
        self.active -= 1

    def _open(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        self.groups += 1
        self.grouped += len(waiting)
        metrics.START_GROUPS.inc()
        metrics.START_GROUPED.inc(len(waiting))
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)


def waited(record: DecisionRecord, seconds: float) -> None:
    """Make the record's latency the whole time since its request was received (``seconds``), and say how
    much of it was spent before the engine started (``queued_ms``); the engine's own measure is its run."""
    total = round(seconds * 1000, 3)
    ran = float(record["latency_ms"])
    record["queued_ms"] = round(max(0.0, total - ran), 3)
    record["latency_ms"] = max(total, ran)


@dataclass(slots=True)
class DecisionPath:
    writer: GroupWriter
    tracer: Any = None  # an OpenTelemetry Tracer; None: the process's installed provider's, if any
    shadows: ShadowSink | None = None
    clock: Clock = field(default_factory=SystemClock)
    lag: LoopLag | None = None  # the worker's event-loop lag: the wait before a door's handler ran
    gate: StartGate = field(default_factory=StartGate)  # under load, engine runs start in groups

    def __post_init__(self) -> None:
        if self.tracer is None:  # looked up once, not on every decision
            self.tracer = installed_tracer()

    def received(self) -> float:
        """When the request being handled arrived, for ``decide(received=...)``: a door calls it first thing.
        Now, less the time the event loop is running late (the request waited that long for its handler)."""
        return self.clock.monotonic() - (self.lag.current() if self.lag is not None else 0.0)

    async def decide(self, ruleset: str, run: Callable[[], Awaitable[Decision]], caller: str,
                     idempotency_key: str | None = None, documents: Sequence[Incoming] = (),
                     request_id: str = "", resolves: Resolution | None = None, received: float | None = None
                     ) -> tuple[DecisionRecord, Saved]:
        """Run ``run`` (the engine deciding), store the record, and give it its side records. Returns the
        record and how it was saved (``saved.existing``: a concurrent request with the same key stored first;
        then nothing else happens here and the door answers with the stored decision). ``received``: when
        the door received the request (``self.received()``), so the stored latency is what its caller waited,
        time queued in the server included."""
        try:  # in flight, for the start gate, until stored
            with decision_span(self.tracer, ruleset) if self.tracer is not None else NO_SPAN as span:
                await self.gate.enter()
                d = await run()
                record = d.to_dict()
                if received is not None:
                    waited(record, self.clock.monotonic() - received)
                saved = await self.writer.save(record, caller, idempotency_key, resolves=resolves,
                                               documents=documents)
                annotate(span, record)
        finally:
            self.gate.leave()
        if not saved.existing:
            metrics.observe(record)
            log_decision(record, (request_id or d.decision_id)[:100], caller)
            if self.shadows is not None:
                self.shadows.offer(record)
        return record, saved


@dataclass(slots=True)
class Job:
    """One decision of a batch, for ``decide_many``: ``run(budget)`` runs the engine, stopping within
    ``budget`` seconds when one is given (what is left of the batch's time)."""

    index: int  # its request's place in the batch
    ruleset: str
    run: Callable[[float | None], Awaitable[Decision]]
    idempotency_key: str | None = None
    documents: Sequence[Incoming] = ()
    request_id: str = ""


# a Job's outcome: decided and stored, or failed (the exception)
Outcome = tuple[DecisionRecord, Saved] | BaseException


async def decide_many(path: DecisionPath, next_jobs: Callable[[], Awaitable[tuple[list[Job], float | None]]],
                      release: Callable[[int], None], caller: str,
                      received: float | None = None) -> list[tuple[Job, Outcome]]:
    """Many decisions through the one path, as ``DecisionPath.decide`` takes one - each run in its own span,
    stored, and (when stored now) counted, logged and offered to shadows - but amortised: the engine runs go
    back to back, a window at a time (``next_jobs()``: the jobs to start now and the seconds they have; none:
    nothing more starts), and each window's decisions are handed to the writer as one group as soon as they
    are decided (stored in one transaction with whatever else is waiting, while the next window runs). None
    goes through the start gate: a batch is its own group.
    ``release(k)`` is called once each window's k runs have ended. Returns each started job's outcome."""
    out: list[tuple[Job, Outcome]] = []
    handed: list[tuple[list[tuple[Job, DecisionRecord]], asyncio.Future[list[Saved | BaseException]]]] = []

    async def one(job: Job, budget: float | None) -> DecisionRecord:
        with decision_span(path.tracer, job.ruleset) if path.tracer is not None else NO_SPAN as span:
            d = await job.run(budget)
            record = d.to_dict()
            if received is not None:
                waited(record, path.clock.monotonic() - received)
            annotate(span, record)
        return record

    try:
        while True:
            window, budget = await next_jobs()
            if not window:
                break
            try:
                if len(window) == 1:
                    runs: list[DecisionRecord | BaseException] = []
                    try:
                        runs.append(await one(window[0], budget))
                    except Exception as error:
                        runs.append(error)
                else:
                    runs = await asyncio.gather(*(one(job, budget) for job in window), return_exceptions=True)
            finally:
                release(len(window))
            decided: list[tuple[Job, DecisionRecord]] = []
            for job, run in zip(window, runs, strict=True):
                if isinstance(run, BaseException):
                    out.append((job, run))
                else:
                    decided.append((job, run))
            if decided:  # stored while the next window runs: what is decided is stored, whatever comes later
                handed.append((decided, path.writer.save_many([(record, caller, job.idempotency_key, job.documents)
                                                               for job, record in decided])))
    finally:
        for decided, future in handed:
            out.extend(await _settled(path, decided, future, caller))
    return out


async def _settled(path: DecisionPath, decided: list[tuple[Job, DecisionRecord]],
                   future: asyncio.Future[list[Saved | BaseException]], caller: str) -> list[tuple[Job, Outcome]]:
    """A window's decisions once the writer has them: each stored one (when stored now) counted, logged and
    offered to shadows; each one's outcome, or its error."""
    try:
        saved = await future
    except Exception as error:  # the hand-over itself failed: none of them is known stored
        return [(job, error) for job, _ in decided]
    out: list[tuple[Job, Outcome]] = []
    new: list[DecisionRecord] = []
    for (job, record), result in zip(decided, saved, strict=True):
        if isinstance(result, BaseException):
            out.append((job, result))
            continue
        out.append((job, (record, result)))
        if not result.existing:
            new.append(record)
            log_decision(record, (job.request_id or record["decision_id"])[:100], caller)
            if path.shadows is not None:
                path.shadows.offer(record)
    metrics.observe_many(new)
    return out


async def replay_stored(store: Documents, engine_for: Callable[[str], Engine], record: DecisionRecord) -> ReplayResult:
    """Re-run a stored decision exactly on its own ruleset version, with the documents it read (every door's
    replay: gRPC ReplayDecision, the console, `baton replay`)."""
    engine = await asyncio.to_thread(engine_for, record["version"])
    documents = await asyncio.to_thread(store.documents_of, record)
    return await replay(engine, record, documents)


async def what_if_stored(store: Documents, engine: Engine, record: DecisionRecord,
                         live_models: ModelGateway | None = None, live_tools: ToolConnector | None = None,
                         keep: bool = False) -> WhatIf:
    """A stored decision's inputs, documents and recorded answers run on another ruleset version (every door's
    what-if); calls never recorded are unanswered, or made live through the ports given."""
    documents = await asyncio.to_thread(store.documents_of, record)
    return await what_if(engine, record, live_models, live_tools, documents, keep)
