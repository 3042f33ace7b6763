"""Decision cost against ruleset size: N generated rules, and decision tables of N rows.

For N = 10, 100, 1,000, 10,000 (tests/scale.py: equality, ranges with an enum, ``in`` with a range,
``contains``, an equality join, an arithmetic guard; at most a handful of rules can match an input) it
prints compile seconds (YAML parse, checks, analysis, engine networks) and microseconds per decision
(p50, p99, and p50 against the N = 10 figure), through Baton's full loop in this process.

Beside it, raw durable-rules: the same rules pushed into its network as far as is safe (literal tests,
``in`` as ``$or`` of distinct values, ``contains`` as ``$iany``, the join as an equality to the earlier
pattern; the arithmetic test is checked in the action), one network, driven directly through the C
extension. Each raw run is a child process under a timeout, since past its limits the core hangs.

Targets (issue 19): 10,000 rules <= 3x the 10-rule cost per decision; a 10,000-row table <= 2x a
10-row table; compile <= 5 s. Run: .venv/bin/python bench/rules_scale.py [--decisions 2000] [--smoke]

``--memory`` (issue 37: a 10,000-rule version in at most 100 MB per worker) prints instead, per size, what
one version costs a worker, each size in a fresh child process: resident memory added by loading it
(YAML parse, checks, compile, analysis: Python objects, with the small-object allocator's arenas and the
bytes live in them), by registering its durable-rules networks (C), by deciding, and what is left after
it is unloaded (``engine.driver.unload``, the registry's idle unloading) and when it is loaded again; and
the time per decision. ``--networks-mb M`` holds the networks to M MB (``versions.networks_max_mb``): they are
registered on first use and the least recently used freed, so the same rows show what the bound saves and
what re-registering costs the decisions; ``--hot K`` draws the inputs from K distinct ones (Zipf), a
workload that keeps to some of the rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.infra.system import tune_allocator  # noqa: E402
from engine.clock import FixedClock, SequentialIds  # noqa: E402
from engine.language.loader import load_ruleset  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402
from tests.scale import CHANNELS, COUNTRIES, SPAN, inputs, ruleset_text, table_text  # noqa: E402


def table_only(rows: int) -> str:
    return ruleset_text(0, 0).replace("rules:\n", "") + table_text(rows, "first") + '      - ["-", "-", other]\n'


def baton(text: str, facts: list[dict[str, Any]]) -> dict[str, float]:
    t = time.perf_counter()
    engine = Engine(load_ruleset(text, "scale.yaml"))
    compile_s = time.perf_counter() - t
    answers = RecordedAnswers({})

    async def run() -> list[float]:
        for f in facts:  # warm: every network this input set touches is registered before timing
            await engine.decide(f, answers, answers, FixedClock(), SequentialIds())
        times = []
        for f in facts:
            start = time.perf_counter()
            await engine.decide(f, answers, answers, FixedClock(), SequentialIds())
            times.append(time.perf_counter() - start)
        return times

    times = sorted(asyncio.run(run()))
    return {"compile_s": compile_s, "p50": statistics.median(times) * 1e6,
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6}


# -- raw durable-rules (child process) ------------------------------------------------------------------

def raw_definition(n: int) -> dict[str, Any]:
    width = SPAN / (n // 6 + 1)
    out: dict[str, Any] = {"start": {"pri": 0, "all": [{"m": {"t": "start"}}]}}
    for i in range(n):
        kind, pri = i % 6, 1001 - (i % 10 - 5)
        txn: list[dict[str, Any]] = [{"t": "txn"}]
        if kind == 0:
            txn.append({"code": f"c{i}"})
        elif kind == 1:
            lo = round((i // 6) * width, 2)
            txn += [{"$gte": {"amount": lo}}, {"$lt": {"amount": round(lo + width, 2)}}, {"channel": CHANNELS[i % 3]}]
        elif kind == 2:
            txn += [{"$or": [{"country": COUNTRIES[i % 8]}, {"country": COUNTRIES[(i + 3) % 8]}]}, {"score": i}]
        elif kind == 3:
            txn.append({"$iany": {"tags": {"$i": f"t{i}"}}})
        if kind == 4:
            patterns = [{"c": {"$and": [{"t": "customer"}]}},
                        {"x": {"$and": [{"t": "txn"}, {"code": f"c{i}"}, {"customer_ref": {"c": "ref"}}]}}]
        elif kind == 5:
            patterns = [{"c": {"$and": [{"t": "customer"}, {"segment": f"s{i}"}]}}, {"x": {"t": "txn"}}]
        else:
            patterns = [{"x": {"$and": txn}}]
        out[f"r{i}"] = {"pri": pri, "all": patterns}
    return out


def raw_child(n: int, count: int) -> None:
    import durable_rules_engine as core

    definition = raw_definition(n)
    t = time.perf_counter()
    handle = core.create_ruleset(f"raw{n}", json.dumps(definition))
    compile_s = time.perf_counter() - t
    facts = inputs(n, count)
    times = []
    for k, f in enumerate(facts * 2):
        sid = f"s{k}"
        batch = [{"sid": sid, "t": "start", "bn": 0}, {"sid": sid, "t": "txn", "bn": 1, **f["txn"]},
                 {"sid": sid, "t": "customer", "bn": 2, **f["customer"]}]
        start = time.perf_counter()
        _, state = core.assert_facts(handle, json.dumps(batch))
        result = core.start_action_for_state(handle, state)
        message = result[1] if result else None
        while message is not None:
            if message.startswith('{"r') and int(message[3:message.index('"', 3)]) % 6 == 5:
                matched = json.loads(message)
                body = next(iter(matched.values()))
                _ = body["x"]["amount"] * 2 > body["c"]["limit"]  # the guard raw durable-rules cannot run
            message = core.complete_and_start_action(handle, state)
        core.delete_state(handle, sid)
        if k >= len(facts):
            times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"compile_s": compile_s, "p50": statistics.median(times) * 1e6,
                      "p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6}))


def raw(n: int, count: int) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, __file__, "--raw-child", str(n), "--decisions", str(count)],
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "hangs (timeout)"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": last.split(": ", 1)[-1][:40]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- memory (child process per size) ------------------------------------------------------------------

def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pymalloc() -> tuple[float, float]:
    """(MB in live small objects, MB of arenas holding them) from CPython's allocator statistics."""
    import os
    import re
    import tempfile

    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    used = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    arenas = re.search(r"arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", text)
    return tuple(int(m.group(1).replace(",", "")) / 1e6 if m else 0.0 for m in (used, arenas))  # type: ignore[return-value]


def hot_inputs(n: int, count: int, hot: int) -> list[dict[str, Any]]:
    """``count`` inputs drawn from ``hot`` distinct ones with Zipf weights (the k-th most common 1/k): a
    workload that keeps to some of the rules, as most do, against the even spread of ``inputs``."""
    import random

    distinct = inputs(n, hot)
    return random.Random(11).choices(distinct, weights=[1 / (k + 1) for k in range(hot)], k=count)


def memory_child(n: int, count: int, networks_mb: float | None = None, hot: int | None = None) -> None:
    import gc

    from adapters.infra.system import trim_heap
    from engine.driver import network_budget, set_network_budget, unload

    set_network_budget(networks_mb)

    text = ruleset_text(n)
    facts = inputs(n, count) if hot is None else hot_inputs(n, count, hot)
    answers = RecordedAnswers({})
    gc.collect()
    out: dict[str, float] = {"text_mb": len(text.encode()) / 1e6}
    base, (live0, arenas0) = _rss_mb(), _pymalloc()
    rs = load_ruleset(text, "scale.yaml")
    gc.collect()
    out["load_mb"] = _rss_mb() - base
    live, arenas = _pymalloc()
    out["py_live_mb"], out["py_arenas_mb"] = live - live0, arenas - arenas0
    at = _rss_mb()
    engine = Engine(rs)
    out["networks"] = len(engine.compiled.shards)
    out["networks_mb"] = _rss_mb() - at

    async def run(e: Engine) -> list[float]:
        times = []
        for f in facts:
            start = time.perf_counter()
            await e.decide(f, answers, answers, FixedClock(), SequentialIds())
            times.append(time.perf_counter() - start)
        return times

    out["p50_us"] = statistics.median(asyncio.run(run(engine))) * 1e6
    gc.collect()
    out["total_mb"] = _rss_mb() - base
    budget = network_budget()
    out["held"], out["registered"], out["evicted"] = budget.networks, budget.registered, budget.evicted
    unload(engine.compiled)
    del engine, rs
    gc.collect()
    trim_heap()
    out["unloaded_mb"] = _rss_mb() - base
    at = _rss_mb()
    Engine(load_ruleset(text, "scale.yaml"))
    gc.collect()
    out["reload_mb"] = _rss_mb() - at
    print(json.dumps(out))


def memory(sizes: list[int], count: int, networks_mb: float | None = None, hot: int | None = None) -> None:
    held = f", networks held to {networks_mb:g} MB" if networks_mb is not None else ""
    held += f", inputs drawn from {hot:,} distinct ones (Zipf)" if hot is not None else ""
    print(f"resident MB one version adds to a worker, a fresh process per size ({count} decisions{held})\n")
    print(f"{'':12}{'source':>8}{'load':>7}{'py live':>9}{'arenas':>8}{'networks':>15}{'decided':>9}"
          f"{'unloaded':>10}{'reload':>8}{'p50 µs':>8}{'held':>7}{'registered':>11}")
    for n in sizes:
        bound = ["--networks-mb", str(networks_mb)] if networks_mb is not None else []
        bound += ["--hot", str(hot)] if hot is not None else []
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--decisions", str(count), *bound],
                              capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            print(f"rules N={n:,}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        m = json.loads(done.stdout)
        print(f"{'N=' + format(n, ','):12}{m['text_mb']:>8.1f}{m['load_mb']:>7.0f}{m['py_live_mb']:>9.0f}"
              f"{m['py_arenas_mb']:>8.0f}{m['networks_mb']:>7.0f} ({m['networks']:>5.0f}){m['total_mb']:>9.0f}"
              f"{m['unloaded_mb']:>10.0f}{m['reload_mb']:>8.0f}{m['p50_us']:>8.0f}{m['held']:>7,}{m['registered']:>11,}")
    print("\nload: resident after parse, checks, compile and analysis; py live / arenas: bytes in live Python small"
          "\nobjects and the allocator arenas holding them (the rest of the arenas is free space left by the"
          "\nparse); networks: durable-rules networks registered (count); decided: the whole version after the"
          "\ndecisions; unloaded: what stays after driver.unload and a trim; reload: loading it again after that;"
          "\np50 µs: per decision; held, registered: networks registered at the end, and registrations in all"
          "\n(with --networks-mb, on first use and again after each eviction).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--smoke", action="store_true", help="small sizes and few decisions (CI)")
    parser.add_argument("--no-raw", action="store_true")
    parser.add_argument("--memory", action="store_true", help="what a version costs a worker in memory")
    parser.add_argument("--raw-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--networks-mb", type=float, help="with --memory: hold the networks to this budget "
                        "(engine.driver.set_network_budget, the config's versions.networks_max_mb)")
    parser.add_argument("--hot", type=int, help="with --memory: draw the decisions' inputs from this many "
                        "distinct ones, the k-th most common 1/k (a workload that keeps to some rules)")
    args = parser.parse_args()
    tune_allocator()  # as every Baton process does (adapters/infra/system.py): the figures are the service's
    if args.raw_child is not None:
        raw_child(args.raw_child, args.decisions)
        return
    if args.memory_child is not None:
        memory_child(args.memory_child, args.decisions, args.networks_mb, args.hot)
        return
    if args.memory:
        memory([10, 100] if args.smoke else [int(x) for x in args.sizes.split(",")], 50 if args.smoke else
               args.decisions, args.networks_mb, args.hot)
        return
    sizes = [10, 100] if args.smoke else [int(x) for x in args.sizes.split(",")]
    count = 50 if args.smoke else args.decisions
    print(f"{count} decisions per size, one process, recorded answers; µs per decision\n")
    head = f"{'':22}{'compile s':>10}{'p50':>9}{'p99':>9}{'p50 / N=10':>12}   raw durable-rules p50 / p99"
    for label, text_of in (("rules", lambda n: ruleset_text(n)), ("table rows", table_only)):
        print(head)
        base = 0.0
        for n in sizes:
            facts = inputs(n, count)
            if label == "table rows":
                facts = [{"txn": f["txn"]} for f in facts]
            b = baton(text_of(n), facts)
            base = base or b["p50"]
            other = ""
            if label == "rules" and not args.no_raw:
                r = raw(n, count)
                other = r["error"] if "error" in r else f"{r['p50']:.0f} / {r['p99']:.0f}"
            print(f"{label + ' N=' + format(n, ','):22}{b['compile_s']:>10.2f}{b['p50']:>9.0f}{b['p99']:>9.0f}"
                  f"{b['p50'] / base:>11.2f}x   {other}")
        print()


if __name__ == "__main__":
    main()
