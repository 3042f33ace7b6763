"""Run a ruleset's embedded tests through the real loop with recorded answers; report rule coverage."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from engine.clock import FixedClock, SequentialIds
from engine.errors import BatonError
from engine.loop import Decision, Engine, HumanInput, Limits
from engine.model import Ruleset, TestCase
from engine.recorded import RecordedAnswers


@dataclass(slots=True)
class TestResult:
    name: str
    line: int
    failures: list[str] = field(default_factory=list)
    record: Decision | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class SuiteResult:
    ruleset: Ruleset
    results: list[TestResult]
    uncovered: list[str]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def compare(expect: dict[str, object], d: Decision) -> list[str]:
    """Readable differences between what a test expects and what the decision did."""
    out: list[str] = []
    if "outcome" in expect and expect["outcome"] != d.outcome:
        why = f" ({d.reason})" if d.outcome == "failed" else ""
        out.append(f"outcome: expected {expect['outcome']}, got {d.outcome}{why}")
    want = expect.get("decision")
    if isinstance(want, dict):
        for key, value in want.items():
            if key == "reason":
                got: object = d.reason
            else:
                got = d.decision.get(key, "<absent>")
            if got != value:
                out.append(f"decision.{key}: expected {_show(value)}, got {_show(got)}")
    if "reason" in expect and expect["reason"] != d.reason:
        out.append(f"reason: expected {_show(expect['reason'])}, got {_show(d.reason)}")
    fired = expect.get("fired")
    if isinstance(fired, list) and fired != d.fired:
        out.append("fired differs:\n" + fired_diff(fired, d.fired))
    for name in expect.get("fired_includes") or []:  # type: ignore[attr-defined]
        if name not in d.fired:
            out.append(f"expected rule {name!r} to fire; it did not")
    for name in expect.get("not_fired") or []:  # type: ignore[attr-defined]
        if name in d.fired:
            out.append(f"expected rule {name!r} not to fire; it fired")
    return out


def fired_diff(expected: list[object], got: list[str]) -> str:
    """The two firing lists aligned (a longest-common-subsequence diff, as ``diff`` shows lines): one rule
    inserted shows as one added line, not as every later position differing."""
    exp = [str(x) for x in expected]
    width = max([len(x) for x in exp] + [8])
    lines = [f"      {'expected':<{width}}  got"]
    matcher = difflib.SequenceMatcher(a=exp, b=got, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            lines.extend(f"      {e:<{width}}  {e}" for e in exp[i1:i2])
            continue
        left, right = exp[i1:i2], got[j1:j2]
        for k in range(max(len(left), len(right))):
            e = left[k] if k < len(left) else ""
            g = right[k] if k < len(right) else ""
            mark = "!=" if e and g else "- " if e else "+ "
            lines.append(f"   {mark} {e or '-':<{width}}  {g or '-'}")
    return "\n".join(lines)


async def run_test(engine: Engine, test: TestCase, now: float = 0.0) -> TestResult:
    result = TestResult(test.name, test.where.line)
    answers = RecordedAnswers(test.answers)
    try:
        human = [HumanInput(t, engine.ruleset.types[t].validate(v, f"human.{t}"), "test")
                 for t, v in test.human.items() if t in engine.ruleset.types] if test.human else []
        unknown = [t for t in test.human if t not in engine.ruleset.types]
        if unknown:
            raise BatonError("unknown_fact_type", f"human: unknown fact type {unknown[0]!r}")
        d = await engine.run(engine.validate_input(test.given, allow_empty=bool(test.documents)), answers, answers,
                             FixedClock(test.at if test.at is not None else now), SequentialIds("test-"), Limits(),
                             human, documents=test.documents)
    except BatonError as e:
        result.failures.append(f"error: {e}")
        return result
    result.record = d
    for action in dict.fromkeys(answers.unanswered):
        result.failures.append(f"error: {action} was called but the test records no answer for it "
                               "(tests never make live calls)")
    result.failures.extend(compare(test.expect, d))
    return result


async def run_suite(ruleset: Ruleset, now: float = 0.0) -> SuiteResult:
    """``now``: the start time of tests that set no decision_date/decision_time (the CLI passes the clock)."""
    engine = Engine(ruleset)
    results = [await run_test(engine, t, now) for t in ruleset.tests]
    fired = {name for r in results if r.record for name in r.record.fired}
    uncovered = [r.name for r in ruleset.rules if r.name not in fired and r.name not in engine.internal]
    return SuiteResult(ruleset, results, uncovered)
