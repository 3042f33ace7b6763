"""The escalations area of the store: escalations with their notes, and the effects outbox."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from adapters.infra.store.base import (
    _IDS,
    ESCALATION_NOTES,
    ESCALATIONS,
    OUTBOX,
    StoreBase,
)


class EscalationsArea(StoreBase):
    # -- escalations -------------------------------------------------------------------------------
    def escalations(self, queue: str | None = None, status: str | None = "open", limit: int = 100,
                    due_before: float | None = None) -> list[dict[str, Any]]:
        e = ESCALATIONS.c
        q = sa.select(ESCALATIONS)
        if queue:
            q = q.where(e.queue == queue)
        if status:
            q = q.where(e.status == status)
        if due_before is not None:
            q = q.where(e.sla_at.is_not(None), e.sla_at < due_before)
        q = q.order_by(e.created_at).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def escalation(self, escalation_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ESCALATIONS).where(ESCALATIONS.c.id == escalation_id)).first()
        return dict(row._mapping) if row else None

    def escalation_note(self, escalation_id: str, by: str, kind: str, text: str, now: float,
                        assign: str | None = None, close_as: str | None = None) -> bool:
        """Record a note; ``assign`` sets who works on it; ``close_as`` (closed | declined) ends an open
        escalation by compare-and-set - False when it was no longer open (nothing written then)."""
        e = ESCALATIONS.c
        with self.writer.begin() as conn:
            if close_as is not None:
                done = conn.execute(ESCALATIONS.update().where(e.id == escalation_id, e.status == "open").values(
                    status=close_as, resolved_by=by, resolved_at=now)).rowcount
                if done != 1:
                    return False
            if assign is not None:
                conn.execute(ESCALATIONS.update().where(e.id == escalation_id).values(assigned_to=assign or None))
            conn.execute(ESCALATION_NOTES.insert().values(
                id=_IDS.new_id(), escalation_id=escalation_id, by=by[:200],
                at=now, kind=kind, text=text[:4000]))
        return True

    def escalation_notes(self, escalation_id: str) -> list[dict[str, Any]]:
        n = ESCALATION_NOTES.c
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(ESCALATION_NOTES).where(
                n.escalation_id == escalation_id).order_by(n.at, n.id))]

    # -- the outbox --------------------------------------------------------------------------------
    def claim_effects(self, now: float, lease_s: float, limit: int = 32,
                      names: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Take effects that are due (or whose sender's lease ran out), by compare-and-set, the earliest due
        first. With ``names``, only effects this sender has a connector for: the others wait in the
        outbox, untouched, until a sender that has one runs.

        Each query walks an index in order and stops at ``limit`` rows - one per effect name (index
        ``status, name, next_at``), so a backlog of other names' effects (a connector that is down or
        configured elsewhere) costs nothing. One query with ``OR`` sorted every due row on each poll, so a
        large backlog waiting for a connector no worker had cost every worker on every poll."""
        if names is not None and not names:
            return []
        o = OUTBOX.c
        pending = sa.select(OUTBOX).where(o.status == "pending", o.next_at <= now).order_by(o.next_at).limit(limit)
        expired = sa.select(OUTBOX).where(o.status == "sending", o.lease_until < now).order_by(o.lease_until) \
            .limit(limit)
        if names is None:
            queries = [pending, expired]
        else:
            wanted = sorted(set(names))
            queries = [*(pending.where(o.name == n) for n in wanted), expired.where(o.name.in_(wanted))]
        with self.engine.connect() as conn:
            rows = [row for q in queries for row in conn.execute(q)]
        candidates = [r.id for r in sorted(rows, key=lambda r: (r.next_at, r.id))[:limit]]
        if not candidates:
            return []
        # one compare-and-set for all of them, in one transaction (one commit, not one per effect): an effect
        # another sender took meanwhile is no longer due, so it is not updated and not returned. A CASE, not
        # an OR: SQLite answered the OR from the status index - every due row - instead of the 32 ids
        still_due = sa.case((o.status == "pending", o.next_at <= now), (o.status == "sending", o.lease_until < now),
                            else_=sa.false())
        with self.writer.begin() as conn:
            taken = {r.id: dict(r._mapping) for r in conn.execute(
                OUTBOX.update().where(o.id.in_(candidates), still_due)
                .values(status="sending", lease_until=now + lease_s, attempts=o.attempts + 1)
                .returning(*OUTBOX.c))}
        return [taken[i] for i in candidates if i in taken]

    def effect_done(self, effect_id: str, attempts: int, now: float) -> None:
        o = OUTBOX.c
        with self.writer.begin() as conn:
            conn.execute(OUTBOX.update().where(o.id == effect_id, o.attempts == attempts)
                         .values(status="done", done_at=now, lease_until=None, last_error=None))

    def effect_failed(self, effect_id: str, attempts: int, error: str, next_at: float | None,
                      now: float | None = None) -> None:
        """Back to pending for another try at ``next_at``, or dead when ``next_at`` is None. The first failure
        since it was written (or retried) is kept as ``failing_since``."""
        o = OUTBOX.c
        with self.writer.begin() as conn:
            conn.execute(OUTBOX.update().where(o.id == effect_id, o.attempts == attempts).values(
                status="dead" if next_at is None else "pending", next_at=next_at or 0.0, lease_until=None,
                last_error=error[:2000], failing_since=sa.func.coalesce(o.failing_since, now or time.time())))

    def effects(self, status: str | None = None, limit: int = 200, decision_id: str | None = None
                ) -> list[dict[str, Any]]:
        o = OUTBOX.c
        q = sa.select(OUTBOX)
        if status:
            q = q.where(o.status == status)
        if decision_id:
            q = q.where(o.decision_id == decision_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(o.created_at, o.id).limit(limit))]

    def effect(self, effect_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.id == effect_id)).first()
        return dict(row._mapping) if row else None

    def retry_effects(self, ids: list[str] | None, now: float, by: str = "") -> int:
        """Dead letters (all, or the ids given) back to pending, recording who did it."""
        o = OUTBOX.c
        q = OUTBOX.update().where(o.status == "dead")
        if ids is not None:
            q = q.where(o.id.in_(ids))
        with self.writer.begin() as conn:
            return int(conn.execute(q.values(status="pending", next_at=now, attempts=0, retried_by=by or None,
                                             retried_at=now, failing_since=None)).rowcount)

    # -- gauges ------------------------------------------------------------------------------------
    def open_escalations_by_queue(self) -> list[tuple[str, int]]:
        with self.engine.connect() as conn:
            return [(str(q), int(n)) for q, n in conn.execute(sa.select(ESCALATIONS.c.queue, sa.func.count()).where(
                ESCALATIONS.c.status == "open").group_by(ESCALATIONS.c.queue)).all()]

    def effects_by_status(self, statuses: Collection[str] = ("pending", "sending", "dead")) -> list[tuple[str, int]]:
        """How many effects are in each of ``statuses`` (every status given, zero included): a range of the
        status index each, so the delivered ones, which the outbox keeps, are not read."""
        with self.engine.connect() as conn:
            found: dict[str, int] = dict(conn.execute(sa.select(OUTBOX.c.status, sa.func.count()).where(
                OUTBOX.c.status.in_(list(statuses))).group_by(OUTBOX.c.status)).all())
        return [(s, int(found.get(s, 0))) for s in statuses]
