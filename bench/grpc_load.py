"""Decide over gRPC at a fixed number of requests in flight against a self-started `baton serve`
(SQLite, full trace, canned model/tool answers): decisions/s, latency percentiles, CPU per decision,
and, in the same run, the raw in-process engine and the floor: the same load against the same Decide
method served by grpc.aio with nothing behind it (bench/empty_grpc.py), in as many processes - what
the framework alone reaches on this machine. The machinery is `baton bench`'s (adapters/doors/cli/bench.py):
h2load when installed, else Python gRPC clients.

    .venv/bin/python bench/grpc_load.py [--duration 20] [--inflight 64] [--workers 2] [--db URL] [--no-floor]
        [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.doors.cli.bench import Result, raw_engine_rate, run_scenario  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402


def report(result: Result) -> None:
    q = statistics.quantiles(result.latencies, n=100)
    print(f"  decisions/s      {result.decisions / result.seconds:>9,.0f}   ({result.decisions} ok, "
          f"{result.failed} failed)")
    for name, i in (("p50", 49), ("p95", 94), ("p99", 98)):
        print(f"  latency {name}      {q[i] * 1000:>9.2f} ms")
    if result.cpu_s is not None:
        print(f"  server CPU       {result.cpu_s / result.decisions * 1000:>9.2f} ms per call")
        for kind, seconds in result.cpu_split.items():
            print(f"    {kind:<14} {seconds / result.decisions * 1000:>9.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="")
    parser.add_argument("--no-floor", action="store_true", help="skip the empty grpc.aio server's run")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the event loop of Baton's workers and of the floor's alike")
    args = parser.parse_args()
    os.environ["BATON_EVENT_LOOP"] = args.loop  # Baton's workers read it as event_loop:
    with tempfile.TemporaryDirectory(prefix="baton-load-") as tmp_dir:  # the database and h2load's logs
        run(args, Path(tmp_dir))


def run(args: argparse.Namespace, tmp: Path) -> None:
    db = args.db or str(tmp / "load.db")
    result = run_scenario("load", ["--db", db, "--workers", str(args.workers), "--answers",
                           str(ROOT / "rulesets/demo-answers.json"), "--rulesets", str(ROOT / "rulesets")],
                          args.inflight, args.duration, tmp)
    store = SqlStore(db, migrate=False)
    try:
        summarise(args, db, result, store, tmp)
    finally:
        store.close()


def summarise(args: argparse.Namespace, db: str, result: Result, store: SqlStore, tmp: Path) -> None:
    print(f"Decide over gRPC, claims-triage, {args.inflight} in flight, {args.duration:.0f} s, {args.workers} "
          f"server workers, {db if args.db else 'SQLite'}, full trace")
    report(result)
    bound = args.inflight / 0.025
    print(f"  (Little's law: with {args.inflight} always in flight the mean latency is {args.inflight} / throughput, "
          f"so a p99 of 25 ms needs more than {bound:,.0f} decisions/s)")
    intact = store.verify()[1] is None
    print(f"  stored           {store.count():>9,}   (hash chain {'intact' if intact else 'BROKEN'})")
    print(f"  raw in-process engine, same machine, same run: {raw_engine_rate():,.0f} decisions/s (one core)")
    if not args.no_floor:
        floor = run_scenario("floor", ["--workers", str(args.workers), "--loop", args.loop], args.inflight,
                             args.duration, tmp,
                             command=[sys.executable, str(ROOT / "bench/empty_grpc.py")])
        print(f"The floor, same load: an empty grpc.aio Decide handler, {args.workers} processes, nothing stored")
        report(floor)
        print(f"  Baton / floor: {result.decisions / result.seconds / (floor.decisions / floor.seconds):.0%} "
              "of the framework's own throughput")


if __name__ == "__main__":
    main()
