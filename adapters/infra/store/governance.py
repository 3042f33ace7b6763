"""The governance area of the store: ruleset versions by content hash, their publications (submitted,
approved or rejected by someone else, in effect from a time), and shadow versions with their results.
The rules of governance (four eyes, notes required) are the registry's; this module keeps the rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.infra.store.base import PUBLICATIONS, RULESETS, SHADOW_RESULTS, SHADOWS, StoreBase
from adapters.ports import PENDING, PUBLISHED, REJECTED, Publication, ShadowInfo, VersionInfo, VersionSource
from engine.model import Ruleset

# the values live in adapters/ports.py now; imported from here as before
__all__ = ["PENDING", "PUBLISHED", "REJECTED", "GovernanceArea", "Publication", "ShadowInfo", "VersionInfo",
           "VersionSource", "store_version"]

_PUB_COLUMNS = [PUBLICATIONS.c[k] for k in Publication.__slots__]
_SHADOW_COLUMNS = [SHADOWS.c[k] for k in ShadowInfo.__slots__]


def store_version(conn: Connection, rs: Ruleset | VersionSource, now: float | None = None) -> None:
    """Store a ruleset version's source once, by its content hash (inside the caller's transaction), with
    what a listing shows of it."""
    v = VersionSource.of(rs)
    if conn.execute(sa.select(RULESETS.c.version).where(RULESETS.c.version == v.version)).first() is None:
        conn.execute(RULESETS.insert().values(version=v.version, name=v.name, source=v.source,
                                              loaded_at=time.time() if now is None else now,
                                              description=v.description, rules=v.rules, tests=v.tests))


def _mark_published(conn: Connection, version: str, now: float, by: str) -> None:
    conn.execute(RULESETS.update().where(RULESETS.c.version == version, RULESETS.c.published_at.is_(None))
                 .values(published_at=now, published_by=by))


class GovernanceArea(StoreBase):
    # -- ruleset versions --------------------------------------------------------------------------
    def save_ruleset(self, rs: Ruleset) -> None:
        with self.writer.begin() as conn:
            store_version(conn, rs)

    def ruleset_source(self, version: str) -> tuple[str, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(RULESETS.c.name, RULESETS.c.source)
                               .where(RULESETS.c.version == version)).first()
        return (row[0], row[1]) if row else None

    def versions_starting(self, prefix: str, limit: int = 2) -> list[str]:
        """Stored versions whose hash starts with ``prefix`` (at most ``limit``)."""
        with self.engine.connect() as conn:
            return [str(v) for v in conn.execute(sa.select(RULESETS.c.version).where(
                RULESETS.c.version.like(f"{prefix.replace('%', '').replace('_', '')}%")).limit(limit)).scalars()]

    def version_rows(self, version: str | None = None) -> list[tuple[Any, ...]]:
        """(name, version, loaded_at, published_at, published_by, description, rules, tests) of every stored
        version (or one), by name then age; ``rules`` is None for a version stored before its summary was."""
        r = RULESETS.c
        query = sa.select(r.name, r.version, r.loaded_at, r.published_at, r.published_by, r.description, r.rules,
                          r.tests).order_by(r.name, r.loaded_at)
        if version is not None:
            query = query.where(r.version == version)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query).all()]

    def save_summary(self, version: str, description: str, rules: int, tests: int) -> None:
        with self.writer.begin() as conn:
            conn.execute(RULESETS.update().where(RULESETS.c.version == version, RULESETS.c.rules.is_(None))
                         .values(description=description, rules=rules, tests=tests))

    # -- publications ------------------------------------------------------------------------------
    def publish_reviewed(self, rs: Ruleset | VersionSource, by: str, pub_id: str, now: float) -> None:
        """Store a version and publish it as reviewed elsewhere (a deployed file), unless it ever was."""
        with self.writer.begin() as conn:
            store_version(conn, rs, now)
            published = conn.execute(sa.select(PUBLICATIONS.c.id).where(
                PUBLICATIONS.c.version == rs.version, PUBLICATIONS.c.status == PUBLISHED)).first()
            if published is None:
                conn.execute(PUBLICATIONS.insert().values(
                    id=pub_id, ruleset=rs.name, version=rs.version, status=PUBLISHED, submitted_by=by,
                    submitted_at=now, note="deployed from the rulesets directory", requested_from=None,
                    effective_from=now, decided_by=by, decided_at=now, decision_note="reviewed in the repository"))
                _mark_published(conn, rs.version, now, by)

    def submit_publication(self, rs: Ruleset | VersionSource, by: str, note: str, effective_from: float | None,
                           pub_id: str, now: float) -> str:
        """Store a version and a pending publication of it; the id of the pending one (an earlier one of
        the same version, if there is one: submitting again is the same request)."""
        with self.writer.begin() as conn:
            store_version(conn, rs, now)
            pending = conn.execute(sa.select(PUBLICATIONS.c.id).where(
                PUBLICATIONS.c.version == rs.version, PUBLICATIONS.c.status == PENDING)).scalar()
            if pending is not None:
                return str(pending)
            conn.execute(PUBLICATIONS.insert().values(
                id=pub_id, ruleset=rs.name, version=rs.version, status=PENDING, submitted_by=by, submitted_at=now,
                note=note, requested_from=effective_from, effective_from=None, decided_by=None, decided_at=None,
                decision_note=""))
        return pub_id

    def decide_publication(self, pub_id: str, decide: Callable[[Publication | None], dict[str, Any]]) -> bool:
        """Move a pending publication on, in one transaction: ``decide`` sees it as stored (None: no such
        publication) and returns the columns to set, or raises to refuse. False when another request decided
        it first. A publication set to published marks its version published."""
        with self.writer.begin() as conn:
            row = conn.execute(sa.select(*_PUB_COLUMNS).where(PUBLICATIONS.c.id == pub_id)).first()
            pub = Publication(*row) if row else None
            values = decide(pub)
            assert pub is not None
            done = conn.execute(PUBLICATIONS.update().where(PUBLICATIONS.c.id == pub_id,
                                                            PUBLICATIONS.c.status == PENDING).values(**values)).rowcount
            if done == 1 and values.get("status") == PUBLISHED:
                _mark_published(conn, pub.version, float(values["decided_at"]), pub.submitted_by)
        return done == 1

    def published_schedule(self) -> list[tuple[str, float, float, str]]:
        """(ruleset, effective_from, decided_at, version) of every published publication."""
        p = PUBLICATIONS.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(p.ruleset, p.effective_from, p.decided_at, p.version)
                                .where(p.status == PUBLISHED)).all()
        return [(str(name), float(effective), float(decided or 0), str(version))
                for name, effective, decided, version in rows]

    def publication(self, pub_id: str) -> Publication | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_PUB_COLUMNS).where(PUBLICATIONS.c.id == pub_id)).first()
        return Publication(*row) if row else None

    def publications(self, name: str = "", status: str = "", version: str = "") -> list[Publication]:
        """Newest first."""
        query = sa.select(*_PUB_COLUMNS).order_by(PUBLICATIONS.c.submitted_at.desc())
        if name:
            query = query.where(PUBLICATIONS.c.ruleset == name)
        if status:
            query = query.where(PUBLICATIONS.c.status == status)
        if version:
            query = query.where(PUBLICATIONS.c.version == version)
        with self.engine.connect() as conn:
            return [Publication(*row) for row in conn.execute(query).all()]

    # -- shadows -----------------------------------------------------------------------------------
    def attach_shadow(self, rs: Ruleset | VersionSource, by: str, shadow_id: str, now: float) -> ShadowInfo:
        """Store a version and attach it as a shadow of its ruleset (the attachment already there, if any)."""
        with self.writer.begin() as conn:
            store_version(conn, rs, now)
            row = conn.execute(sa.select(*_SHADOW_COLUMNS).where(SHADOWS.c.version == rs.version,
                                                                 SHADOWS.c.detached_at.is_(None))).first()
            if row is not None:
                return ShadowInfo(*row)
            info = ShadowInfo(shadow_id, rs.name, rs.version, by, now)
            conn.execute(SHADOWS.insert().values(id=info.id, ruleset=info.ruleset, version=info.version,
                                                 attached_by=by, attached_at=now, detached_at=None))
        return info

    def detach_shadow(self, version: str, now: float) -> bool:
        with self.writer.begin() as conn:
            return bool(conn.execute(SHADOWS.update().where(SHADOWS.c.version == version,
                                                            SHADOWS.c.detached_at.is_(None))
                                     .values(detached_at=now)).rowcount)

    def attached_shadows(self) -> list[ShadowInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_SHADOW_COLUMNS).where(SHADOWS.c.detached_at.is_(None))
                                .order_by(SHADOWS.c.attached_at)).all()
        return [ShadowInfo(*r) for r in rows]

    def save_shadow_result(self, row: dict[str, Any]) -> None:
        """One live decision evaluated against one shadow version (once: a second evaluation is ignored)."""
        with self.writer.begin() as conn:
            exists = conn.execute(sa.select(SHADOW_RESULTS.c.decision_id).where(
                SHADOW_RESULTS.c.decision_id == row["decision_id"],
                SHADOW_RESULTS.c.shadow_version == row["shadow_version"])).first()
            if exists is None:
                conn.execute(SHADOW_RESULTS.insert().values(**row))

    def shadow_results(self, version: str, since: float | None = None) -> list[tuple[Any, ...]]:
        """(ruleset, decision_id, live_outcome, shadow_outcome, changed, unanswered, detail), oldest first."""
        r = SHADOW_RESULTS.c
        query = sa.select(r.ruleset, r.decision_id, r.live_outcome, r.shadow_outcome, r.changed, r.unanswered,
                          r.detail).where(r.shadow_version == version).order_by(r.created_at)
        if since is not None:
            query = query.where(r.created_at >= since)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query).all()]
