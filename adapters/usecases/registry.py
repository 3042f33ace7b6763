"""Ruleset versions the service can decide with, and the governance around them.

Every version is stored in the database by content hash (so every replica sees it and it stays
replayable forever). A version becomes live through a *publication*: an editor submits it (with a
change note and optionally an effective date), a different person with the approver role approves
it (four eyes), and from its effective date ``Decide`` without a version uses it. Files in the
rulesets directory are deployed through the repository's own review, and are published on load.
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from adapters.infra import metrics
from adapters.infra.rulesets import load_file, ruleset_files
from adapters.ports import PENDING, PUBLISHED, REJECTED, Publication, Store, VersionInfo, VersionSource
from engine.driver import unload
from engine.errors import BatonError, CompileErrors
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.model import Ruleset


class GovernanceError(BatonError):
    """A publication step refused by the rules of governance (four eyes, wrong state)."""


class RulesetRegistry:
    def __init__(self, store: Store, refresh_s: float = 2.0, idle_unload_s: float | None = 600.0,
                 background: bool = False) -> None:
        self.store = store
        self.engines: dict[str, Engine] = {}  # version -> engine
        # a loaded version not used for idle_unload_s is unloaded (``unload_idle``), never one in effect;
        # used: version -> when engine_for last handed it out (monotonic); unloaded: reloaded on demand
        self.idle_unload_s = idle_unload_s
        self.used: dict[str, float] = {}
        self.unloaded: set[str] = set()
        # name -> [(effective_from, decided_at, version)] of published publications, in effect order
        self.schedule: dict[str, list[tuple[float, float, str]]] = {}
        self.refresh_s = refresh_s
        self.refreshed = 0.0
        # True in a service whose background task re-reads the schedule (refresh(force=True) every refresh_s,
        # adapters/doors/grpc/server.py): lookups then never query the store on the caller's thread - on the
        # event loop a query waited for the GIL behind the store writer, stalling every decision in flight
        self.background = background
        self.lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------
    def load_directory(self, directory: Path) -> list[Ruleset]:
        """Compile every ruleset file; a version never published before is published now."""
        loaded = []
        for path in ruleset_files([directory]):
            rs = load_file(path)
            self.publish_reviewed(rs, by=f"file:{path.name}")
            loaded.append(rs)
        return loaded

    def publish_reviewed(self, rs: Ruleset, by: str) -> VersionInfo:
        """Publish a version reviewed elsewhere (a deployed file), unless it was ever published."""
        self.store.publish_reviewed(rs, by, _new_id(), time.time())
        self._remember(rs)
        self.refresh(force=True)
        info = self.info(rs.name, rs.version)
        assert info is not None
        return info

    def submit(self, rs: Ruleset | VersionSource, by: str, note: str = "", effective_from: float | None = None
               ) -> Publication:
        """Store a version and ask for it to be published; it is live only once someone else approves it.
        A change note is required (what changes and why: the approver and the auditor read it), and the
        version already in effect cannot be submitted again. A candidate sent to the service comes as the
        bounded child's :class:`VersionSource` and is compiled here only once it is approved and used."""
        if not note.strip():
            raise GovernanceError("note_required", "a change note is required: say what changes and why")
        if self.active_version(rs.name) == rs.version:
            raise GovernanceError("unchanged", f"{rs.ref} is the version already in effect; there is nothing to "
                                  "publish")
        # submitting the same version again is the same request: the pending publication already there
        pub_id = self.store.submit_publication(rs, by, note, effective_from, _new_id(), time.time())
        if isinstance(rs, Ruleset):
            self._remember(rs)
        found = self.publication(pub_id)
        assert found is not None
        return found

    def decide(self, pub_id: str, by: str, approve: bool, note: str = "") -> Publication:
        """Approve or reject a pending publication. The person who submitted it may do neither; a rejection
        says why."""
        if not approve and not note.strip():
            raise GovernanceError("note_required", "a rejection needs a reason (the submitter reads it)")
        now = time.time()

        def decision(pub: Publication | None) -> dict[str, Any]:
            if pub is None:
                raise BatonError("unknown_publication", f"no publication {pub_id!r}")
            if pub.status != PENDING:
                raise GovernanceError("not_pending", f"publication {pub_id} is already {pub.status} "
                                      f"(by {pub.decided_by})")
            if by == pub.submitted_by:
                raise GovernanceError("four_eyes", f"{by} submitted this version and cannot also "
                                      f"{'approve' if approve else 'reject'} it; another approver must")
            return {"status": PUBLISHED if approve else REJECTED, "decided_by": by, "decided_at": now,
                    "decision_note": note, "effective_from": max(pub.requested_from or now, now) if approve else None}

        if not self.store.decide_publication(pub_id, decision):
            raise GovernanceError("not_pending", f"publication {pub_id} was decided concurrently")
        self.refresh(force=True)
        found = self.publication(pub_id)
        assert found is not None
        return found

    def _remember(self, rs: Ruleset) -> None:
        with self.lock:
            self.engines.setdefault(rs.version, Engine(rs))

    def refresh(self, force: bool = False) -> None:
        """Re-read the published schedule of every ruleset, at most every refresh_s."""
        now = time.monotonic()
        if not force and (self.background or now - self.refreshed < self.refresh_s):
            return
        schedule: dict[str, list[tuple[float, float, str]]] = {}
        for name, effective, decided, version in self.store.published_schedule():
            schedule.setdefault(name, []).append((effective, decided, version))
        for entries in schedule.values():
            entries.sort()
        with self.lock:
            self.schedule = schedule
            self.refreshed = now

    # -- lookups -----------------------------------------------------------------------------------
    def active_version(self, name: str, at: float | None = None) -> str:
        """The version of ``name`` in effect at ``at`` (now by default): the latest effective publication."""
        entries = self.schedule.get(name, [])
        at = time.time() if at is None else at
        k = bisect.bisect_right(entries, (at, float("inf"), "~"))
        return entries[k - 1][2] if k else ""

    @property
    def active(self) -> dict[str, str]:
        now = time.time()
        return {name: v for name in self.schedule if (v := self.active_version(name, now))}

    def engine(self, name: str, version: str = "", at: float | None = None) -> Engine:
        """The engine for a ruleset's version in effect (at ``at``), or a given version (hash or prefix)."""
        self.refresh()
        if not version:
            version = self.active_version(name, at)
            if not version:
                raise BatonError("unknown_ruleset", f"no ruleset named {name!r} is in effect" if name in
                                 self.schedule else f"no ruleset named {name!r}")
        full = self.resolve(version)
        if self.loaded(full) is None and not self.published(full):
            # never approved: it would be compiled in this worker for a caller, and it is not live
            raise BatonError("unpublished_version", f"version {full[:12]} has not been published: a decision "
                             "needs a version approved by a second person (what-if and impact run any)")
        engine = self.engine_for(full)
        if name and engine.ruleset.name != name:
            raise BatonError("unknown_ruleset", f"version {version} belongs to {engine.ruleset.name}, not {name}")
        return engine

    def source(self, name: str, version: str = "") -> tuple[str, str]:
        """The full version and stored source of a ruleset's version in effect, or of a given version (hash or
        prefix), as :meth:`engine` finds it - without compiling it."""
        self.refresh()
        if not version:
            version = self.active_version(name)
            if not version:
                raise BatonError("unknown_ruleset", f"no ruleset named {name!r} is in effect" if name in
                                 self.schedule else f"no ruleset named {name!r}")
        full = self.resolve(version)
        found = self.store.ruleset_source(full)
        if found is None:
            raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
        if name and found[0] != name:
            raise BatonError("unknown_ruleset", f"version {version} belongs to {found[0]}, not {name}")
        return full, found[1]

    def resolve(self, version: str) -> str:
        if len(version) == 64 and version in self.engines:
            return version
        if len(version) < 8:
            raise BatonError("unknown_version", "a version prefix needs at least 8 characters")
        found = self.store.versions_starting(version)
        if len(found) != 1:
            raise BatonError("unknown_version", f"no ruleset version {version!r}" if not found else
                             f"version prefix {version!r} is ambiguous")
        return str(found[0])

    def private_fields(self, version: str) -> dict[str, list[str]] | None:
        """A version's pii fields by fact type (None when the version is unknown)."""
        try:
            return self.engine_for(version).pii
        except BatonError:
            return None

    def published(self, version: str) -> bool:
        """Whether ``version`` was ever published (as the schedule last read says)."""
        return any(v == version for entries in self.schedule.values() for _, _, v in entries)

    def loaded(self, version: str) -> Engine | None:
        """The engine of ``version`` if this process has it already (nothing is compiled)."""
        with self.lock:
            return self.engines.get(version)

    def engine_for(self, version: str) -> Engine:
        self.used[version] = time.monotonic()
        with self.lock:
            engine = self.engines.get(version)
        if engine is not None:
            return engine
        found = self.store.ruleset_source(version)
        if found is None:
            raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
        try:
            rs = load_ruleset(found[1], f"{found[0]}@{version[:12]}")
        except CompileErrors as e:  # stored by an older Baton whose language differed
            raise BatonError("stale_version", f"stored version {version[:12]} no longer compiles: {e}") from None
        engine = Engine(rs)
        with self.lock:
            if version in self.unloaded:
                self.unloaded.discard(version)
                metrics.VERSION_RELOADS.inc()
            return self.engines.setdefault(version, engine)

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload every loaded version not handed out by ``engine_for`` for ``idle_unload_s``: its engine is
        dropped and its durable-rules networks freed; the next ``engine_for`` compiles it again from the
        store. A version in effect (now) for its ruleset stays: reloading a 10,000-rule version takes
        seconds of compile, which a decision would wait for. Nor is a version unloaded while a decision
        is on it. Returns the versions unloaded (counted in baton_version_unloads_total)."""
        if self.idle_unload_s is None:
            return []
        now = time.monotonic() if now is None else now
        in_effect = set(self.active.values())
        with self.lock:
            idle = [(v, e) for v, e in self.engines.items() if v not in in_effect
                    and now - self.used.setdefault(v, now) >= self.idle_unload_s]
        out = []
        for version, engine in idle:
            with self.lock:
                if self.engines.get(version) is not engine or now - self.used.get(version, now) < self.idle_unload_s:
                    continue  # handed out again meanwhile
                del self.engines[version]
                self.used.pop(version, None)
                self.unloaded.add(version)
            unload(engine.compiled)  # a decision still on it: its networks stay registered, and a reload reuses them
            metrics.VERSION_UNLOADS.inc()
            out.append(version)
        return out

    def info(self, name: str, version: str) -> VersionInfo | None:
        found = self._versions(version)
        return found[0] if found else None

    def versions(self) -> list[VersionInfo]:
        """Every stored version, by name then age, with what a listing shows (no source is compiled)."""
        return self._versions()

    def _versions(self, only: str | None = None) -> list[VersionInfo]:
        out = []
        for name, version, loaded_at, published_at, published_by, description, rules, tests in \
                self.store.version_rows(only):
            if rules is None:  # stored before its summary was
                description, rules, tests = self._summarise(version)
            out.append(VersionInfo(name, version, loaded_at, published_at, published_by, description or "",
                                   rules, tests))
        return out

    def _summarise(self, version: str) -> tuple[str, int, int]:
        """Compile a version stored before revision 0007 once, and store its summary beside it."""
        found = self.store.ruleset_source(version)
        if found is None:
            return "", 0, 0
        try:
            rs = load_ruleset(found[1], f"{found[0]}@{version[:12]}")
        except CompileErrors as e:  # stored by an older Baton whose language differed: listed all the same
            return f"(this stored version no longer compiles: {e.errors[0].message})", 0, 0
        self.store.save_summary(version, rs.description, len(rs.rules), len(rs.tests))
        return rs.description, len(rs.rules), len(rs.tests)

    def latest_publications(self) -> dict[str, Publication]:
        """Each version's latest published publication (who approved it, from when), in one query."""
        latest: dict[str, Publication] = {}
        for p in self.publications(status=PUBLISHED):  # newest first
            latest.setdefault(p.version, p)
        return latest

    def publication(self, pub_id: str) -> Publication | None:
        return self.store.publication(pub_id)

    def publications(self, name: str = "", status: str = "", version: str = "") -> list[Publication]:
        return self.store.publications(name, status, version)


def _new_id() -> str:
    return f"pub-{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
