"""A worker's memory under requests it must refuse: rounds of Decide calls carrying a 5 MiB string.

Each round sends 40 calls, 8 at a time, each rejected (`too_long`); the worker's RSS is printed after
each round and again after a 2 s pause. It must stay bounded and come back down between rounds (it grew
without bound before the allocator was tuned: adapters/infra/system.py `tune_allocator`).
Run: .venv/bin/python bench/memory.py [--rounds 8] [--mib 5]
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc  # noqa: E402
from tests.e2e.server import metadata, start  # noqa: E402


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--mib", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start(Path(tmp))
        pid = int(re.findall(r"\(pid (\d+)", "\n".join(server.log))[0])
        channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)])
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        values = struct_pb2.Struct()
        values.update({"claim_ref": "C", "amount": 1, "policy_ref": "P", "description": "x" * (args.mib << 20),
                       "customer_tier": "gold"})
        request = decision_pb2.DecideRequest(ruleset="claims-triage",
                                             facts=[decision_pb2.Fact(type="claim", values=values)])
        codes: set[str] = set()

        def call() -> None:
            try:
                stub.Decide(request, metadata=metadata("caller"), timeout=30)
                codes.add("OK")
            except grpc.RpcError as e:
                codes.add(e.code().name)

        print(f"worker pid {pid}: RSS {rss_mb(pid)} MB at start")
        print(f"{'round':>5} {'RSS MB':>8} {'after 2 s':>10}")
        try:
            for r in range(1, args.rounds + 1):
                for _ in range(5):
                    threads = [threading.Thread(target=call) for _ in range(8)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                now = rss_mb(pid)
                time.sleep(2)
                print(f"{r:>5} {now:>8} {rss_mb(pid):>10}")
        finally:
            channel.close()
            server.stop(signal.SIGTERM)
        print(f"statuses: {sorted(codes)}")


if __name__ == "__main__":
    main()
