"""The one path every decision takes, whatever door it came in by (gRPC `Decide`, broker intake, an
escalation resumed from the console, gRPC or CLI): run it in a span, store it (durable before anyone is
told), then - only for a decision stored now, not an idempotent repeat - count it, write its decision-log
line and offer it to the ruleset's shadow versions. Doors translate their request into ``decide`` and its
result back; none of them assembles these steps itself (tests/e2e/test_doors.py holds them to it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters import metrics
from adapters.documents import Incoming
from adapters.logs import log_decision
from adapters.shadow import Shadows
from adapters.store.sql import Resolution, Saved
from adapters.store.writer import GroupWriter
from adapters.tracing import annotate, decision_span, installed_tracer
from engine.loop import Decision


@dataclass(slots=True)
class DecisionPath:
    writer: GroupWriter
    tracer: Any = None  # an OpenTelemetry Tracer; None: the process's installed provider's, if any
    shadows: Shadows | None = None

    def __post_init__(self) -> None:
        if self.tracer is None:  # looked up once, not on every decision
            self.tracer = installed_tracer()

    async def decide(self, ruleset: str, run: Callable[[], Awaitable[Decision]], caller: str,
                     idempotency_key: str | None = None, documents: Sequence[Incoming] = (),
                     request_id: str = "", resolves: Resolution | None = None) -> tuple[dict[str, Any], Saved]:
        """Run ``run`` (the engine deciding), store the record, and give it its side records. Returns the
        record and how it was saved (``saved.existing``: a concurrent request with the same key stored first;
        then nothing else happens here and the door answers with the stored decision)."""
        with decision_span(self.tracer, ruleset) as span:
            d = await run()
            record = d.to_dict()
            saved = await self.writer.save(record, caller, idempotency_key, resolves=resolves, documents=documents)
            annotate(span, record)
        if not saved.existing:
            metrics.observe(record)
            log_decision(record, (request_id or d.decision_id)[:100], caller)
            if self.shadows is not None:
                self.shadows.offer(record)
        return record, saved
