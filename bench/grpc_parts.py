"""Where a gRPC decision's server CPU goes: bench/grpc_load.py's load (claims-triage, SQLite, full trace,
canned answers, h2load when installed) against Baton's own server five times, each time doing more of
the work, so each part's cost is the difference between two runs of the same server:

1. *framework*: Baton's server (its handlers, authentication, error mapping) with a Decide that answers
   an empty response at once;
2. *+ facts, engine*: Decide converts and validates the facts and runs the engine; no record, nothing
   stored, an empty response;
3. *+ one path, store acks*: the real Decide and decision path (record, span, metrics, log line, shadows,
   response); the writer acknowledges every decision without serialising or writing it;
4. *+ store*: all of Baton - but, as in 1-3, each decision starts its engine run at once
   (``limits.batch_window_ms: 0``);
5. *+ start gate*: Baton as it ships: under load, decisions start their engine runs in groups
   (adapters/usecases/decisions.py StartGate).

Then the empty grpc.aio server of grpc_load.py (the floor) and the engine alone, in process. Parts 1-3 are
Baton with code replaced by this script, in the server's own processes (the environment variable below
tells them which part); nothing in adapters/ knows of it.

    .venv/bin/python bench/grpc_parts.py [--duration 10] [--inflight 64] [--workers 2] [--no-floor]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.doors.cli.bench import Result, raw_engine_rate, run_scenario  # noqa: E402

# read by the server processes this script starts and their spawned workers (not BATON_*: the config's)
PART = "BENCH_GRPC_PART"
PARTS = (("framework", "framework"), ("engine", "+ facts, engine"), ("acknowledged", "+ one path, store acks"),
         ("ungated", "+ store"), ("baton", "+ start gate (Baton)"))


def patch(part: str) -> None:
    """Replace the server's code for ``part``, in this process, before it serves."""
    from adapters.doors.grpc import convert
    from adapters.doors.grpc.decision_service import DecisionService
    from adapters.doors.grpc.gen.baton.v1 import decision_pb2
    from adapters.doors.grpc.status import handler
    from adapters.infra.store.sql import Saved
    from adapters.infra.store.writer import GroupWriter

    async def framework(self: Any, request: Any, context: Any, ident: Any) -> Any:
        return decision_pb2.DecideResponse()

    async def engine_only(self: Any, request: Any, context: Any, ident: Any) -> Any:
        d = self.s.decide  # the Decide use case's parts, without its store, path or start gate
        engine = d.registry.engine(request.ruleset, request.version)
        facts: dict[str, list[Any]] = {}
        for fact in request.facts:
            facts.setdefault(fact.type, []).append(convert.plain(fact.values))
        validated = engine.validate_input(facts)
        await engine.run(validated, d.models, d.tools, d.clock, d.ids, d.limits.engine)
        return decision_pb2.DecideResponse()

    def acknowledge(self: Any, batch: list[Any]) -> tuple[list[Any], list[Any]]:
        return [(item.future, Saved(str(item.record["decision_id"]), 0, ""), None) for item in batch], []

    if part != "baton":  # the start gate off: each decision's engine run starts at once
        os.environ["BATON_LIMITS__BATCH_WINDOW_MS"] = "0"
    if part == "framework":
        DecisionService.Decide = handler("Decide")(framework)  # type: ignore[method-assign]
    elif part == "engine":
        DecisionService.Decide = handler("Decide")(engine_only)  # type: ignore[method-assign]
    elif part == "acknowledged":
        GroupWriter._serialise = acknowledge  # type: ignore[method-assign]
    elif part not in ("ungated", "baton"):
        raise SystemExit(f"unknown part {part!r}")


if os.environ.get(PART):  # a server process of this script (spawned workers import it as __mp_main__)
    patch(os.environ[PART])


def serve(argv: list[str]) -> None:
    from adapters.doors.cli.main import app

    app(["serve", "--max-inflight", "100000", *argv])


def per_decision(r: Result) -> tuple[float, dict[str, float]]:
    assert r.cpu_s is not None
    return r.cpu_s / r.decisions * 1000, {k: v / r.decisions * 1000 for k, v in r.cpu_split.items()}


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-floor", action="store_true", help="skip the empty grpc.aio server's run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-parts-") as tmp_dir:
        run(args, Path(tmp_dir))


def run(args: argparse.Namespace, tmp: Path) -> None:
    results: list[tuple[str, Result]] = []
    for part, label in PARTS:
        os.environ[PART] = part
        try:
            serve_args = ["--db", str(tmp / f"{part}.db"), "--workers", str(args.workers), "--answers",
                          str(ROOT / "rulesets/demo-answers.json"), "--rulesets", str(ROOT / "rulesets")]
            results.append((label, run_scenario(part, serve_args, args.inflight, args.duration, tmp,
                                                command=[sys.executable, str(Path(__file__).resolve()), "--serve"])))
        finally:
            del os.environ[PART]
    if not args.no_floor:
        results.append(("floor: empty grpc.aio", run_scenario(
            "floor", ["--workers", str(args.workers)], args.inflight, args.duration, tmp,
            command=[sys.executable, str(ROOT / "bench/empty_grpc.py")])))
    print(f"Decide over gRPC, claims-triage, {args.inflight} in flight, {args.duration:.0f} s a part, "
          f"{args.workers} server workers, SQLite, full trace; server CPU in ms per decision")
    print(f"  {'part':<26}{'decisions/s':>12}{'CPU':>7}{'loop':>7}{'writer':>8}{'gRPC+other':>11}{'added':>8}")
    previous = 0.0
    for i, (label, r) in enumerate(results):
        total, split = per_decision(r)
        added = f"{total - previous:+.2f}" if 0 < i < len(PARTS) else ""
        print(f"  {label:<26}{r.decisions / r.seconds:>12,.0f}{total:>7.2f}{split['event loop']:>7.2f}"
              f"{split['store writer']:>8.2f}{split['gRPC core'] + split['other threads']:>11.2f}{added:>8}")
        previous = total
    print(f"  engine alone, in process: {1000 / raw_engine_rate():.2f} ms a decision (one core, no server)")


if __name__ == "__main__":
    main()
