"""The bounded child compiler: each bound refused by its name, the loader's verdict passed on as it is."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.infra.candidates import PER_JOB, CandidateCompiler, CompileLimitExceeded, CompileLimits
from engine.clock import FixedClock, SequentialIds
from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.language.source import SourceLimits
from engine.loop import Engine
from engine.model import Ruleset
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from engine.replay import WhatIf, what_if
from engine.testing import run_suite

ROOT = Path(__file__).resolve().parents[2]
HEAD = "ruleset: cand\nfacts:\n  t: {a: number, s: str}\n"


def rules(n: int, when: str = "t.a > {i}") -> str:
    body = "".join(f"  - name: r{i}\n    when: {when.format(i=i)}\n" f"    then: {{decide: {{q: r{i}}}}}\n"
                   for i in range(n))
    return HEAD + "rules:\n" + body


@pytest.fixture
def compiler() -> Iterator[CandidateCompiler]:
    c = CandidateCompiler()
    yield c
    c.close()


def test_a_ruleset_that_compiles_gives_its_name_version_and_counts(compiler: CandidateCompiler) -> None:
    source = (ROOT / "rulesets/claims-triage.yaml").read_text()
    checked = compiler.check(source, "claims-triage.yaml")
    rs = compiler.compile(source, "claims-triage.yaml")
    assert (checked.name, checked.version, checked.rules, checked.tests) == \
        (rs.name, rs.version, len(rs.rules), len(rs.tests))


def test_compile_errors_come_back_as_the_loader_reports_them(compiler: CandidateCompiler) -> None:
    with pytest.raises(CompileErrors) as e:
        compiler.check(HEAD + "rules:\n  - name: r\n    when: t.b > 1\n    then: {decide: {q: x}}\n", "bad.yaml")
    [error] = e.value.errors
    assert (error.code, str(error.where)) == ("unknown_field", "bad.yaml:6:13")


def test_the_spare_child_serves_the_next_compile(compiler: CandidateCompiler) -> None:
    for i in range(3):
        assert compiler.check(rules(2 + i), "r.yaml").rules == 2 + i


BIG = SourceLimits(max_chars=4_000_000)


@pytest.mark.parametrize(("limits", "name"), [
    (CompileLimits(cpu_s=1, wall_s=120, source=BIG), "limits.compile_cpu_s"),
    # these 20,000 rules compile in 225-256 MB of address space; a small ruleset still does in 160 (checked below)
    (CompileLimits(memory_mb=160, wall_s=120, source=BIG), "limits.compile_memory_mb"),
    (CompileLimits(wall_s=0.5, source=BIG), "limits.compile_wall_s"),
])
@pytest.mark.slow
def test_each_bound_is_refused_by_its_name(limits: CompileLimits, name: str) -> None:
    compiler = CandidateCompiler(limits)
    try:
        with pytest.raises(CompileLimitExceeded) as e:
            compiler.check(rules(20_000, 't.s matches "^(a+)+b{i}$" and t.a > {i}'), "big.yaml")
        assert e.value.limit == name
        assert e.value.code == "compile_limit"
        assert name in e.value.message
        # the child is gone and the compiler still works
        assert compiler.check(rules(1), "small.yaml").rules == 1
    finally:
        compiler.close()


def test_the_configured_source_limits_reach_the_child() -> None:
    compiler = CandidateCompiler(CompileLimits(source=SourceLimits(max_rules=3)))
    try:
        with pytest.raises(CompileErrors) as e:
            compiler.check(rules(4), "r.yaml")
        assert e.value.errors[0].code == "too_many_rules"
    finally:
        compiler.close()


@pytest.mark.slow
def test_twenty_thousand_simple_rules_compile_within_the_default_bounds() -> None:
    """Within the default CPU seconds and address space (README gives the figure); the wall-time bound is
    left wide here, since a machine busy with other work stretches the wall clock but not CPU seconds."""
    compiler = CandidateCompiler(CompileLimits(wall_s=600))
    try:
        source = rules(20_000)
        assert len(source) < compiler.limits.source.max_chars
        assert compiler.check(source, "big.yaml").rules == 20_000
    finally:
        compiler.close()


# -- runs: what runs a candidate runs in the child too ------------------------------------------------------

def decisions_of(rs: Ruleset) -> list[DecisionRecord]:
    """Each embedded test of ``rs`` decided in this process, as the store would hold it."""
    engine, out = Engine(rs), []
    for i, test in enumerate(rs.tests):
        answers = RecordedAnswers(test.answers)
        d = asyncio.run(engine.decide(test.given, answers, answers, FixedClock(1000.0 + i),
                                      SequentialIds(f"d{i}-")))
        out.append(d.to_dict())
    return out


def test_a_run_in_the_child_gives_what_this_process_would(compiler: CandidateCompiler) -> None:
    """Tests, and what-ifs of stored decisions (whole records kept), as the engine here gives them."""
    live = load_ruleset((ROOT / "rulesets/claims-triage.yaml").read_text(), "claims-triage.yaml")
    source = live.source.replace("claim.amount > 50000", "claim.amount > 85000")
    candidate = load_ruleset(source, "candidate.yaml")
    records = decisions_of(live)
    seen: list[int] = []

    async def run() -> tuple[Any, Any, list[WhatIf]]:
        checked, suite = await compiler.asuite(source, "candidate.yaml", 5.0)
        _, results = await compiler.awhat_if(source, "candidate.yaml", lambda c: (len(records), [(r, []) for r in
                                                                                                records]),
                                             keep=True, progress=lambda done, total: seen.append(done))
        return checked, suite, results

    checked, suite, results = asyncio.run(run())
    assert (checked.name, checked.version, checked.rules) == (candidate.name, candidate.version,
                                                              len(candidate.rules))
    here = asyncio.run(run_suite(candidate, 5.0))
    assert [(r.name, r.failures) for r in suite.results] == [(r.name, r.failures) for r in here.results]
    assert (suite.rules, suite.uncovered) == (len(candidate.rules), here.uncovered)
    engine = Engine(candidate)
    expected = [asyncio.run(what_if(engine, r, keep=True)) for r in records]
    assert results == expected
    assert any(w.changed for w in results), "the candidate changes an outcome"
    assert seen == list(range(1, len(records) + 1))


def test_a_run_cancelled_ends_its_child(compiler: CandidateCompiler) -> None:
    """The caller gone (a deadline, a closed stream): the child is killed, not left running."""
    gate = threading.Event()

    def items(_: Any) -> tuple[int, Iterator[Any]]:
        def wait() -> Iterator[Any]:
            gate.wait(30)
            yield from ()
        return 1, wait()

    async def run() -> None:
        task = asyncio.ensure_future(compiler.awhat_if(rules(3), "r.yaml", items))
        deadline = time.monotonic() + 30
        while not children() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def children() -> list[str]:  # the run's child, past its "ready" (the spare waits for a request)
        out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "adapters.infra.candidate_child"],
                             capture_output=True, text=True).stdout.split()
        return out if len(out) >= 2 else []

    asyncio.run(run())
    gate.set()
    deadline = time.monotonic() + 30
    while len(children()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(children()) <= 1, "only the spare is left"


def test_a_store_read_that_fails_ends_the_run_with_its_error(compiler: CandidateCompiler) -> None:
    def items(_: Any) -> tuple[int, Iterator[Any]]:
        def broken() -> Iterator[Any]:
            raise OSError("the store went away")
            yield
        return 1, broken()

    with pytest.raises(OSError, match="the store went away"):
        asyncio.run(compiler.awhat_if(rules(3), "r.yaml", items))


def test_a_run_of_a_candidate_that_does_not_compile_is_refused_at_its_line(compiler: CandidateCompiler) -> None:
    with pytest.raises(CompileErrors) as e:
        asyncio.run(compiler.asuite(HEAD + "rules:\n  - name: r\n    when: t.b > 1\n    then: {decide: {q: x}}\n",
                                    "bad.yaml"))
    assert str(e.value.errors[0].where) == "bad.yaml:6:13"


def test_a_page_reads_an_unpublished_version_through_the_child(compiler: CandidateCompiler) -> None:
    """The DMN export and the table rows' lines, as this process would read them off the compiled ruleset."""
    from engine.dmn.export import export_dmn

    source = (ROOT / "rulesets/credit-limit.yaml").read_text()
    rs = load_ruleset(source, "credit-limit.yaml")

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        return (await compiler.ajob("dmn", source, "credit-limit.yaml"))[1], \
            (await compiler.ajob("tables", source, "credit-limit.yaml"))[1]

    dmn, tables = asyncio.run(run())
    xml, left_out = export_dmn(rs)
    assert (dmn["xml"], dmn["left_out"]) == (xml, left_out)
    assert tables == {t.name: [r.where.line for r in t.rows] for t in rs.tables} and tables


class Records:
    """What a run reads of the store, from a list (the SQL store's own tests cover its reads)."""

    def __init__(self, records: list[DecisionRecord]) -> None:
        self.by_id = {str(r["decision_id"]): r for r in records}

    def get_many(self, ids: Sequence[str]) -> list[DecisionRecord | None]:
        return [self.by_id.get(i) for i in ids]

    def documents(self, ids: list[str]) -> list[Any]:
        return []


def test_an_impact_split_across_children_gives_the_one_childs_answer(compiler: CandidateCompiler) -> None:
    live = load_ruleset((ROOT / "rulesets/claims-triage.yaml").read_text(), "claims-triage.yaml")
    source = live.source.replace("claim.amount > 50000", "claim.amount > 85000")
    records = decisions_of(live)
    many = [{**r, "decision_id": f"{r['decision_id']}-{k}"} for k in range(150) for r in records]
    assert len(many) >= 2 * PER_JOB
    store = Records(many)  # type: ignore[arg-type]
    ids = [str(r["decision_id"]) for r in many]
    seen: list[tuple[int, int]] = []

    async def run(jobs: int) -> list[WhatIf]:
        _, results = await compiler.aimpact(source, "c.yaml", lambda c: ids if c.name == live.name else [],
                                            store, jobs=jobs, progress=lambda d, t: seen.append((d, t)))
        return results

    one = asyncio.run(run(1))
    seen.clear()
    split = asyncio.run(run(2))
    assert split == one and len(one) == len(many)
    assert [w.decision_id for w in split] == ids
    assert max(seen) == (len(ids), len(ids)) and len({t for _, t in seen}) == 1
