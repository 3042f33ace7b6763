"""Unary Decide against DecideBatch on the same `baton serve` in the same run, and the floor: claims-triage,
SQLite, full trace, canned answers, a fixed number of calls in flight (h2load when installed, else Python
gRPC clients). In turn, on one server: unary Decide, then DecideBatch calls of --batch requests each, then
unary again and batches again (so neither side has the machine's good minute alone); then the empty grpc.aio
Decide of bench/empty_grpc.py (the framework with nothing behind it) under the unary load. Prints, for each:
decisions answered per second; decisions stored per second (counted in the store from the start of the load
until the server is idle again, over that time - a batch call cut off when the load's time ran out has
decided and stored part of its requests, which the answered rate does not see); calls/s, latency per call
and server CPU per stored decision (and the cores the server's processes used: on a machine shared with other
work, fewer than its workers). Then the ratios the issue asks for, from the stored rates: batches'
decisions/s over unary's, and unary's calls/s over the floor's; and what the two aims together ask of a
batched decision (at most two thirds of the floor's CPU per call) beside what it costs. Every decision is
checked in the store afterwards: the store must hold every decision the load saw answered, and at most the
calls still in flight when each load stopped more.

    .venv/bin/python bench/grpc_batch.py [--duration 10] [--inflight 64] [--batch 100] [--workers 2] [--no-floor]
        [--db-dir /dev/shm]

With the database on a disk, both sides can be held to the rate the disk takes the store's group commits at
(on a shared machine, often what it is); --db-dir /dev/shm (tmpfs) takes the disk out, to compare the CPU
each side costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import struct_pb2  # noqa: E402

from adapters.doors.cli.bench import CLAIM, _cpu, _start  # noqa: E402
from adapters.doors.grpc.gen.baton.v1 import decision_pb2  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402

DECIDE = "/baton.v1.DecisionService/Decide"
CONNECTIONS = 16  # the load's HTTP/2 connections (h2load -c), the calls in flight spread over them
CALL_TIMEOUT_S = 600  # a loaded machine can hold a batch call for a minute: not a failure of the server
BATCH = "/baton.v1.DecisionService/DecideBatch"


@dataclass
class Run:
    name: str
    inflight: int
    calls: int  # answered with HTTP 200 (gRPC status in the trailers: checked against the store afterwards)
    failed: int
    seconds: float
    per_call: int  # decisions per call
    latencies: list[float]
    cpu_s: float
    stored: int = 0  # decisions stored from the load's start until the server was idle again
    stored_s: float = 0.0  # that time

    @property
    def decisions_per_s(self) -> float:
        return self.calls * self.per_call / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per decision stored (per call answered when nothing is counted in a store), ms."""
        return self.cpu_s / max(1, self.stored or self.calls * self.per_call) * 1000

    @property
    def stored_per_s(self) -> float:
        return self.stored / self.stored_s if self.stored_s else self.decisions_per_s

    def line(self) -> str:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0.0] * 99
        cpu = self.cpu_ms
        stored = f"{self.stored_per_s:>7,.0f} stored/s " if self.stored_s else ""
        calls = self.calls / self.seconds
        return (f"  {self.name:<28} {self.decisions_per_s:>7,.0f} answered/s {stored}{calls:>7,.0f} calls/s"
                f"  p50 {q[49] * 1000:>7.1f} ms  p99 {q[98] * 1000:>7.1f} ms  CPU {cpu:.3f} ms/decision"
                f" ({self.cpu_s / (self.stored_s or self.seconds):.2f} cores)"
                f"{f'  ({self.failed} failed)' if self.failed else ''}")


def request(ref: str) -> decision_pb2.DecideRequest:
    values = struct_pb2.Struct()
    values.update({**CLAIM, "claim_ref": ref})
    return decision_pb2.DecideRequest(ruleset="claims-triage", facts=[decision_pb2.Fact(type="claim",
                                                                                        values=values)])


def framed(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def load(address: str, path: str, body: bytes, inflight: int, seconds: float,
         tmp: Path) -> tuple[list[float], int, int, float]:
    """(latencies of answered calls, answered, failed, elapsed)."""
    if shutil.which("h2load"):
        data = tmp / f"body-{len(body)}.bin"
        data.write_bytes(framed(body))
        conns = min(16, inflight)
        log = tmp / f"h2load-{time.monotonic_ns()}.tsv"
        start = time.perf_counter()
        subprocess.run(["h2load", "-D", str(max(1, round(seconds))), "-c", str(conns), "-m",
                        str(max(1, inflight // conns)), "-t", "1", "-d", str(data), "-H",
                        "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}",
                        f"http://{address}{path}"], capture_output=True, check=True)
        elapsed = time.perf_counter() - start
        rows = [line.split() for line in log.read_text().splitlines()]
        latencies = sorted(int(r[2]) / 1e6 for r in rows if r[1] == "200")
        return latencies, len(latencies), len(rows) - len(latencies), elapsed
    return asyncio.run(python_load(address, path, body, inflight, seconds))


async def python_load(address: str, path: str, body: bytes, inflight: int,
                      seconds: float) -> tuple[list[float], int, int, float]:
    import grpc

    latencies: list[float] = []
    failed = 0
    # as many connections as h2load's -c: each its own (a local subchannel pool), so that SO_REUSEPORT spreads
    # them over the server's workers - through one shared connection, one worker took every call
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(min(CONNECTIONS, inflight))]
    try:
        calls = [c.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                 for c in channels]
        end = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            nonlocal failed
            call = calls[n % len(calls)]
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    await call(body, timeout=CALL_TIMEOUT_S)
                    latencies.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError:
                    failed += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(inflight)))
    finally:
        for c in channels:
            await c.close(None)
    return sorted(latencies), len(latencies), failed, time.perf_counter() - start


def measure(name: str, address: str, pids: list[int], path: str, body: bytes, per_call: int,
            args: argparse.Namespace, tmp: Path, store: SqlStore | None = None) -> Run:
    before, count = _cpu(pids), store.count() if store is not None else 0
    start = time.perf_counter()
    latencies, calls, failed, elapsed = load(address, path, body, args.inflight, args.duration, tmp)
    run = Run(name, args.inflight, calls, failed, elapsed, per_call, latencies, 0.0)
    if store is not None:  # the calls cut off in flight finish their started requests: wait for them
        last, changed = store.count(), time.perf_counter()
        while True:  # idle: no new decision stored in 0.1 s
            time.sleep(0.1)
            if (now := store.count()) == last:
                break
            last, changed = now, time.perf_counter()
        run.stored, run.stored_s = last - count, changed - start
    run.cpu_s = _cpu(pids) - before
    return run


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10, help="seconds of each measured load")
    parser.add_argument("--inflight", type=int, default=64, help="calls in flight")
    parser.add_argument("--batch", type=int, default=100, help="requests per DecideBatch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-floor", action="store_true", help="skip the empty grpc.aio server's run")
    parser.add_argument("--db-dir", type=Path, help="put the SQLite database here (e.g. /dev/shm) [a temp dir]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-batch-") as tmp_dir:
        run(args, Path(tmp_dir))


def run(args: argparse.Namespace, tmp: Path) -> None:
    folder = args.db_dir or tmp
    db = str(folder / f"baton-batch-{os.getpid()}.db")
    try:
        measure_all(args, tmp, db)
    finally:
        for path in folder.glob(f"baton-batch-{os.getpid()}.db*"):
            path.unlink()


def measure_all(args: argparse.Namespace, tmp: Path, db: str) -> None:
    unary = request("C-1").SerializeToString()
    batch = decision_pb2.DecideBatchRequest(requests=[request(f"C-{i}") for i in range(args.batch)]
                                            ).SerializeToString()
    proc, pids, address = _start(["--db", db, "--workers", str(args.workers), "--answers",
                                  str(ROOT / "rulesets/demo-answers.json"), "--rulesets", str(ROOT / "rulesets")])
    runs: list[Run] = []
    store = SqlStore(db, migrate=False)
    try:
        try:
            for path, body in ((DECIDE, unary), (BATCH, batch)):  # warm up, and count what they stored
                runs.append(measure("warm-up", address, pids, path, body, 1 if path == DECIDE else args.batch,
                                    argparse.Namespace(inflight=min(8, args.inflight), duration=1), tmp, store))
            for rnd in (1, 2):
                runs.append(measure(f"unary Decide ({rnd})", address, pids, DECIDE, unary, 1, args, tmp, store))
                runs.append(measure(f"DecideBatch of {args.batch} ({rnd})", address, pids, BATCH, batch,
                                    args.batch, args, tmp, store))
        finally:
            stop(proc)
        stored, intact = store.count(), store.verify()[1] is None
    finally:
        store.close()
    answered = sum(r.calls * r.per_call for r in runs)
    cut_off = sum(r.inflight * r.per_call for r in runs)  # in flight when a load's time ran out: maybe stored
    print(f"claims-triage over gRPC, {args.inflight} calls in flight, {args.duration:.0f} s each, {args.workers} "
          f"server workers, SQLite in {args.db_dir or 'a temp dir'}, full trace; load from "
          f"{'h2load' if shutil.which('h2load') else 'Python'}")
    for r in runs[2:]:
        print(r.line())
    print(f"  stored {stored:,} decisions, answered {answered:,}, cut off in flight at most {cut_off:,}; "
          f"hash chain {'intact' if intact else 'BROKEN'}")
    unary_rate = sum(r.stored for r in runs[2::2]) / sum(r.stored_s for r in runs[2::2])
    batch_rate = sum(r.stored for r in runs[3::2]) / sum(r.stored_s for r in runs[3::2])
    print(f"  batches / unary, decisions stored/s: {batch_rate / unary_rate:.2f}x")
    if not answered <= stored <= answered + cut_off or not intact:
        print("  MISMATCH: answered calls without their decisions stored (gRPC errors in HTTP 200s?)")
        raise SystemExit(1)
    if args.no_floor:
        return
    proc, pids, address = _start(["--workers", str(args.workers)],
                                 command=[sys.executable, str(ROOT / "bench/empty_grpc.py")])
    try:
        measure("warm-up", address, pids, DECIDE, unary, 1, argparse.Namespace(inflight=min(8, args.inflight),
                                                                             duration=1), tmp)
        floor = measure("floor: empty grpc.aio Decide", address, pids, DECIDE, unary, 1, args, tmp)
    finally:
        stop(proc)
    print(floor.line())
    print(f"  unary / floor, calls/s: {unary_rate / floor.decisions_per_s:.0%}")
    # Both aims at once (unary >= half the floor, batches >= 3x unary) need a batched decision to cost at most
    # 2/3 of the floor's CPU per call: unary at twice the floor's CPU, a batched decision at a third of that
    batched = statistics.median(r.cpu_ms for r in runs[3::2])
    print(f"  both aims at once need a batched decision's CPU <= 2/3 of the floor's per call: {batched:.3f} ms "
          f"against {floor.cpu_ms * 2 / 3:.3f} ms ({batched / (floor.cpu_ms * 2 / 3):.1f}x over)")
    print(f"  batches / floor, decisions/s over calls/s: {batch_rate / floor.decisions_per_s:.2f}x")


if __name__ == "__main__":
    main()
