"""Decisions/s and p50/p99 for claims-triage with recorded answers: Baton's loop next to raw durable-rules.

The raw side is durable-rules through `engine.Host` (timers off) running an equivalent hand-written
ruleset: same rules, same two rounds (claim; then the recorded policy and assessment), intents
collected by actions, winner picked by priority. Baton's side is the full loop: validation, the
trace, guards, recorded answers. The two sides take turns on the same decisions in the same minutes, and
the ratio is of CPU time, so a loaded machine slows both alike.
Run: .venv/bin/python bench/engine_speed.py [--n 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from durable.engine import Host, MessageNotHandledException, MessageObservedException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.infra.rulesets import load_file  # noqa: E402
from engine.clock import FixedClock, SequentialIds  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402


class QuietHost(Host):  # type: ignore[misc]
    def _run(self) -> None:  # durable-rules' timers crash on out-of-order deletes; we need none
        pass


def raw_ruleset(state: dict[str, Any]) -> dict[str, Any]:
    def proposer(pri: int, verb: str, payload: dict[str, Any]) -> Any:
        def act(c: Any) -> None:
            state["proposals"].append((pri, verb, payload))
        return act

    def call(name: str) -> Any:
        def act(c: Any) -> None:
            state["intents"].append(name)
        return act

    def assert_risk(c: Any) -> None:
        try:
            c.assert_fact({"t": "risk", "level": "high"})
        except MessageObservedException:
            pass

    def claim(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"m": {"$and": [{"t": "claim"}, *([extra] if extra else [])]}}

    return {"claims_raw": {
        "fetch_policy": {"pri": 1001, "all": [claim()], "run": call("lookup_policy")},
        "classify_claim": {"pri": 1001, "all": [claim()], "run": call("classify")},
        "high_risk_amount": {"pri": 1001, "all": [claim({"$gt": {"amount": 50000}})], "run": assert_risk},
        "high_risk_staged": {"pri": 1001, "all": [{"m": {"$and": [{"t": "assessment"},
                                                                 {"$iany": {"fraud_signals": {"$i": "staged"}}}]}}],
                             "run": assert_risk},
        "inactive_policy": {"pri": 901, "all": [{"m": {"$and": [{"t": "policy"}, {"active": False}]}}],
                            "run": proposer(100, "decide", {"route": "reject"})},
        "senior": {"pri": 991, "all": [{"r": {"$and": [{"t": "risk"}, {"level": "high"}]}},
                                       {"a": {"$and": [{"t": "assessment"}, {"category": "injury"}]}}],
                   "run": proposer(10, "decide", {"route": "senior-assessor"})},
        "unsure": {"pri": 951, "all": [{"m": {"$and": [{"t": "assessment"}, {"$lt": {"confidence": 0.7}}]}}],
                   "run": proposer(50, "escalate", {"queue": "triage-review"})},
        "classifier_down": {"pri": 951, "all": [{"m": {"$and": [{"t": "failure"}, {"action": "classify"}]}}],
                            "run": proposer(50, "escalate", {"queue": "triage-review"})},
        "default_route": {"pri": 1101, "all": [claim()], "run": proposer(-100, "decide", {"route": "standard-queue"})},
    }}


def raw_decide(host: QuietHost, state: dict[str, Any], n: int, given: dict[str, Any],
               answers: dict[str, Any]) -> str:
    sid = str(n)
    state["proposals"], state["intents"] = [], []
    try:
        host.assert_facts("claims_raw", [{"sid": sid, "t": "claim", **given["claim"]}])
        facts = []
        for name in state["intents"]:
            answer = answers[name]
            if "failure" in answer:
                facts.append({"sid": sid, "t": "failure", "action": name, **answer["failure"]})
            else:
                facts.append({"sid": sid, "t": "assessment" if name == "classify" else "policy", **answer})
        try:
            host.assert_facts("claims_raw", facts)
        except MessageNotHandledException:
            pass
    finally:
        host.delete_state("claims_raw", sid)
    best = max(state["proposals"], key=lambda p: p[0]) if state["proposals"] else None
    return best[2].get("route") or best[2].get("queue") if best else "none"


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000, help="decisions per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=50, help="decisions a side runs before the other's turn")
    args = parser.parse_args()
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    cases = [(t.given, t.answers) for t in rs.tests]
    inputs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for i in range(args.n):
        given, answers = cases[i % len(cases)]
        g: dict[str, Any] = copy.deepcopy(given)  # type: ignore[arg-type]
        g["claim"]["claim_ref"] = f"C-{i}"
        inputs.append((g, answers))

    state: dict[str, Any] = {}
    host = QuietHost(raw_ruleset(state))
    engine = Engine(rs)
    clock, ids = FixedClock(), SequentialIds()
    loop = asyncio.new_event_loop()

    async def baton_chunk(chunk: list[tuple[dict[str, Any], dict[str, Any]]], lat: list[float]) -> None:
        for g, a in chunk:
            s = time.perf_counter()
            recorded = RecordedAnswers(a)
            await engine.decide(g, recorded, recorded, clock, ids)
            lat.append(time.perf_counter() - s)

    sid = 0

    def one_round(items: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, float, list[float], list[float]]:
        """Both sides over the same decisions, taking turns every ``chunk`` decisions, so that they share
        the machine's minutes (its speed moves from one minute to the next); CPU seconds of each side."""
        nonlocal sid
        raw_cpu = baton_cpu = 0.0
        raw_lat: list[float] = []
        lat: list[float] = []
        for i in range(0, len(items), args.chunk):
            chunk = items[i:i + args.chunk]
            t0 = time.thread_time()
            for g, a in chunk:
                s = time.perf_counter()
                raw_decide(host, state, sid, g, a)
                raw_lat.append(time.perf_counter() - s)
                sid += 1
            t1 = time.thread_time()
            loop.run_until_complete(baton_chunk(chunk, lat))
            t2 = time.thread_time()
            raw_cpu += t1 - t0
            baton_cpu += t2 - t1
        return raw_cpu, baton_cpu, raw_lat, lat

    one_round(inputs[:500])  # warm both sides
    rounds = [one_round(inputs) for _ in range(args.rounds)]
    loop.close()

    def row(name: str, cpu: float, samples: list[float]) -> str:
        return (f"{name:<34} {len(samples) / cpu:>10,.0f} {percentile(samples, 50) * 1e6:>9.0f} "
                f"{percentile(samples, 99) * 1e6:>9.0f}")

    print(f"claims-triage, {args.n} decisions x {args.rounds} rounds, recorded answers, one process; "
          f"the sides take turns every {args.chunk} decisions")
    print(f"{'':<34} {'decisions/s':>10} {'p50 µs':>9} {'p99 µs':>9}  (per CPU second; latency by the clock)")
    ratios = []
    for k, (raw_cpu, baton_cpu, raw_lat, lat) in enumerate(rounds, 1):
        print(f"round {k}")
        print(row("raw durable-rules (Host)", raw_cpu, raw_lat))
        print(row("Baton (validation + trace + loop)", baton_cpu, lat))
        ratios.append(raw_cpu / baton_cpu)
    print(f"Baton / raw: {statistics.median(ratios):.0%} (median of {len(ratios)} rounds; "
          f"{min(ratios):.0%}-{max(ratios):.0%})")


if __name__ == "__main__":
    main()
