"""Decide over gRPC at a fixed number of requests in flight, against a self-started `baton serve`
(SQLite, full trace, canned model/tool answers) or a running one (--address). Prints decisions/s and
latency percentiles, and the raw in-process engine throughput measured in the same run.

The load generator is h2load (Debian's nghttp2-client: `apt-get install nghttp2-client`) when it is
installed - it costs a few percent of a core, so the server gets the machine - else Python gRPC clients,
which cost about as much CPU as the server they measure.

    .venv/bin/python bench/grpc_load.py [--duration 20] [--inflight 64] [--workers 2] [--python-client]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from adapters.grpc.gen.baton.v1 import decision_pb2  # noqa: E402

CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}


def request() -> bytes:
    values = struct_pb2.Struct()
    values.update(CLAIM)
    return decision_pb2.DecideRequest(ruleset="claims-triage",
                                      facts=[decision_pb2.Fact(type="claim", values=values)]).SerializeToString()


async def client(address: str, inflight: int, duration: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    payload = request()
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        decide = channel.unary_unary("/baton.v1.DecisionService/Decide", request_serializer=lambda b: b,
                                     response_deserializer=decision_pb2.DecideResponse.FromString)
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                try:
                    await decide(payload, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(inflight)))
    out.put((latencies, errors))


def run_client(address: str, inflight: int, duration: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    asyncio.run(client(address, inflight, duration, out))


def h2load(address: str, inflight: int, duration: float) -> tuple[list[float], int, float]:
    """Latencies (s) and failures from h2load: 16 connections x inflight/16 streams, per-request log."""
    tmp = Path(tempfile.mkdtemp())
    body = request()
    (tmp / "req.bin").write_bytes(b"\x00" + struct.pack(">I", len(body)) + body)
    conns = min(16, inflight)
    start = time.perf_counter()
    out = subprocess.run(["h2load", "-D", str(int(duration)), "-c", str(conns), "-m", str(inflight // conns),
                          "-t", "1", "-d", str(tmp / "req.bin"), "-H", "content-type: application/grpc",
                          "-H", "te: trailers", f"--log-file={tmp / 'log.tsv'}",
                          f"http://{address}/baton.v1.DecisionService/Decide"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    lines = (tmp / "log.tsv").read_text().splitlines()
    latencies = [int(line.split()[2]) / 1e6 for line in lines if line.split()[1] == "200"]
    failed = len(lines) - len(latencies)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return latencies, failed, elapsed


def start_server(workers: int, db: str) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli.main", "serve", "--listen", f"127.0.0.1:{port}",
                             "--db", db, "--workers", str(workers), "--answers", "rulesets/demo-answers.json",
                             "--max-inflight", "4096"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    ready = 0
    assert proc.stdout is not None
    while ready < workers:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("server failed to start")
        ready += bool(re.search("baton listening", line))
    return proc, f"127.0.0.1:{port}"


def raw_engine_rate(n: int = 5000) -> float:
    from adapters.rulesets import load_file
    from engine.clock import FixedClock, SequentialIds
    from engine.loop import Engine
    from engine.recorded import RecordedAnswers

    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    engine = Engine(rs)
    test = rs.tests[0]

    async def go() -> None:
        for _ in range(n):
            answers = RecordedAnswers(test.answers)
            await engine.decide(test.given, answers, answers, FixedClock(), SequentialIds())

    start = time.perf_counter()
    asyncio.run(go())
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--address", default="")
    parser.add_argument("--python-client", action="store_true", help="use Python gRPC clients, not h2load")
    args = parser.parse_args()
    use_h2load = shutil.which("h2load") is not None and not args.python_client
    proc = None
    db = str(Path(tempfile.mkdtemp()) / "load.db")
    address = args.address
    if not address:
        proc, address = start_server(args.workers, db)
    if use_h2load:
        latencies, errors, elapsed = h2load(address, args.inflight, args.duration)
        latencies.sort()
        generator = "h2load"
    else:
        ctx = mp.get_context("spawn")
        q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        per = max(1, args.inflight // args.clients)
        clients = [ctx.Process(target=run_client, args=(address, per, args.duration, q))
                   for _ in range(args.clients)]
        start = time.perf_counter()
        for c in clients:
            c.start()
        results = [q.get() for _ in clients]
        for c in clients:
            c.join()
        elapsed = time.perf_counter() - start
        latencies = sorted(x for lat, _ in results for x in lat)
        errors = sum(e for _, e in results)
        generator = f"{args.clients} Python client process(es)"
    stored = None
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        from adapters.store.sql import SqlStore

        store = SqlStore(db, migrate=False)
        stored = store.count()
        intact = store.verify()[1] is None
    q_ = statistics.quantiles(latencies, n=100)
    print(f"Decide over gRPC, claims-triage, {args.inflight} in flight, {args.duration:.0f} s, "
          f"{args.workers} server workers, load from {generator}, SQLite, full trace")
    print(f"  decisions/s      {len(latencies) / elapsed:>9,.0f}   ({len(latencies)} ok, {errors} errors)")
    print(f"  latency p50      {q_[49] * 1000:>9.2f} ms")
    print(f"  latency p95      {q_[94] * 1000:>9.2f} ms")
    print(f"  latency p99      {q_[98] * 1000:>9.2f} ms")
    if stored is not None:
        print(f"  stored           {stored:>9,}   (hash chain {'intact' if intact else 'BROKEN'})")
    print(f"  raw in-process engine, same machine, same run: {raw_engine_rate():,.0f} decisions/s (one core)")


if __name__ == "__main__":
    main()
