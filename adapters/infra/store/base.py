"""The store's foundation: database URLs, the engines and connections (SQLite: WAL, one serialised writer;
PostgreSQL: a pool), the schema (Alembic), and the tables. The store's areas (decisions.py, governance.py,
documents.py, escalations.py) build on it; sql.py joins them into SqlStore."""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from adapters.infra.store.tables import (
    CallRow,
    ChainCheckRow,
    ChainHead,
    CheckpointRow,
    CorpusRow,
    DecisionRow,
    DocumentRow,
    EscalationNoteRow,
    EscalationRow,
    MerkleNodeRow,
    OutboxRow,
    PassageRow,
    PublicationRow,
    RulesetVersion,
    ShadowResultRow,
    ShadowRow,
    TraceRow,
)
from adapters.infra.system import TimeOrderedIds
from engine.audit import GENESIS

DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]
TRACE = TraceRow.__table__  # type: ignore[attr-defined]
CALLS = CallRow.__table__  # type: ignore[attr-defined]
HEAD = ChainHead.__table__  # type: ignore[attr-defined]
RULESETS = RulesetVersion.__table__  # type: ignore[attr-defined]
ESCALATIONS = EscalationRow.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
CHAIN_CHECKS = ChainCheckRow.__table__  # type: ignore[attr-defined]
_IDS = TimeOrderedIds()  # notes and verifications: sortable by time, unique across processes
ESCALATION_NOTES = EscalationNoteRow.__table__  # type: ignore[attr-defined]
PUBLICATIONS = PublicationRow.__table__  # type: ignore[attr-defined]
SHADOWS = ShadowRow.__table__  # type: ignore[attr-defined]
SHADOW_RESULTS = ShadowResultRow.__table__  # type: ignore[attr-defined]
DOCUMENTS = DocumentRow.__table__  # type: ignore[attr-defined]
CORPORA = CorpusRow.__table__  # type: ignore[attr-defined]
PASSAGES = PassageRow.__table__  # type: ignore[attr-defined]
MERKLE = MerkleNodeRow.__table__  # type: ignore[attr-defined]
CHECKPOINTS = CheckpointRow.__table__  # type: ignore[attr-defined]
# the tree's complete subtrees of 2**6 leaves and more are stored (one row per 32 decisions); those below are
# hashed from the decisions' chain hashes when a proof needs them (64 at a time)
TREE_KEEP_FROM = 6
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_MAX_PARAMS = 999  # host parameters per statement on every SQLite build (newer ones allow 32,766)
HEAD_FIELDS = ("ruleset", "version", "outcome", "rule", "caller", "idempotency_key", "latency_ms", "cost_usd",
               "tokens")


def default_db_path() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "baton" / "baton.db"


def resolve_url(db: str | None) -> str:
    """A database URL from --db: a URL, a file path (SQLite), or nothing (the default SQLite file)."""
    if not db:
        path = default_db_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in db:
        Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def sqlite_memory_used() -> int | None:
    """Bytes the SQLite library holds in this process (page caches of every connection, statements, FTS
    buffers): sqlite3_memory_used() of the library the sqlite3 module loaded. None when it cannot be read."""
    global _SQLITE_LIB
    if _SQLITE_LIB is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
            lib.sqlite3_memory_used.restype = ctypes.c_int64
            _SQLITE_LIB = lib
        except (OSError, AttributeError):
            _SQLITE_LIB = False
    return int(_SQLITE_LIB.sqlite3_memory_used()) if _SQLITE_LIB else None


_SQLITE_LIB: Any = None


def limit_sqlite_memory(limit_bytes: int) -> bool:
    """Keep what SQLite holds in this process near ``limit_bytes`` (sqlite3_soft_heap_limit64): past it, the
    library frees pages from its connections' caches before taking more memory, so a worker's SQLite memory
    stays bounded however many pool connections it opens and however large the database grows (each
    connection's own cache would otherwise fill as the database grows, and a long soak's memory with it).
    Reads then come from the OS page cache. False when the library cannot be reached."""
    if sqlite_memory_used() is None:
        return False
    lib = _SQLITE_LIB
    lib.sqlite3_soft_heap_limit64.restype = ctypes.c_int64
    lib.sqlite3_soft_heap_limit64.argtypes = [ctypes.c_int64]
    lib.sqlite3_soft_heap_limit64(limit_bytes)
    return int(lib.sqlite3_soft_heap_limit64(-1)) == limit_bytes  # -1 asks for the limit in force


def unavailable(error: BaseException) -> bool:
    """Whether a store error means the database cannot be reached now (down, restarting, connection lost,
    locked): the caller may retry, as opposed to a bad record or a bug."""
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)) or (
        isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated)



class StoreBase:
    def __init__(self, url: str | None = None, migrate: bool = True) -> None:
        self.url = resolve_url(url)
        self.sqlite = self.url.startswith("sqlite")
        if self.sqlite:
            self.engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
            self.writer = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(self.writer, "connect", _sqlite_pragmas)
            sa.event.listen(self.writer, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            self.engine = sa.create_engine(self.url, pool_size=8, max_overflow=8, pool_pre_ping=True)
            self.writer = self.engine
        self.lock = threading.Lock() if self.sqlite else None
        self.lock_path = self.url.split("///", 1)[1] + ".writelock" if self.sqlite else ""
        mark = "?" if self.sqlite else "%s"
        self.insert_sql = {
            t.name: f"INSERT INTO {t.name} ({', '.join(c.name for c in t.columns)}) "
                    f"VALUES ({', '.join(mark for _ in t.columns)})"
            for t in (DECISIONS, CALLS)
        }
        self.copy_sql = {t.name: f"COPY {t.name} ({', '.join(c.name for c in t.columns)}) FROM STDIN"
                         for t in (DECISIONS, CALLS)}
        # the chain head, read and moved once per batch: plain driver SQL (SQLAlchemy building and compiling
        # the two statements was a fifth of a small batch's fixed cost)
        self.head_sql = f"SELECT seq, hash, tree_size, frontier FROM {HEAD.name} WHERE id = 1" + (
            "" if self.sqlite else " FOR UPDATE")
        self.move_head_sql = f"UPDATE {HEAD.name} SET seq = {mark}, hash = {mark}, tree_size = {mark}, " \
                             f"frontier = {mark} WHERE id = 1"
        self.insert_sql[MERKLE.name] = f"INSERT INTO {MERKLE.name} (level, idx, hash) VALUES ({mark}, {mark}, {mark})"
        # SQLite: writes are serialised (thread and file lock), so one connection stays open for them
        self._write_conn: Connection | None = None
        self.insert_sql["decision_search"] = (
            "INSERT INTO decision_search (decision_id, text) VALUES (?, ?)" if self.sqlite else
            "INSERT INTO decision_search (decision_id, tsv) VALUES (%s, to_tsvector('simple', %s))")
        if migrate:
            self.migrate()

    def close(self) -> None:
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        self.engine.dispose()
        if self.writer is not self.engine:
            self.writer.dispose()

    # -- schema ------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (serialised across processes)."""
        with self.writer.connect() as conn:
            if not self.sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_lock(727274)")
                conn.commit()
            try:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
                if conn.execute(sa.select(HEAD.c.id)).first() is None:
                    conn.execute(HEAD.insert().values(id=1, seq=0, hash=GENESIS, tree_size=0, frontier="",
                                                      log_id=uuid.uuid4().hex))
                conn.commit()
            finally:
                if not self.sqlite:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
                    conn.commit()


class _FileLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN (IMMEDIATE for writers)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

