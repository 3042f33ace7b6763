"""Decisions/s through JetStream intake (`baton consume`) next to the same decisions over gRPC, in one run.

Rules-only ruleset (credit-limit: decision tables, no model or tool calls), store on SQLite with full
trace, one server process each. Intake: N requests are published to a JetStream subject up front and
the clock runs until every reply has arrived (decide + store + reply publish + ack per message). gRPC:
the same N requests with `--inflight` in flight from an asyncio client. With `--profile`, the consumer
runs under cProfile and the top functions by own time show where the time goes.

    .venv/bin/python bench/intake.py [--n 5000] [--inflight 64] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APPLICANT = {"applicant_ref": "A-{i}", "credit_score": 700, "employment": "employed", "annual_income": 65000,
             "monthly_debt": 100, "country": "GB"}


def applicant(i: int) -> dict[str, Any]:
    return {**APPLICANT, "applicant_ref": f"A-{i}", "credit_score": 560 + (i * 7) % 290}


def start(args: list[str], marker: str, profile: Path | None = None) -> subprocess.Popen[str]:
    prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    proc = subprocess.Popen([*prefix, "-m", "adapters.doors.cli.main", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return proc
        if not line:
            break
    raise RuntimeError(f"{args[0]} did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(120)


async def intake(n: int, tmp: Path, profile: bool) -> tuple[float, Path | None]:
    import nats

    tag = uuid.uuid4().hex[:8]
    subject, reply, stream = f"bench.req.{tag}", f"bench.reply.{tag}", f"BENCH_{tag.upper()}"
    config = {"consumers": {"in": {"type": "jetstream", "url": "nats://127.0.0.1:4222", "stream": stream,
                                   "subject": subject, "durable": f"bench{tag}", "reply_subject": reply,
                                   "max_inflight": 256, "ack_wait_s": 60}},
              "rulesets": str(ROOT / "rulesets"), "corpora": str(tmp / "none"), "log_level": "warning"}
    (tmp / "intake.yaml").write_text(json.dumps(config))
    prof = tmp / "consume.prof" if profile else None
    proc = start(["consume", "--config", str(tmp / "intake.yaml"), "--db", str(tmp / "intake.db")],
                 "consumer in ready", prof)
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    done = asyncio.Event()
    got = 0

    async def on_reply(msg: object) -> None:
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    await nc.subscribe(reply, cb=on_reply)  # replies are also stored in their own stream; core NATS sees them
    started = time.perf_counter()
    for chunk in range(0, n, 500):
        await asyncio.gather(*(js.publish(subject, json.dumps({"ruleset": "credit-limit", "facts": {
            "applicant": applicant(i)}}).encode(), headers={"Nats-Msg-Id": f"{tag}-{i}"})
            for i in range(chunk, min(n, chunk + 500))))
    published = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await nc.close()
    stop(proc)
    nc = await nats.connect("nats://127.0.0.1:4222")
    for name in (stream, f"{stream}_{reply.replace('.', '_').upper()}"):
        try:
            await nc.jetstream().delete_stream(name)
        except Exception:
            pass
    await nc.close()
    print(f"  (publishing {n} requests took {published:.2f} s of it)")
    return n / elapsed, prof


async def grpc_rate(n: int, inflight: int, tmp: Path) -> float:
    import grpc
    from google.protobuf import struct_pb2

    from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
    from tests.e2e.server import free_port

    port = free_port()
    proc = start(["serve", "--listen", f"127.0.0.1:{port}", "--db", str(tmp / "grpc.db"), "--rulesets",
                  str(ROOT / "rulesets")], "baton listening")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = decision_pb2_grpc.DecisionServiceStub(ch)
            sem = asyncio.Semaphore(inflight)

            def request(i: int) -> decision_pb2.DecideRequest:
                values = struct_pb2.Struct()
                values.update(applicant(i))
                return decision_pb2.DecideRequest(ruleset="credit-limit", facts=[
                    decision_pb2.Fact(type="applicant", values=values)])

            async def one(i: int) -> None:
                async with sem:
                    await stub.Decide(request(i))

            await asyncio.gather(*(one(i) for i in range(200)))  # warm up
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.perf_counter() - started)
    finally:
        stop(proc)


def where_time_goes(prof: Path) -> None:
    stats = pstats.Stats(str(prof))
    total = stats.total_tt  # type: ignore[attr-defined]
    groups = {"engine (decide, rules, trace)": ("engine/",), "store (serialise, insert, commit)": ("store/", "sqlite3",
                                                                                                     "sqlalchemy"),
              "NATS client (fetch, publish, ack)": ("nats/",), "intake (parse, validate)": ("intake.py", "json/"),
              "asyncio and selectors": ("asyncio/", "selectors")}
    sums = dict.fromkeys(groups, 0.0)
    for (file, _, _), (_, _, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        for name, parts in groups.items():
            if any(p in file for p in parts):
                sums[name] += tt
                break
    print(f"  consumer CPU profile ({total:.1f} s own time in all):")
    for name, t in sorted(sums.items(), key=lambda kv: -kv[1]):
        print(f"    {name:36s} {t:6.2f} s  {100 * t / total:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"credit-limit (rules only), {args.n} decisions, SQLite with full trace, one process each")
        rate, prof = asyncio.run(intake(args.n, tmp, args.profile))
        print(f"  JetStream intake  {rate:8,.0f} decisions/s  (decide + store + reply + ack)")
        grpc = asyncio.run(grpc_rate(args.n, args.inflight, tmp))
        print(f"  gRPC Decide       {grpc:8,.0f} decisions/s  ({args.inflight} in flight)")
        if prof is not None and prof.exists():
            where_time_goes(prof)
            if os.environ.get("KEEP_PROFILE"):
                import shutil

                shutil.copy(prof, os.environ["KEEP_PROFILE"])


if __name__ == "__main__":
    main()
