"""Aggregates at size: one applicant whose loans (10 to 1,000, answered by one tool call) feed a sum()
rule and a count() rule, and a rule that re-fires as each round adds loans. Prints ms per decision.

    .venv/bin/python bench/aggregates.py            # 10, 100, 1,000 loans
    .venv/bin/python bench/aggregates.py --smoke    # one small run (CI)

An aggregate is computed once per distinct set of facts it depends on and remembered for the decision,
so a rule re-considered on every one of N facts costs O(N) in total, not O(N^2)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.infra.system import tune_allocator
from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers

RULESET = """\
ruleset: bench-aggregates
facts:
  applicant:
    ref: str
  loan:
    ref: str
    applicant_ref: str
    amount: number
    status: {enum: [open, closed, default]}
input: [applicant]
tools:
  loans:
    connector: sql
    query: select * from loans where applicant_ref = :ref
    params: {ref: applicant.ref}
    produces: loan
settings: {step_limit: 100000}
rules:
  - name: fetch
    when: exists applicant
    then: loans
  - name: exposure
    priority: 10
    when: exists applicant and sum(loan.amount where loan.applicant_ref == applicant.ref) > 100000
    then:
      decide: {route: refer, total: "=sum(loan.amount where loan.applicant_ref == applicant.ref)"}
  - name: defaults
    priority: 20
    when: 'exists applicant and count(loan where loan.status == "default") >= 2'
    then:
      decide: {route: decline, defaults: '=count(loan where loan.status == "default")'}
  - name: per-loan
    when: 'loan.status == "open" and count(loan) > 5'
    then:
      decide: {route: per-loan}
"""


def loans(n: int) -> list[dict[str, object]]:
    statuses = ("open", "closed", "default")
    return [{"ref": f"L{i}", "applicant_ref": "A", "amount": 500 + (i * 37) % 900, "status": statuses[i % 3]}
            for i in range(n)]


def run(n: int, repeat: int) -> tuple[float, int]:
    engine = Engine(load_ruleset(RULESET, "bench.yaml"))
    answers = {"loans": [loans(n)]}
    times = []
    fired = 0
    for _ in range(repeat):
        recorded = RecordedAnswers(answers)
        start = time.perf_counter()
        d = asyncio.run(engine.decide({"applicant": {"ref": "A"}}, recorded, recorded, FixedClock(), SequentialIds()))
        times.append(time.perf_counter() - start)
        assert d.outcome == "decided", d.reason
        fired = d.steps
    return statistics.median(times) * 1000, fired


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    sizes = [10, 100] if args.smoke else [10, 100, 1000]
    print(f"{'loans':>6} {'firings':>8} {'ms / decision':>14}")
    for n in sizes:
        ms, fired = run(n, 3 if args.smoke else 15)
        print(f"{n:>6} {fired:>8} {ms:>14.2f}")
    print("aggregates: ok")


if __name__ == "__main__":
    main()
