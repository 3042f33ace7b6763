"""Ruleset versions the service can decide with: loaded from a directory and published through the API,
all stored in the database (so every replica sees them and every version stays replayable)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adapters.rulesets import load_file, ruleset_files
from adapters.store.sql import RULESETS, SqlStore
from engine.errors import BatonError, CompileErrors
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.model import Ruleset


@dataclass(slots=True)
class VersionInfo:
    name: str
    version: str
    loaded_at: float
    published_at: float | None
    published_by: str | None


class RulesetRegistry:
    def __init__(self, store: SqlStore, refresh_s: float = 2.0) -> None:
        self.store = store
        self.engines: dict[str, Engine] = {}  # version -> engine
        self.active: dict[str, str] = {}  # name -> version
        self.refresh_s = refresh_s
        self.refreshed = 0.0
        self.lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------
    def load_directory(self, directory: Path) -> list[Ruleset]:
        """Compile every ruleset file; a version not yet stored is stored and published."""
        loaded = []
        for path in ruleset_files([directory]):
            rs = load_file(path)
            self.publish(rs, by=f"file:{path.name}", only_if_new=True)
            loaded.append(rs)
        return loaded

    def publish(self, rs: Ruleset, by: str, only_if_new: bool = False) -> VersionInfo:
        now = time.time()
        with self.store.writer.begin() as conn:
            row = conn.execute(sa.select(RULESETS.c.published_at).where(RULESETS.c.version == rs.version)).first()
            if row is None:
                conn.execute(RULESETS.insert().values(version=rs.version, name=rs.name, source=rs.source,
                                                      loaded_at=now, published_at=now, published_by=by))
            elif not only_if_new:
                conn.execute(RULESETS.update().where(RULESETS.c.version == rs.version)
                             .values(published_at=now, published_by=by))
        with self.lock:
            self.engines.setdefault(rs.version, Engine(rs))
        self.refresh(force=True)
        info = self.info(rs.name, rs.version)
        assert info is not None
        return info

    def refresh(self, force: bool = False) -> None:
        """Re-read which version of each ruleset is active (published latest), at most every refresh_s."""
        now = time.monotonic()
        if not force and now - self.refreshed < self.refresh_s:
            return
        r = RULESETS.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(r.name, r.version).where(r.published_at.is_not(None))
                                .order_by(r.name, r.published_at, r.loaded_at)).all()
        active = {}
        for name, version in rows:
            active[name] = version  # the last published wins
        with self.lock:
            self.active = active
            self.refreshed = now

    # -- lookups -----------------------------------------------------------------------------------
    def engine(self, name: str, version: str = "") -> Engine:
        """The engine for a ruleset's active version, or a given version (hash or 8+ character prefix)."""
        self.refresh()
        if not version:
            version = self.active.get(name, "")
            if not version:
                raise BatonError("unknown_ruleset", f"no ruleset named {name!r}")
        full = self.resolve(version)
        engine = self.engine_for(full)
        if name and engine.ruleset.name != name:
            raise BatonError("unknown_ruleset", f"version {version} belongs to {engine.ruleset.name}, not {name}")
        return engine

    def resolve(self, version: str) -> str:
        if len(version) == 64 and version in self.engines:
            return version
        if len(version) < 8:
            raise BatonError("unknown_version", "a version prefix needs at least 8 characters")
        with self.store.engine.connect() as conn:
            found = conn.execute(sa.select(RULESETS.c.version).where(RULESETS.c.version.like(f"{version}%"))
                                 .limit(2)).scalars().all()
        if len(found) != 1:
            raise BatonError("unknown_version", f"no ruleset version {version!r}" if not found else
                             f"version prefix {version!r} is ambiguous")
        return str(found[0])

    def engine_for(self, version: str) -> Engine:
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
            return self.engines.setdefault(version, engine)

    def info(self, name: str, version: str) -> VersionInfo | None:
        r = RULESETS.c
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(r.name, r.version, r.loaded_at, r.published_at, r.published_by)
                               .where(r.version == version)).first()
        return VersionInfo(*row) if row else None

    def versions(self) -> list[VersionInfo]:
        r = RULESETS.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(r.name, r.version, r.loaded_at, r.published_at, r.published_by)
                                .order_by(r.name, r.loaded_at)).all()
        return [VersionInfo(*row) for row in rows]
