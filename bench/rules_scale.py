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

from adapters.system import tune_allocator  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--smoke", action="store_true", help="small sizes and few decisions (CI)")
    parser.add_argument("--no-raw", action="store_true")
    parser.add_argument("--raw-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tune_allocator()  # as every Baton process does (adapters/system.py): the figures are the service's
    if args.raw_child is not None:
        raw_child(args.raw_child, args.decisions)
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
