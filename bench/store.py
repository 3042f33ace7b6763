"""The store's throughput on SQLite and PostgreSQL (claims-triage, full trace, durable before acknowledged):

- *stored/s*: decisions made beforehand, saved through the group-commit writer by 128 concurrent callers
  in one process - what the store itself sustains;
- *decided+stored/s*: deciding and storing in one process, and in four processes on one database;
- *replays/s*: exact replays of stored decisions, read a page at a time as `baton replay`'s bulk form and
  impact analysis read them, in one process;
- *claim ms*: one outbox poll (claim 32 due effects of a connector), median of 20, while ``--backlog``
  effects wait for a connector this sender does not have - it must not grow with the backlog;
- SQLite alone on this machine in the same run (hash-chained 2 KB records in fsync'd groups of 64): the
  machine's speed changes from day to day, so stored/s is read as a share of that;
- and, last, the Merkle tree's upkeep (engine/merkle.py) as CPU per decision beside the CPU of storing one.

Run: .venv/bin/python bench/store.py [--n 5000] [--backlog 100000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402
from adapters.infra.store.writer import GroupWriter  # noqa: E402
from adapters.infra.system import SystemClock, TimeOrderedIds  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.record import DecisionRecord  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402
from engine.replay import replay  # noqa: E402


async def decided(rs: Any, n: int) -> list[DecisionRecord]:
    engine = Engine(rs)
    clock, ids = SystemClock(), TimeOrderedIds()
    out = []
    for i in range(n):
        test = rs.tests[i % len(rs.tests)]
        answers = RecordedAnswers(test.answers)
        out.append((await engine.decide(test.given, answers, answers, clock, ids)).to_dict())
    return out


def store_only(url: str, n: int, concurrency: int = 128) -> float:
    """Seconds to store ``n`` decisions made beforehand, through the group-commit writer."""
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    records = asyncio.run(decided(rs, n))

    async def store(writer: GroupWriter, record: DecisionRecord) -> None:
        await writer.save(record)

    return timed_writes(url, rs, records, store, concurrency)


def write_many(url: str, n: int, concurrency: int = 128) -> float:
    """Seconds to decide and store ``n`` decisions."""
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    engine = Engine(rs)
    clock, ids = SystemClock(), TimeOrderedIds()

    async def decide_and_store(writer: GroupWriter, i: int) -> None:
        test = rs.tests[i % len(rs.tests)]
        answers = RecordedAnswers(test.answers)
        d = await engine.decide(test.given, answers, answers, clock, ids)
        await writer.save(d.to_dict())

    return timed_writes(url, rs, list(range(n)), decide_and_store, concurrency)


def timed_writes(url: str, rs: Any, items: list[T], one: Callable[[GroupWriter, T], Awaitable[None]],
                 concurrency: int) -> float:
    """Seconds for ``concurrency`` callers, each taking its share of ``items`` one at a time, to finish
    (every write committed)."""
    store = SqlStore(url)
    store.save_ruleset(rs)
    writer = GroupWriter(store)

    async def run() -> None:
        async def caller(mine: list[T]) -> None:
            for item in mine:
                await one(writer, item)

        await asyncio.gather(*(caller(items[k::concurrency]) for k in range(concurrency)))

    start = time.perf_counter()
    asyncio.run(run())
    writer.close()
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


PAGE = 100  # stored decisions read per query when replaying
T = TypeVar("T")


def _worker(url: str, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    out.put(write_many(url, n))


def parallel(url: str, n: int, procs: int) -> float:
    SqlStore(url).close()
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    start = time.perf_counter()
    ps = [mp.Process(target=_worker, args=(url, n // procs, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return time.perf_counter() - start


def replays_per_s(url: str, limit: int) -> tuple[float, int]:
    """Exact replays of the newest ``limit`` decisions, read ``PAGE`` at a time (one query each)."""
    store = SqlStore(url)
    ids = store.recent_ids("claims-triage", limit=limit)
    engines: dict[str, Engine] = {}
    from engine.language.loader import load_ruleset

    async def run() -> int:
        identical = 0
        for start in range(0, len(ids), PAGE):
            for record in store.get_many(ids[start:start + PAGE]):
                assert record is not None
                if record["version"] not in engines:
                    found = store.ruleset_source(record["version"])
                    assert found is not None
                    engines[record["version"]] = Engine(load_ruleset(found[1], found[0]))
                result = await replay(engines[record["version"]], record)
                identical += result.identical
        return identical

    start = time.perf_counter()
    identical = asyncio.run(run())
    return len(ids) / (time.perf_counter() - start), identical


def claim_ms(url: str, backlog: int, polls: int = 20) -> float:
    import sqlalchemy as sa

    store = SqlStore(url)
    now = time.time()
    insert = sa.text("INSERT INTO outbox (id, decision_id, name, payload, status, attempts, next_at, created_at) "
                     "VALUES (:id, :id, :name, '{}', 'pending', 0, :at, 0)")
    rows = [{"id": f"w{i}", "name": "down-connector", "at": now - 1000 + i / 1e4} for i in range(backlog)]
    rows += [{"id": f"e{i}", "name": "email", "at": now - 500 + i / 10} for i in range(32 * polls)]
    for start in range(0, len(rows), 5000):
        with store.writer.begin() as conn:
            conn.execute(insert, rows[start:start + 5000])
    times = []
    for _ in range(polls):
        started = time.perf_counter()
        assert len(store.claim_effects(now, 30, 32, ["email"])) == 32
        times.append(time.perf_counter() - started)
    store.close()
    return sorted(times)[polls // 2] * 1000


def sqlite_alone(path: str, n: int, group: int = 64, size: int = 2048) -> float:
    """SQLite's own rate on this machine, in the same run: ``n`` records of ``size`` bytes, each hash-chained
    to the one before it (the store's chain hash), inserted with the sqlite3 module in fsync'd transactions of
    ``group`` (WAL, synchronous=FULL, as the store runs) - what Baton's stored/s is read against, as
    grpc_load.py's Baton is read against the empty server."""
    import os
    import sqlite3

    from engine.audit import GENESIS, chain_hash_of

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, prev TEXT NOT NULL, hash TEXT NOT NULL, "
                 "body TEXT NOT NULL)")
    bodies = [os.urandom(size // 2).hex() for _ in range(min(n, 256))]
    prev = GENESIS
    start = time.perf_counter()
    for first in range(0, n, group):
        rows = []
        for seq in range(first, min(n, first + group)):
            body = bodies[seq % len(bodies)]
            digest = chain_hash_of(prev, seq, body.encode())
            rows.append((seq, prev, digest, body))
            prev = digest
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def tree_share(url: str, n: int, batch: int = 64) -> tuple[float, float]:
    """The Merkle tree's part of the writer's work (issue 38), both as CPU time in this run: microseconds per
    decision for the tree upkeep alone (leaf hash, frontier, completed subtrees, the frontier's hex) and for
    storing a decision whole (``save_batch`` in groups of ``batch``, records made beforehand, which includes
    that upkeep). CPU time, not wall time: other processes on the machine move it far less."""
    from adapters.infra.store.base import TREE_KEEP_FROM
    from adapters.infra.store.sql import Pending
    from engine.audit import tree_leaf
    from engine.merkle import Frontier

    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    records = asyncio.run(decided(rs, n))
    store = SqlStore(url)
    start = time.process_time()
    for first in range(0, n, batch):
        store.save_batch([Pending(r) for r in records[first:first + batch]])
    stored_us = (time.process_time() - start) / n * 1e6
    digests = [h for page in store.chain_hashes() for _, h in page]
    store.close()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        frontier = Frontier()
        for first in range(0, n, batch):
            frontier = Frontier.from_hex(frontier.size, frontier.to_hex())
            nodes = []
            for digest in digests[first:first + batch]:
                for level, idx, h in frontier.append(tree_leaf(digest)):
                    if level >= TREE_KEEP_FROM:
                        nodes.append((level, idx, h.hex()))
            frontier.to_hex()
        best = min(best, time.process_time() - start)
    return best / n * 1e6, stored_us


def pg_database(admin: str, made: list[str]) -> str:
    import psycopg

    name = f"baton_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    made.append(name)
    return admin.rsplit("/", 1)[0] + "/" + name


def drop_databases(admin: str, names: list[str]) -> None:
    import psycopg

    with psycopg.connect(admin.replace("+psycopg", ""), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    made: list[str] = []  # PostgreSQL databases made for the runs, dropped at the end
    try:
        with tempfile.TemporaryDirectory(prefix="baton-store-") as tmp_dir:
            run(args, Path(tmp_dir), made)
    finally:
        if made:
            drop_databases(args.pg, made)


def run(args: argparse.Namespace, tmp: Path, made: list[str]) -> None:
    rows = []
    stores: tuple[tuple[str, Callable[[str], str]], ...] = (
        ("SQLite", lambda tag: str(tmp / f"{tag}.db")), ("PostgreSQL", lambda tag: pg_database(args.pg, made)))
    for name, make in stores:
        try:
            url1 = make("one")
            SqlStore(url1).close()
        except Exception as e:  # PostgreSQL not running
            print(f"{name}: skipped ({type(e).__name__})")
            continue
        stored = args.n / store_only(make("stored"), args.n)
        t1 = write_many(url1, args.n)
        t4 = parallel(make("four"), args.n, 4)
        rate, identical = replays_per_s(url1, min(args.n, 5000))
        claim = claim_ms(make("outbox"), args.backlog)
        rows.append((name, stored, args.n / t1, args.n / t4, rate, identical, claim))
    print(f"claims-triage, {args.n} decisions each run, full trace, group commit (SQLite: WAL, synchronous=FULL)")
    print(f"{'store':<12}{'stored/s':>10}{'decided+stored/s':>18}{'4 processes/s':>15}{'replays/s':>11}  identical"
          f"  claim ms ({args.backlog:,} waiting)")
    for name, only, one, four, rps, identical, claim in rows:
        print(f"{name:<12}{only:>10,.0f}{one:>18,.0f}{four:>15,.0f}{rps:>11,.0f}  {identical:>9}  {claim:>8.2f}")
    alone = sqlite_alone(str(tmp / "alone.db"), args.n)
    print(f"SQLite alone, same run: {alone:,.0f} hash-chained 2 KB records/s in fsync'd groups of 64 (the sqlite3 "
          "module, WAL, synchronous=FULL)" + (f"; Baton stores {rows[0][1] / alone:.0%} of that" if rows and
                                              rows[0][0] == "SQLite" else ""))
    tree_us, stored_us = tree_share(str(tmp / "tree.db"), args.n)
    print(f"Merkle tree upkeep, same run: {tree_us:.1f} us of CPU per decision, {tree_us / stored_us:.1%} of the "
          f"{stored_us:.0f} us the SQLite store's CPU spends storing one (groups of 64)")


if __name__ == "__main__":
    main()
