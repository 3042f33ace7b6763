"""The floor under bench/grpc_load.py: the same Decide method served by grpc.aio with nothing behind it
(the request is parsed, an empty DecideResponse is returned), in the same number of processes sharing
one port, so the framework's own cost on this machine is measured in the same run as Baton's.

    .venv/bin/python bench/empty_grpc.py --listen 127.0.0.1:PORT [--workers N] [--loop uvloop|asyncio]
Each process prints "listening on ADDR (pid N)", as `baton serve` does; SIGTERM stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from adapters.doors.grpc.gen.baton.v1 import decision_pb2
from adapters.infra.system import run_loop


async def _decide(request: decision_pb2.DecideRequest, context: Any) -> decision_pb2.DecideResponse:
    return decision_pb2.DecideResponse()


async def _serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("baton.v1.DecisionService", {
        "Decide": grpc.unary_unary_rpc_method_handler(
            _decide, request_deserializer=decision_pb2.DecideRequest.FromString,
            response_serializer=decision_pb2.DecideResponse.SerializeToString)})])
    server.add_insecure_port(listen)
    await server.start()
    print(f"listening on {listen} (pid {os.getpid()})", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def _child(listen: str, loop: str) -> None:
    run_loop(loop, _serve(listen))  # the event loop Baton's workers run on (`event_loop:`), for a fair floor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_child, args=(args.listen, args.loop)) for _ in range(args.workers)]
    for child in children:
        child.start()
    def stop(*_: object) -> None:
        for c in children:
            c.terminate()

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.join()


if __name__ == "__main__":
    main()
