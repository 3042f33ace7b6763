"""Backtests on every core: `baton replay --all` and `baton impact` over one stored history (claims-triage,
canned answers), in this process and then split across --jobs worker processes (adapters/usecases/impact.py), on SQLite
and, with --pg, on PostgreSQL. Prints replays/s and what-ifs/s each way, end to end (the workers' start
included: forked from this process, Baton already imported and the candidate compiled), and the ratio to one
process; checks that both ways give the same results. The two ways alternate --rounds times, so a load that
moves during the run moves both; the load average is printed with each row. Each row also gives the CPU seconds
per 1,000 decisions both ways (this process and its workers), which a busy machine moves less: equal CPU
means the split costs nothing; of the split's, this process's share (receiving results) is printed apart, as
it runs on the workers' cores. A first row, "ceiling", runs pure Python arithmetic the
same two ways: the ratio any work could reach on this machine at this moment (near 2x on two idle cores).

    .venv/bin/python bench/backtest.py [--n 20000] [--jobs 2] [--rounds 2] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402
from adapters.usecases.impact import Impact, impact_jobs, impact_steps, replay_jobs, replay_many, start_method  # noqa: E402
from engine.loop import Engine  # noqa: E402


def history(db: str, n: int, tmp: Path) -> None:
    lines = [json.dumps({"claim": {"claim_ref": f"C-{i}", "amount": 1000 * (i % 97), "policy_ref": "P-1",
                                   "description": "whiplash", "customer_tier": "standard"}}) for i in range(n)]
    (tmp / "claims.jsonl").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", "decide", "claims-triage", "--batch",
                    str(tmp / "claims.jsonl"), "--db", db, "--answers", str(ROOT / "rulesets/demo-answers.json"),
                    "--rulesets", str(ROOT / "rulesets")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


@contextmanager
def pg_database(admin: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server at ``admin``, dropped afterwards (as tests/conftest.py does)."""
    name = f"baton_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{admin.rsplit('/', 1)[0].split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000, help="stored decisions")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=2, help="times each way is run, alternating")
    parser.add_argument("--pg", help="also on PostgreSQL: an admin URL (a fresh database is made and dropped)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-backtest-") as tmp_dir:
        tmp = Path(tmp_dir)
        candidate = tmp / "candidate.yaml"
        candidate.write_text((ROOT / "rulesets/claims-triage.yaml").read_text().replace(
            "claim.amount > 50000", "claim.amount > 70000"))
        print(f"{args.n:,} stored claims-triage decisions, {args.jobs} worker processes ({start_method()}ed) "
              f"against this one, {os.cpu_count()} cores")
        ceiling(args)
        if not args.no_sqlite:
            measure("SQLite", str(tmp / "history.db"), candidate, tmp, args)
        if args.pg:
            with pg_database(args.pg) as url:
                measure("PostgreSQL", url, candidate, tmp, args)


def measure(backend: str, db: str, candidate: Path, tmp: Path, args: argparse.Namespace) -> None:
    history(db, args.n, tmp)
    store = SqlStore(db, migrate=False)
    try:
        ids = store.recent_ids("claims-triage", limit=args.n)
        assert len(ids) == args.n, len(ids)
        engine = Engine(load_file(candidate))

        def replay_one() -> list[Any]:
            return [(r.decision_id, r.identical) for r in asyncio.run(replay_many(store, {}, ids))]

        def replay_split() -> list[Any]:
            return [(r.decision_id, r.identical) for r in replay_jobs(store, ids, args.jobs, lambda _: None)]

        def impact_one() -> list[Any]:
            impact = Impact()

            async def go() -> None:
                async for _ in impact_steps(store, engine, ids, impact, every=len(ids)):
                    pass

            asyncio.run(go())
            return [(w.decision_id, w.changed) for w in impact.results]

        def impact_split() -> list[Any]:
            return [(w.decision_id, w.changed)
                    for w in impact_jobs(store, engine, candidate, ids, args.jobs, lambda _: None)]

        row(backend, "replay --all", len(ids), replay_one, replay_split, args)
        row(backend, "impact", len(ids), impact_one, impact_split, args)
    finally:
        store.close()


def cpu() -> tuple[float, float]:
    """CPU seconds used by this process, and by its children that have exited (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def ceiling(args: argparse.Namespace) -> None:
    n = 10_000_000
    alone: list[float] = []
    jobs: list[float] = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        spin(n * args.jobs)
        alone.append(time.perf_counter() - start)
        start = time.perf_counter()
        with mp.get_context(start_method()).Pool(args.jobs) as pool:
            pool.map(spin, [n] * args.jobs)
        jobs.append(time.perf_counter() - start)
    print(f"  {'ceiling':<24} pure Python arithmetic, {args.jobs} processes against one: "
          f"{min(alone) / min(jobs):.2f}x   (load {os.getloadavg()[0]:.1f})")


def row(backend: str, what: str, n: int, one: Callable[[], list[Any]], split: Callable[[], list[Any]],
        args: argparse.Namespace) -> None:
    alone: list[tuple[float, float, float]] = []
    jobs: list[tuple[float, float, float]] = []
    expected: list[Any] | None = None
    for _ in range(args.rounds):
        for way, times in ((one, alone), (split, jobs)):
            start, (own, children) = time.perf_counter(), cpu()
            got = way()
            own_after, children_after = cpu()
            times.append((time.perf_counter() - start, own_after - own, children_after - children))
            expected = got if expected is None else expected
            assert got == expected, f"{what}: {args.jobs} processes differ from one"
    (a, a_own, a_children), (b, b_own, b_children) = min(alone), min(jobs)
    print(f"  {backend:<10} {what:<13} one process {n / a:>7,.0f}/s   {args.jobs} processes {n / b:>7,.0f}/s   "
          f"{a / b:.2f}x   CPU s per 1,000: {1000 * (a_own + a_children) / n:.2f} vs "
          f"{1000 * (b_own + b_children) / n:.2f} (this process's share {1000 * b_own / n:.2f})   "
          f"(best of {args.rounds}; all: {' '.join(f'{n / t:,.0f}' for t, _, _ in alone)} vs "
          f"{' '.join(f'{n / t:,.0f}' for t, _, _ in jobs)}; load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
