"""A soak: mixed traffic against `baton serve --workers 2` for a while, sampled at intervals.

Traffic (8 client threads, plus intake): rules-only decisions (credit-limit, decision tables), decisions
with recorded model and tool answers (claims-triage), decisions with a PDF document (claims-intake, two
models and retrieval, canned answers), and decision requests published to a JetStream subject that the
server's consumer takes (when NATS is running); `--traffic` and `--workers` narrow it to bisect a growth.
Each interval prints, per worker, RSS and open file descriptors, the store's open connections (SQLite:
descriptors on the database files), and the p50/p99 latency of the calls made in it; at the end, a small
chart of RSS and p99. None of them may grow without bound.
Run: .venv/bin/python bench/soak.py [--minutes 30] [--interval 60] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc  # noqa: E402
from tests.e2e.server import free_port, start  # noqa: E402

CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}
PDF = (ROOT / "rulesets/samples/claim-theft.pdf").read_bytes()
BARS = " ▁▂▃▄▅▆▇█"


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def requests() -> list[tuple[str, decision_pb2.DecideRequest]]:
    credit = next(t for t in _tests("credit-limit"))
    return [
        ("rules-only", decision_pb2.DecideRequest(ruleset="credit-limit", facts=[
            decision_pb2.Fact(type=t, values=struct(v)) for t, vs in credit.items()
            for v in (vs if isinstance(vs, list) else [vs])])),
        ("models", decision_pb2.DecideRequest(ruleset="claims-triage", facts=[
            decision_pb2.Fact(type="claim", values=struct(CLAIM))])),
        ("document", decision_pb2.DecideRequest(ruleset="claims-intake", documents=[
            decision_pb2.Document(name="claim-theft.pdf", media_type="application/pdf", content=PDF)])),
    ]


def _tests(name: str) -> list[dict[str, Any]]:
    from adapters.infra.rulesets import load_file

    rs = load_file(ROOT / f"rulesets/{name}.yaml")
    return [t.given for t in rs.tests if isinstance(t.given, dict) and not t.documents]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int, pattern: str = "") -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if not pattern or pattern in target:
            count += 1
    return count


def file_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


def scrape(port: int) -> str:
    import urllib.request

    try:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
    except OSError:
        return ""


def sample(text: str, metric: str, pid: int | None = None) -> float:
    """One sample of a scraped metric, the worker's when ``pid`` is given (NaN when absent):
    baton_heap_in_use_bytes (flat while RSS grows: fragmentation, not a leak), baton_python_allocated_blocks
    (what a leak of Python objects would grow), baton_sqlite_memory_bytes (all workers together)."""
    labels = f'{{pid="{pid}"}}' if pid is not None else ""
    found = re.search(rf"^{re.escape(metric + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def total(text: str, metric: str, label: str) -> float:
    """The sum of a metric's series that carry ``label`` (e.g. ``result="delivered"``, over every effect)."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(metric)}{{[^}}]*{re.escape(label)}[^}}]*}} (\S+)$",
                                                          text, re.M))


def spark(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return "".join(BARS[1 + int((v - lo) / (hi - lo) * 7) if hi > lo else 4] for v in values)


def intake(subject: str, stop: threading.Event, sent: list[int], rate: float) -> None:
    import nats

    async def run() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        k = 0
        while not stop.is_set():
            k += 1
            body = json.dumps({"ruleset": "claims-triage", "facts": {"claim": {**CLAIM, "claim_ref": f"I-{k}"}}})
            await js.publish(subject, body.encode(), headers={"Nats-Msg-Id": f"{subject}-{k}"})
            sent[0] += 1
            await asyncio.sleep(1 / rate)
        await nc.close()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--smoke", action="store_true", help="a short run (CI): 20 s, samples every 5 s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--traffic", default="rules-only,models,document,intake",
                        help="which kinds of traffic to send (comma-separated): to bisect a growth")
    parser.add_argument("--intake-rate", type=float, default=5, help="intake messages per second")
    args = parser.parse_args()
    kinds = set(args.traffic.split(","))
    minutes, interval = (20 / 60, 5.0) if args.smoke else (args.minutes, args.interval)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        tag = uuid.uuid4().hex[:8]
        subject = f"soak.{tag}"
        metrics_port = free_port()
        config: dict[str, Any] = {"metrics": f"127.0.0.1:{metrics_port}"}
        nats_running = _port(4222)
        nats_up = nats_running and "intake" in kinds
        if nats_up:
            config["consumers"] = {"soak": {"type": "jetstream", "url": "nats://127.0.0.1:4222",
                                            "stream": f"SOAK_{tag.upper()}", "subject": subject,
                                            "durable": f"soak{tag}", "max_inflight": 8}}
        if nats_running:  # claims-intake's effects: two delivered, customer-notification left waiting (a backlog)
            config["effects"] = {name: {"type": "nats", "url": "nats://127.0.0.1:4222", "subject": f"{subject}.fx",
                                        "stream": f"SOAKFX_{tag.upper()}"} for name in ("claims-system", "payments")}
        path = tmp / "baton.yaml"
        path.write_text(json.dumps(config))
        server = start(tmp, "--workers", str(args.workers), "--config", str(path), auth=False)
        signal.signal(signal.SIGTERM, _interrupted)  # a soak stopped by SIGTERM still stops its server
        pids = [int(p) for p in re.findall(r"\(pid (\d+)", "\n".join(server.log))]
        stop = threading.Event()
        latencies: list[tuple[float, str]] = []
        errors: dict[str, int] = {}
        lock = threading.Lock()
        mix = [(kind, request) for kind, request in requests() if kind in kinds]

        def client(n: int) -> None:
            stub = decision_pb2_grpc.DecisionServiceStub(grpc.insecure_channel(server.address))
            k = n
            while not stop.is_set():
                kind, request = mix[k % len(mix)]
                k += 1
                started = time.perf_counter()
                try:
                    stub.Decide(request, timeout=30)
                    with lock:
                        latencies.append((time.perf_counter() - started, kind))
                except grpc.RpcError as e:
                    with lock:
                        errors[e.code().name] = errors.get(e.code().name, 0) + 1

        sent = [0]
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8 if mix else 0)]
        if nats_up:
            threads.append(threading.Thread(target=intake, args=(subject, stop, sent, args.intake_rate),
                                            daemon=True))
        for t in threads:
            t.start()
        rows: list[dict[str, Any]] = []
        print(f"soak: {minutes:g} min, a sample every {interval:g} s; workers {pids}; intake "
              f"{'on ' + subject if nats_up else 'off'}")
        head = (f"{'t s':>6} " + " ".join(f"{'RSS MB w' + str(i):>11} {'heap MB w' + str(i):>12} "
                                          f"{'py kblk w' + str(i):>12} {'fds w' + str(i):>7}"
                                          for i in range(len(pids)))
                + f" {'db conns':>8} {'sqlite MB':>9} {'db MB':>7} {'wal MB':>6}"
                + f" {'calls':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} {'fx sent':>7} {'fx wait':>7}"
                + f" {'intake':>6}")
        print(head)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < minutes * 60:
                time.sleep(interval)
                with lock:
                    window = [s for s, _ in latencies]
                    latencies.clear()
                window.sort()
                text = scrape(metrics_port)
                row: dict[str, Any] = {"t": time.monotonic() - t0, "rss": [rss_mb(p) for p in pids],
                                       "heap": [sample(text, "baton_heap_in_use_bytes", p) / 1e6 for p in pids],
                                       "blocks": [sample(text, "baton_python_allocated_blocks", p) / 1e3 for p in pids],
                                       "fds": [fds(p) for p in pids],
                       "db": sum(fds(p, "baton.db") for p in pids), "calls": len(window),
                       "sqlite": sample(text, "baton_sqlite_memory_bytes") / 1e6,
                       "db_mb": file_mb(tmp / "baton.db"), "wal_mb": file_mb(tmp / "baton.db-wal"),
                       "fx_done": total(text, "baton_effect_attempts_total", 'result="delivered"'),
                       "fx_pending": sample(text, 'baton_effects{status="pending"}'),
                       "p50": statistics.median(window) * 1000 if window else 0.0,
                       "p99": window[min(len(window) - 1, int(len(window) * 0.99))] * 1000 if window else 0.0}
                rows.append(row)
                print(f"{row['t']:>6.0f} " + " ".join(f"{r:>11.0f} {h:>12.1f} {b:>12.1f} {f:>7}" for r, h, b, f in zip(
                    row["rss"], row["heap"], row["blocks"], row["fds"], strict=True))
                      + f" {row['db']:>8} {row['sqlite']:>9.1f} {row['db_mb']:>7.0f}"
                      f" {row['wal_mb']:>6.1f} {row['calls']:>6} {row['p50']:>7.1f} {row['p99']:>7.1f}"
                      f" {sum(errors.values()):>7} {row['fx_done']:>7.0f} {row['fx_pending']:>7.0f} {sent[0]:>6}")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            server.stop(signal.SIGTERM)
            if nats_running:
                asyncio.run(_drop_streams(tag))
        if rows:
            for i in range(len(pids)):
                print(f"RSS worker {i}: {spark([r['rss'][i] for r in rows])}  "
                      f"{min(r['rss'][i] for r in rows):.0f}-{max(r['rss'][i] for r in rows):.0f} MB; heap in use "
                      f"{spark([r['heap'][i] for r in rows])}  {min(r['heap'][i] for r in rows):.1f}-"
                      f"{max(r['heap'][i] for r in rows):.1f} MB; Python blocks "
                      f"{spark([r['blocks'][i] for r in rows])}  {min(r['blocks'][i] for r in rows):.1f}-"
                      f"{max(r['blocks'][i] for r in rows):.1f} k")
            print(f"calls:        {spark([r['calls'] for r in rows])}  "
                  f"{min(r['calls'] for r in rows)}-{max(r['calls'] for r in rows)} per interval; database "
                  f"{rows[0]['db_mb']:.0f} -> {rows[-1]['db_mb']:.0f} MB, WAL at most "
                  f"{max(r['wal_mb'] for r in rows):.1f} MB")
            print(f"p99:          {spark([r['p99'] for r in rows])}  "
                  f"{min(r['p99'] for r in rows):.1f}-{max(r['p99'] for r in rows):.1f} ms")
        print(f"errors: {errors or 'none'}")


async def _drop_streams(tag: str) -> None:
    """The JetStream streams this soak made (intake, its replies, effects): gone with it."""
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if tag.upper() in name:
                await js.delete_stream(name)
    finally:
        await nc.close()


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _port(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
