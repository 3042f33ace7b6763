"""`baton bench`: the standard load against a self-started server (or a running one), in one table.

- rules-only: Decide on claims-triage with canned model/tool answers, 64 in flight;
- model-bound: the same with the classifier served by the bundled fake OpenAI server answering after
  200 ms through LiteLLM, 1,024 in flight.
Load comes from h2load (Debian's nghttp2-client) when installed - it costs the server almost no CPU -
else from Python gRPC clients. CPU per decision is the server processes' CPU time over the decisions.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import struct_pb2
from rich.table import Table

from adapters.doors.cli.common import out
from adapters.doors.grpc.gen.baton.v1 import decision_pb2
from adapters.infra.store.writer import WRITER_THREAD

ROOT = Path(__file__).resolve().parents[3]
CLAIM: dict[str, Any] = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}
INJURY = {"category": "injury", "confidence": 0.93, "fraud_signals": []}


@dataclass(slots=True)
class Result:
    name: str
    decisions: int
    failed: int
    seconds: float
    latencies: list[float]
    cpu_s: float | None
    cpu_split: dict[str, float] = field(default_factory=dict)  # seconds by thread kind, all workers summed

    def row(self) -> list[str]:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0.0] * 99
        per = f"{self.cpu_s / self.decisions * 1000:.2f}" if self.cpu_s is not None and self.decisions else "-"
        split = " / ".join(f"{self.cpu_split.get(k, 0.0) / self.decisions * 1000:.2f}" for k in THREAD_KINDS[:2]) \
            if self.cpu_split and self.decisions else "-"
        return [self.name, f"{self.decisions / self.seconds:,.0f}", f"{q[49] * 1000:.1f}", f"{q[94] * 1000:.1f}",
                f"{q[98] * 1000:.1f}", per, split, str(self.failed)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body() -> bytes:
    values = struct_pb2.Struct()
    values.update(CLAIM)
    message = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[decision_pb2.Fact(type="claim",
                                                                                        values=values)])
    payload = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def _stat_cpu(stat: str) -> float:
    """User plus system CPU seconds from a /proc .../stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += _stat_cpu(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
    return total


THREAD_KINDS = ("event loop", "store writer", "gRPC core", "other threads")


def _thread_cpu(pids: list[int]) -> dict[tuple[int, int], tuple[str, float]]:
    """CPU seconds of every thread of the workers, with its kind: the event loop (gRPC handlers, the engine,
    serialisation), the store writer, gRPC core's own threads, and the rest (gRPC's poller, executors)."""
    out = {}
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            kind = "event loop" if tid == pid else "store writer" if comm == WRITER_THREAD else \
                "gRPC core" if comm.startswith(("event_engine", "grpc", "default-executo", "resolver")) else \
                "other threads"
            out[(pid, tid)] = (kind, _stat_cpu(text))
    return out


def _split(before: dict[tuple[int, int], tuple[str, float]], after: dict[tuple[int, int], tuple[str, float]]
           ) -> dict[str, float]:
    split = dict.fromkeys(THREAD_KINDS, 0.0)
    for key, (kind, seconds) in after.items():
        split[kind] += seconds - before.get(key, (kind, 0.0))[1]
    return split


def _load(address: str, inflight: int, seconds: float, tmp: Path) -> tuple[list[float], int, float]:
    if shutil.which("h2load"):
        (tmp / "req.bin").write_bytes(_body())
        conns = min(16, inflight)
        log = tmp / f"h2load-{time.monotonic_ns()}.tsv"
        start = time.perf_counter()
        subprocess.run(["h2load", "-D", str(int(seconds)), "-c", str(conns), "-m", str(max(1, inflight // conns)),
                        "-t", "1", "-d", str(tmp / "req.bin"), "-H", "content-type: application/grpc",
                        "-H", "te: trailers", f"--log-file={log}",
                        f"http://{address}/baton.v1.DecisionService/Decide"], capture_output=True, check=True)
        elapsed = time.perf_counter() - start
        rows = [line.split() for line in log.read_text().splitlines()]
        latencies = sorted(int(r[2]) / 1e6 for r in rows if r[1] == "200")
        return latencies, len(rows) - len(latencies), elapsed
    return asyncio.run(_python_load(address, inflight, seconds))


async def _python_load(address: str, inflight: int, seconds: float) -> tuple[list[float], int, float]:
    import grpc

    payload = _body()[5:]
    latencies: list[float] = []
    failed = 0
    async with grpc.aio.insecure_channel(address) as channel:
        decide = channel.unary_unary("/baton.v1.DecisionService/Decide", request_serializer=lambda b: b,
                                     response_deserializer=decision_pb2.DecideResponse.FromString)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failed
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    await decide(payload, timeout=30)
                    latencies.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError:
                    failed += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
    return sorted(latencies), failed, time.perf_counter() - start


def _start(args: list[str], command: list[str] | None = None) -> tuple[subprocess.Popen[str], list[int], str]:
    """Start ``baton serve`` (or ``command``, which takes the same --listen and --workers and prints the same
    "listening on ADDR (pid N" line per worker) on a free port; the worker pids and the address."""
    port = _free_port()
    base = command or [sys.executable, "-m", "adapters.doors.cli.main", "serve", "--max-inflight", "100000"]
    proc = subprocess.Popen([*base, "--listen", f"127.0.0.1:{port}", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    pids: list[int] = []
    assert proc.stdout is not None
    while len(pids) < workers:
        line = proc.stdout.readline()
        if not line:
            raise typer.Exit(1)
        pids.extend(int(pid) for pid in re.findall(r"listening on [^(]*\(pid (\d+)", line))
    return proc, pids, f"127.0.0.1:{port}"


def run_scenario(name: str, serve_args: list[str], inflight: int, seconds: float, tmp: Path,
                 command: list[str] | None = None) -> Result:
    proc, pids, address = _start(serve_args, command)
    try:
        _load(address, min(inflight, 64), 2, tmp)  # warm up
        before, threads_before = _cpu(pids), _thread_cpu(pids)
        latencies, failed, elapsed = _load(address, inflight, seconds, tmp)
        cpu, split = _cpu(pids) - before, _split(threads_before, _thread_cpu(pids))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            out.print(f"[yellow]{name}: the server took over 120 s to stop after the load; killed[/]", markup=True)
            proc.kill()
            proc.wait()
    return Result(name, len(latencies), failed, elapsed, latencies, cpu, split)


def raw_engine_rate(n: int = 5000) -> float:
    from adapters.infra.rulesets import load_file
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


def bench(seconds: Annotated[float, typer.Option(help="seconds of load per scenario")] = 20,
          workers: Annotated[int, typer.Option(help="server worker processes")] = 2,
          pg: Annotated[str | None, typer.Option(help="also run rules-only on this PostgreSQL URL")] = None,
          model_inflight: Annotated[int, typer.Option(help="decisions in flight, model-bound")] = 1024,
          model_latency_ms: Annotated[int, typer.Option(help="fake model answer delay")] = 200) -> None:
    """Run the standard load and print decisions/s, latency percentiles and CPU per decision."""
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    rulesets = str(ROOT / "rulesets")
    canned = ["--answers", str(ROOT / "rulesets/demo-answers.json"), "--rulesets", rulesets, "--workers", str(workers)]
    results = [run_scenario("rules-only, SQLite", ["--db", str(tmp / "bench.db"), *canned], 64, seconds, tmp)]
    if pg:
        results.append(run_scenario("rules-only, PostgreSQL", ["--db", pg, *canned], 64, seconds, tmp))
    fake = subprocess.Popen([sys.executable, "-m", "adapters.infra.llm.fake_openai"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert fake.stdout is not None
        base = f"http://127.0.0.1:{fake.stdout.readline().split()[-1]}"
        import httpx

        httpx.post(f"{base}/script", json={"model": "m-fast", "default": {
            "status": 200, "content": json.dumps(INJURY), "delay_ms": model_latency_ms}})
        config = tmp / "baton.yaml"
        config.write_text(json.dumps({
            "models": {"model_list": [{"model_name": "fast", "litellm_params": {
                "model": "openai/m-fast", "api_base": f"{base}/v1", "api_key": "os.environ/BENCH_KEY"}}]},
            "tools": {"sql": {"type": "sql", "url": f"sqlite:///{tmp / 'policies.db'}"}}}))
        import sqlite3

        with sqlite3.connect(tmp / "policies.db") as db:
            db.execute("create table policies (policy_ref text primary key, active boolean, coverage_limit real)")
            db.execute("insert into policies values ('P-1', 1, 100000)")
        os.environ.setdefault("BENCH_KEY", "sk-bench")
        results.append(run_scenario(f"model-bound ({model_latency_ms} ms model), SQLite",
                            ["--db", str(tmp / "model.db"), "--config", str(config), "--rulesets", rulesets,
                             "--workers", str(workers)], model_inflight, seconds, tmp))
    finally:
        fake.terminate()
    table = Table("scenario", "decisions/s", "p50 ms", "p95 ms", "p99 ms", "CPU ms/decision",
                  "loop / writer ms", "failed",
                  title=f"baton bench: {workers} worker(s), {seconds:.0f} s each, load from "
                        f"{'h2load' if shutil.which('h2load') else 'Python clients'}")
    for r in results:
        table.add_row(*r.row())
    out.print(table)
    out.print(f"raw in-process engine (one core, no gRPC, no store), same run: {raw_engine_rate():,.0f} decisions/s")
