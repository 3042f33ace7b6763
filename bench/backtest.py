"""Backtests on every core: `baton replay --all` and `baton impact` over one stored history (claims-triage,
SQLite, canned answers), in this process and then split across --jobs spawned worker processes
(adapters/impact.py). Prints replays/s and what-ifs/s for each: end to end (the workers' start - a fresh
interpreter each, importing Baton: seconds on a busy machine - included), and once the workers are running
(from the first chunk's results to the last), with the ratios to one process; and checks that both ways give
the same results. The start is paid once per run, so it is the second rate that a long history sees.

    .venv/bin/python bench/backtest.py [--n 10000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.impact import Impact, impact_jobs, impact_steps, replay_jobs, replay_many  # noqa: E402
from adapters.rulesets import load_file  # noqa: E402
from adapters.store.sql import SqlStore  # noqa: E402
from engine.loop import Engine  # noqa: E402


def history(db: str, n: int, tmp: Path) -> None:
    lines = [json.dumps({"claim": {"claim_ref": f"C-{i}", "amount": 1000 * (i % 97), "policy_ref": "P-1",
                                   "description": "whiplash", "customer_tier": "standard"}}) for i in range(n)]
    (tmp / "claims.jsonl").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "adapters.cli.main", "decide", "claims-triage", "--batch",
                    str(tmp / "claims.jsonl"), "--db", db, "--answers", str(ROOT / "rulesets/demo-answers.json"),
                    "--rulesets", str(ROOT / "rulesets")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000, help="stored decisions")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-backtest-") as tmp_dir:
        tmp = Path(tmp_dir)
        db = str(tmp / "history.db")
        history(db, args.n, tmp)
        candidate = tmp / "candidate.yaml"
        candidate.write_text((ROOT / "rulesets/claims-triage.yaml").read_text().replace(
            "claim.amount > 50000", "claim.amount > 70000"))
        store = SqlStore(db, migrate=False)
        try:
            run(store, candidate, args)
        finally:
            store.close()


def run(store: SqlStore, candidate: Path, args: argparse.Namespace) -> None:
    ids = store.recent_ids("claims-triage")
    print(f"{len(ids):,} stored claims-triage decisions (SQLite), {args.jobs} worker processes against this one")

    start = time.perf_counter()
    alone = asyncio.run(replay_many(store, {}, ids))
    one = time.perf_counter() - start
    clock = Clock()
    split = replay_jobs(store.url, ids, args.jobs, clock.tick)
    assert [(r.decision_id, r.identical) for r in alone] == [(r.decision_id, r.identical) for r in split]
    print(clock.line("replay --all", len(ids), one, args.jobs) + f"   ({sum(r.identical for r in split):,} identical)")

    engine = Engine(load_file(candidate))
    impact = Impact()

    async def in_process() -> None:
        async for _ in impact_steps(store, engine, ids, impact, every=len(ids)):
            pass

    start = time.perf_counter()
    asyncio.run(in_process())
    one = time.perf_counter() - start
    clock = Clock()
    results = impact_jobs(store.url, candidate, ids, args.jobs, clock.tick)
    assert [(w.decision_id, w.changed) for w in impact.results] == [(w.decision_id, w.changed) for w in results]
    print(clock.line("impact", len(ids), one, args.jobs) + f"   ({len(impact.changed):,} changed)")


class Clock:
    """Progress callbacks timed: the start, the first chunk's results, the last."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: tuple[int, float] | None = None
        self.last = self.start

    def tick(self, done: int) -> None:
        self.last = time.perf_counter()
        if self.first is None:
            self.first = (done, self.last)

    def line(self, what: str, n: int, one: float, jobs: int) -> str:
        total = self.last - self.start
        first_n, first_t = self.first or (n, self.last)
        running = (n - first_n) / (self.last - first_t) if self.last > first_t else n / total
        return (f"  {what:<13} one process {n / one:>7,.0f}/s;  {jobs} processes {n / total:>7,.0f}/s end to end "
                f"({one / total:.2f}x, start-up {first_t - self.start:.1f} s), "
                f"{running:>7,.0f}/s running ({running / (n / one):.2f}x)")


if __name__ == "__main__":
    main()
