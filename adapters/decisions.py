"""The one path every decision takes, whatever door it came in by (gRPC `Decide`, broker intake, an
escalation resumed from the console, gRPC or CLI): run it in a span, store it (durable before anyone is
told), then - only for a decision stored now, not an idempotent repeat - count it, write its decision-log
line and offer it to the ruleset's shadow versions. Doors translate their request into ``decide`` and its
result back; none of them assembles these steps itself (tests/e2e/test_doors.py holds them to it).
Replaying a stored decision and running it on a candidate version (``replay_stored``, ``what_if_stored``)
are here too, for the same reason; resolving an escalation is adapters/escalations.py (which decides
through this path), publishing is adapters/registry.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters import metrics
from adapters.documents import Incoming
from adapters.logs import log_decision
from adapters.store.sql import Resolution, Saved, SqlStore
from adapters.store.writer import GroupWriter
from adapters.system import LoopLag, SystemClock
from adapters.tracing import annotate, decision_span, installed_tracer
from engine.loop import Decision, Engine
from engine.ports import Clock, ModelGateway, ToolConnector
from engine.record import DecisionRecord
from engine.replay import ReplayResult, WhatIf, replay, what_if

if TYPE_CHECKING:  # shadows evaluate through what_if_stored below
    from adapters.shadow import Shadows


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
    shadows: Shadows | None = None
    clock: Clock = field(default_factory=SystemClock)
    lag: LoopLag | None = None  # the worker's event-loop lag: the wait before a door's handler ran

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
        with decision_span(self.tracer, ruleset) as span:
            d = await run()
            record = d.to_dict()
            if received is not None:
                waited(record, self.clock.monotonic() - received)
            saved = await self.writer.save(record, caller, idempotency_key, resolves=resolves, documents=documents)
            annotate(span, record)
        if not saved.existing:
            metrics.observe(record)
            log_decision(record, (request_id or d.decision_id)[:100], caller)
            if self.shadows is not None:
                self.shadows.offer(record)
        return record, saved


async def replay_stored(store: SqlStore, engine_for: Callable[[str], Engine], record: DecisionRecord) -> ReplayResult:
    """Re-run a stored decision exactly on its own ruleset version, with the documents it read (every door's
    replay: gRPC ReplayDecision, the console, `baton replay`)."""
    engine = await asyncio.to_thread(engine_for, record["version"])
    documents = await asyncio.to_thread(store.documents_of, record)
    return await replay(engine, record, documents)


async def what_if_stored(store: SqlStore, engine: Engine, record: DecisionRecord,
                         live_models: ModelGateway | None = None, live_tools: ToolConnector | None = None) -> WhatIf:
    """A stored decision's inputs, documents and recorded answers run on another ruleset version (every door's
    what-if); calls never recorded are unanswered, or made live through the ports given."""
    documents = await asyncio.to_thread(store.documents_of, record)
    return await what_if(engine, record, live_models, live_tools, documents)
