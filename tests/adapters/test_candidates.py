"""The bounded child compiler: each bound refused by its name, the loader's verdict passed on as it is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.candidates import CandidateCompiler, CompileLimitExceeded, CompileLimits
from engine.errors import CompileErrors
from engine.language.source import SourceLimits

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
    (CompileLimits(memory_mb=256, wall_s=120, source=BIG), "limits.compile_memory_mb"),
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
