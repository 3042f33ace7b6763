"""Why the engine costs more CPU inside the server than alone (issue #37): one factor at a time, in one process.

The same claims-triage decisions (the engine's validation and run, ``Engine.decide``) are timed with this
thread's CPU clock, in rounds that alternate the conditions below, so every condition sees the same minutes
of a shared machine:

- *alone*: the in-process bench's way - decisions back to back, fixed clock, sequential ids, recorded answers;
- *server's ports*: the system clock, time-ordered ids and the tools behind the retrieval wrapper - the
  objects the server hands the engine (the answers stay the recorded ones, so the decisions are the same);
- *+ server's heap*: the same with the server's modules imported and a million more live objects (a
  worker's heap), the garbage collector's time counted apart;
- *+ the server's Python work between decisions*: each decision's request built and parsed as protobuf,
  its facts converted, its record serialised (orjson, as the store writer does), its response built -
  the per-decision Python work of the server, done between two engine runs as the server interleaves it;
- *+ a 4 MiB copy between decisions*: that, and a copy of 4 MiB (about the L2 cache here), standing in for
  the C work of gRPC's core, SQLite and the other decisions' requests that runs between two engine runs;
- *in groups of 16*: the same work, but 16 engine runs back to back and then the other work of those 16 -
  what the start gate (adapters/usecases/decisions.py) does under load.

Then a sweep: only a copy of a given size between engine runs, no other work - where the engine's time
rises is where the copy no longer leaves its code and data in the cache (L2 here: 2 MiB a core).

Only the engine's own time is timed (the work between runs is not); what rises is the engine run made
slower by what ran before it. Run: .venv/bin/python bench/engine_in_server.py [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.system import SystemClock, TimeOrderedIds  # noqa: E402
from engine.clock import FixedClock, SequentialIds  # noqa: E402
from engine.loop import Engine, Limits  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402

SIZES = [256 << 10, 1 << 20, 2 << 20, 4 << 20, 16 << 20]
CONDITIONS = ["alone", "server's ports", "+ server's heap", "+ server's Python work between",
              "+ a 4 MiB copy between", "in groups of 16"]


class GcClock:
    """Thread CPU spent inside the garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.ns = 0
        self.collections = 0
        self._start = 0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.thread_time_ns()
        else:
            self.ns += time.thread_time_ns() - self._start
            self.collections += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="decisions per condition and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    cases = [(t.given, t.answers) for t in rs.tests]
    inputs = []
    for i in range(args.n):
        given, answers = cases[i % len(cases)]
        g: dict[str, Any] = copy.deepcopy(given)  # type: ignore[arg-type]
        g["claim"]["claim_ref"] = f"C-{i}"
        inputs.append((g, answers))
    engine = Engine(rs)

    # the server's modules (gRPC, protobuf, the store) and its per-decision Python work
    from adapters.doors.grpc import convert
    from adapters.doors.grpc.gen.baton.v1 import decision_pb2 as pb
    from adapters.infra.retrieval import WithRetrieval
    buffers = {size: bytearray(size) for size in SIZES}
    buffer = buffers[4 << 20]

    def request_bytes(given: dict[str, Any]) -> bytes:
        return pb.DecideRequest(ruleset=rs.name, facts=[pb.Fact(type=t, values=convert.struct(v))
                                                        for t, v in given.items()]).SerializeToString()

    requests = [request_bytes(g) for g, _ in inputs]

    def before(k: int) -> dict[str, Any]:  # the request parsed and its facts converted, as Decide does
        request = pb.DecideRequest.FromString(requests[k])
        facts: dict[str, Any] = {}
        for fact in request.facts:
            facts.setdefault(fact.type, []).append(convert.plain(fact.values))
        return {t: v[0] for t, v in facts.items()}

    def after(record: Any, copy_too: bool) -> None:  # the record serialised, the response built
        rec = record.to_dict()
        orjson.dumps(rec)
        pb.DecideResponse(decision=convert.decision(rec)).SerializeToString()
        if copy_too:
            bytes(buffer)

    heap: list[Any] = []
    gc_clock = GcClock()
    results: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    gc_ns: dict[str, list[float]] = {c: [] for c in CONDITIONS}

    async def run(condition: str) -> float:
        server = condition != "alone"
        spent = 0
        between = condition in CONDITIONS[3:]
        copy_too = condition in CONDITIONS[4:]
        group = 16 if condition == "in groups of 16" else 1
        clock: Any = SystemClock() if server else FixedClock()
        ids: Any = TimeOrderedIds() if server else SequentialIds()
        thread_ns: Callable[[], int] = time.thread_time_ns
        for start in range(0, len(inputs), group):
            ks = range(start, min(start + group, len(inputs)))
            givens = [before(k) for k in ks] if between else [inputs[k][0] for k in ks]
            records = []
            for k, given in zip(ks, givens, strict=True):
                models: Any = RecordedAnswers(inputs[k][1])
                tools: Any = WithRetrieval(models, None) if server else models  # type: ignore[arg-type]
                t0 = thread_ns()
                records.append(await engine.decide(given, models, tools, clock, ids, Limits()))
                spent += thread_ns() - t0
            if between:
                for record in records:
                    after(record, copy_too)
        return spent / len(inputs) / 1e3

    sweep: dict[int, list[float]] = {size: [] for size in SIZES}

    async def copies(size: int) -> float:  # recorded answers, fixed clock: "alone" but for the copy
        spent, clock, ids, b = 0, FixedClock(), SequentialIds(), buffers[size]
        for given, answers in inputs:
            bytes(b)
            models = RecordedAnswers(answers)
            t0 = time.thread_time_ns()
            await engine.decide(given, models, models, clock, ids, Limits())
            spent += time.thread_time_ns() - t0
        return spent / len(inputs) / 1e3

    async def measure() -> None:
        for c in CONDITIONS:  # warm every path once
            await run(c) if c != "+ server's heap" else None
        for _ in range(args.rounds):
            for c in CONDITIONS:
                if c == "+ server's heap" and not heap:
                    heap.extend({"k": [i]} for i in range(1_000_000))  # a worker's heap: live objects to scan
                gc_before = gc_clock.ns
                results[c].append(await run(c))
                gc_ns[c].append((gc_clock.ns - gc_before) / len(inputs) / 1e3)
            for size in SIZES:
                sweep[size].append(await copies(size))

    asyncio.run(measure())
    print(f"claims-triage, engine.decide timed alone (thread CPU), {args.n} decisions x {args.rounds} rounds, "
          f"conditions alternated; {len(gc.get_objects()):,} objects tracked at the end")
    print(f"{'condition':<34}{'µs/decision':>12}{'vs alone':>10}{'of it GC':>10}")
    base = min(results["alone"])
    for c in CONDITIONS:
        best = min(results[c])
        gc_share = gc_ns[c][results[c].index(best)]
        print(f"{c:<34}{best:>12.1f}{best / base:>9.2f}x{gc_share:>10.1f}")
    for size in SIZES:
        best = min(sweep[size])
        print(f"{'only a copy of ' + format(size >> 10, ',') + ' KiB between':<34}{best:>12.1f}{best / base:>9.2f}x")


if __name__ == "__main__":
    main()
