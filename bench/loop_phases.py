"""Where Baton's Python around the durable-rules core goes, phase by phase (issue #37).

claims-triage with recorded answers (the workload of bench/engine_speed.py). Each phase's entry points
are wrapped, in this process only, by a timer that charges the time since the last switch to the phase
that was running (a stack: a guard inside the firing loop is charged to "guards", not to the loop), so
the phases add up to the whole decision. The wrappers cost time of their own (a few µs per decision,
shown as "instrumented / plain"); the shares are what to read, the plain µs per decision is the total
they split. Raw durable-rules through ``Host`` on the same decisions is run alternately in the same
process, so "Baton / Host" compares two things measured in the same minutes.

    .venv/bin/python bench/loop_phases.py [--n 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import functools
import gc
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import engine_speed  # noqa: E402

import engine.driver as driver  # noqa: E402
import engine.loop as loop  # noqa: E402
from adapters.infra.rulesets import load_file  # noqa: E402
from engine.clock import FixedClock, SequentialIds  # noqa: E402
from engine.compile import CompiledRuleset  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402
from engine.router import Router  # noqa: E402

PHASES = [
    ("validation", "facts and answers checked against their types (types.py validators)"),
    ("encoding", "facts turned into engine facts (compile.encode, Router) and JSON (orjson.dumps)"),
    ("core: assert", "durable-rules assert_facts / assert_fact (C)"),
    ("core: agenda", "durable-rules start_action / complete_and_start_action / abandon (C)"),
    ("core: close", "durable-rules delete_state (C)"),
    ("sessions (Python)", "opening and closing a decision's engine sessions: pool, Agenda, Router, ShardSession"),
    ("agenda (Python)", "walking shards, reading activations (regex), building env"),
    ("guards", "conditions evaluated when an activation fires"),
    ("trace + memory", "on_fire, add_fact, WorkingMemory.add: events, fired list, dedup keys"),
    ("intents + answers", "intend (call key JSON), recorded answers, call events, answer facts"),
    ("resolution", "winner, held effects, outcome"),
    ("setup + glue", "Decision and _Run construction, rounds loop, asyncio, everything not above"),
]


class Phases:
    """Exclusive time per phase: a switch charges the elapsed time to the phase that was running."""

    def __init__(self) -> None:
        self.acc: dict[str, int] = {name: 0 for name, _ in PHASES}
        self.n: dict[str, int] = {name: 0 for name, _ in PHASES}  # intervals charged: each holds one clock read
        self.stack: list[str] = []
        self.current = "setup + glue"
        self.since = time.thread_time_ns()

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock, acc, n, stack = time.thread_time_ns, self.acc, self.n, self.stack

        def enter() -> None:
            now = clock()
            acc[self.current] += now - self.since
            n[self.current] += 1
            stack.append(self.current)
            self.current, self.since = phase, now

        def leave() -> None:
            now = clock()
            acc[phase] += now - self.since
            n[phase] += 1
            self.current, self.since = stack.pop(), now

        if asyncio.iscoroutinefunction(fn):  # recorded answers never suspend: the stack stays this task's
            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                enter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    leave()

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            enter()
            try:
                return fn(*args, **kwargs)
            finally:
                leave()

        return timed

    def reset(self) -> None:
        for k in self.acc:
            self.acc[k] = self.n[k] = 0
        self.since = time.thread_time_ns()


def instrument(engine: loop.Engine, ph: Phases) -> None:
    """Wrap each phase's entry points (class attributes and module globals of this process only)."""
    for ft in engine.ruleset.types.values():
        ft.validate = ph.wrap("validation", ft.validate)
    engine.checks = {t: ph.wrap("validation", c) for t, c in engine.checks.items()}
    compiled: CompiledRuleset = engine.compiled
    compiled.rules.update({name: dataclasses.replace(er, guard=ph.wrap("guards", er.guard))
                           for name, er in compiled.rules.items()})
    engine.plans = engine.fire_plans()  # the firing plans hold the rules: made again with the wrapped guards
    CompiledRuleset.encode = ph.wrap("encoding", CompiledRuleset.encode)  # type: ignore[method-assign]
    Router.route = ph.wrap("encoding", Router.route)  # type: ignore[method-assign]
    module = vars(driver)  # the driver module's globals: what its functions look up at call time
    real_core, real_orjson = module["core"], module["orjson"]
    module["core"] = types.SimpleNamespace(
        error=real_core.error,
        assert_facts=ph.wrap("core: assert", real_core.assert_facts),
        assert_fact=ph.wrap("core: assert", real_core.assert_fact),
        start_action_for_state=ph.wrap("core: agenda", real_core.start_action_for_state),
        complete_and_start_action=ph.wrap("core: agenda", real_core.complete_and_start_action),
        abandon_action=ph.wrap("core: agenda", real_core.abandon_action),
        delete_state=ph.wrap("core: close", real_core.delete_state))
    module["orjson"] = types.SimpleNamespace(dumps=ph.wrap("encoding", real_orjson.dumps))
    for cls, names, phase in [
        (driver.Agenda, ("first", "next", "_best"), "agenda (Python)"),
        (driver.SoloAgenda, ("first", "next"), "agenda (Python)"),
        (driver.ShardSession, ("peek", "complete"), "agenda (Python)"),
        (loop._Run, ("fire",), "agenda (Python)"),
        (loop._Run, ("on_fire", "add_fact"), "trace + memory"),
        (loop._Run, ("intend", "call_all", "facts_from", "record_call"), "intents + answers"),
        (loop._Run, ("resolve",), "resolution"),
        (loop.Engine, ("validate_input",), "validation"),
        (driver.Pools, ("open",), "sessions (Python)"),
        (driver.Agenda, ("close",), "sessions (Python)"),
        (driver.SoloAgenda, ("close",), "sessions (Python)"),
    ]:
        for name in names:
            setattr(cls, name, ph.wrap(phase, getattr(cls, name)))


def inputs(n: int) -> tuple[Any, list[tuple[dict[str, Any], dict[str, Any]]]]:
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    cases = [(t.given, t.answers) for t in rs.tests]
    out = []
    for i in range(n):
        given, answers = cases[i % len(cases)]
        g: dict[str, Any] = copy.deepcopy(given)  # type: ignore[arg-type]
        g["claim"]["claim_ref"] = f"C-{i}"
        out.append((g, answers))
    return rs, out


def run_baton(engine: loop.Engine, batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> float:
    """CPU seconds of this thread for the batch (thread_time: another process's turn is not counted)."""
    clock, ids = FixedClock(), SequentialIds()

    async def run_all() -> None:
        for g, a in batch:
            recorded = RecordedAnswers(a)
            await engine.decide(g, recorded, recorded, clock, ids)

    t0 = time.thread_time()
    asyncio.run(run_all())
    return time.thread_time() - t0


def run_host(host: Any, state: dict[str, Any], batch: list[tuple[dict[str, Any], dict[str, Any]]],
             base: int) -> float:
    t0 = time.thread_time()
    for i, (g, a) in enumerate(batch):
        engine_speed.raw_decide(host, state, base + i, g, a)
    return time.thread_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000, help="decisions per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rs, batch = inputs(args.n)
    plain = loop.Engine(rs)
    state: dict[str, Any] = {}
    host = engine_speed.QuietHost(engine_speed.raw_ruleset(state))
    run_baton(plain, batch[:200])  # warm both
    run_host(host, state, batch[:200], 10**7)
    gc.collect()
    host_s, baton_s = [], []
    for r in range(args.rounds):  # alternate, so both sides see the same minutes of a loaded machine
        host_s.append(run_host(host, state, batch, r * args.n))
        baton_s.append(run_baton(plain, batch))
    host_us, baton_us = min(host_s) / args.n * 1e6, min(baton_s) / args.n * 1e6

    ph = Phases()
    instrumented = loop.Engine(rs)  # instrumenting patches classes too: plain runs are all done above
    instrument(instrumented, ph)
    run_baton(instrumented, batch[:200])
    best: dict[str, int] | None = None
    counts: dict[str, int] = {}
    total_best = 0
    for _ in range(args.rounds):  # the round with the least total (least disturbed by other processes)
        ph.reset()
        run_baton(instrumented, batch)
        ph.acc[ph.current] += time.thread_time_ns() - ph.since
        total = sum(ph.acc.values())
        if best is None or total < total_best:
            best, total_best, counts = dict(ph.acc), total, dict(ph.n)
    assert best is not None
    # The timers' own cost, spread over the intervals they cut (each interval holds one clock read and a
    # wrapper's bookkeeping): what is left of each phase is its share of the plain run.
    per_interval = max(0.0, total_best - baton_us * 1e3 * args.n) / max(1, sum(counts.values()))
    net = {k: max(0.0, best[k] - counts[k] * per_interval) for k in best}
    net_total = sum(net.values()) or 1.0

    print(f"claims-triage, recorded answers: {args.n} decisions x {args.rounds} rounds, Host and Baton alternated")
    print(f"raw durable-rules (Host) {host_us:7.1f} µs/decision CPU (best round)")
    print(f"Baton loop               {baton_us:7.1f} µs/decision CPU (best round)")
    print(f"Baton / Host (speed)     {host_us / baton_us:7.0%}")
    print(f"instrumented / plain     {total_best / args.n / 1e3 / baton_us:7.2f}x (the timers' own cost, "
          f"{per_interval:.0f} ns per timed interval, taken off each phase)")
    print()
    print(f"{'phase':<20} {'µs/decision':>11} {'share':>6}  what")
    for name, what in PHASES:
        share = net[name] / net_total
        print(f"{name:<20} {share * baton_us:>11.1f} {share:>6.0%}  {what}")
    print(f"{'total':<20} {baton_us:>11.1f} {1:>6.0%}  (instrumented shares less the timers, scaled to plain)")


if __name__ == "__main__":
    main()
