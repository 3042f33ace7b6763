"""DMN TCK test files (testCases XML) run against an imported model: each case's input nodes become the
ruleset's input facts, the decision runs through Baton's own loop, and each result node is compared with
the value of its decision's facts (none: null; a list for the multi-hit policies)."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any

from engine.clock import FixedClock, SequentialIds
from engine.dmn.importer import INPUT, Imported
from engine.dmn.model import DmnError, parse_xml
from engine.errors import BatonError, InvalidInput
from engine.loop import Decision, Engine
from engine.recorded import RecordedAnswers

XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
NUMBER_TYPES = ("decimal", "double", "float", "int", "integer", "long", "short", "byte", "nonNegativeInteger",
                "positiveInteger", "negativeInteger", "nonPositiveInteger", "unsignedInt", "unsignedLong")


@dataclass(slots=True)
class Result:
    name: str
    expected: object
    error_expected: bool = False


@dataclass(slots=True)
class Case:
    id: str
    description: str
    inputs: dict[str, object]
    results: list[Result]


@dataclass(slots=True)
class Outcome:
    name: str
    expected: object
    actual: object
    passed: bool
    why: str = ""


@dataclass(slots=True)
class CaseRun:
    case: Case
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(o.passed for o in self.outcomes)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _value(e: Any) -> object:
    """A TCK value element (value, list or components) as a plain value."""
    kids = list(e)
    if e.get(XSI + "nil") == "true":
        return None
    lists = [k for k in kids if _local(k.tag) == "list"]
    comps = [k for k in kids if _local(k.tag) == "component"]
    if lists:
        items: list[object] = []
        for item in lists[0]:
            if _local(item.tag) == "item":
                items.append(_value(item))
        return items
    if comps:
        return {c.get("name") or "": _value(c) for c in comps}
    vals = [k for k in kids if _local(k.tag) == "value"]
    if vals:
        return _scalar(vals[0])
    if _local(e.tag) == "value":
        return _scalar(e)
    return None


def _scalar(e: Any) -> object:
    if e.get(XSI + "nil") == "true":
        return None
    kids = list(e)
    if kids:
        return _value(e)
    text = e.text or ""
    xtype = (e.get(XSI + "type") or "").split(":")[-1]
    if xtype in NUMBER_TYPES:
        x = float(text)
        return int(x) if x.is_integer() and abs(x) < 2**53 and "." not in text and "e" not in text.lower() else x
    if xtype == "boolean":
        return text.strip() == "true"
    return text


def read_tests(text: str) -> list[Case]:
    root = parse_xml(text)
    if _local(root.tag) != "testCases":
        raise DmnError(f"not a DMN TCK test file: the root element is {_local(root.tag)!r}")
    cases: list[Case] = []
    for tc in root:
        if _local(tc.tag) != "testCase":
            continue
        inputs: dict[str, object] = {}
        results: list[Result] = []
        description = ""
        for node in tc:
            tag = _local(node.tag)
            if tag == "description":
                description = (node.text or "").strip()
            elif tag == "inputNode":
                inputs[node.get("name") or ""] = _value(node)
            elif tag == "resultNode":
                expected = next((k for k in node if _local(k.tag) == "expected"), None)
                results.append(Result(node.get("name") or "", _value(expected) if expected is not None else None,
                                      node.get("errorResult") == "true"))
        cases.append(Case(tc.get("id") or str(len(cases) + 1), description, inputs, results))
    return cases


def facts_for(imported: Imported, inputs: dict[str, object]) -> dict[str, object]:
    """A case's input nodes as the ruleset's input facts (a null input is left out: its field is optional)."""
    out: dict[str, dict[str, object]] = {INPUT: {}}
    for name, value in inputs.items():
        where = imported.inputs.get(name)
        if where is None and name in imported.dropped:
            continue  # an input of a type Baton lacks (partial import): the decisions reading it were left out
        if where is None:
            raise DmnError(f"the test gives an input {name!r} the model does not have")
        fact, fname, _ = where
        if fname:
            if value is not None:
                out[INPUT][fname] = value
            continue
        comps = imported.components.get(name, {})
        record: dict[str, object] = {}
        if isinstance(value, dict):
            for cname, v in value.items():
                if cname in comps and v is not None:
                    record[comps[cname]] = v
        if value is not None:
            out[fact] = record
    return dict(out)


def result_of(imported: Imported, d: Decision, name: str) -> object:
    dmap = imported.decisions.get(name)
    if dmap is None:
        raise KeyError(name)
    facts = [e["values"] for e in d.trace if e.get("kind") == "fact" and e.get("type") == dmap.fact]

    def shown(values: dict[str, Any]) -> object:
        if list(dmap.fields) == ["value"]:
            return values.get("value")
        return {comp: values.get(f) for f, comp in dmap.fields.items()}

    if dmap.multi:
        return [shown(v) for v in facts]
    if not facts:
        return None
    return shown(facts[-1])


def same(expected: object, actual: object) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual or (expected == actual and type(expected) is type(actual))
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(expected), float(actual), rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(same(a, b) for a, b in zip(expected, actual, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = set(expected) | set(actual)
        return all(same(expected.get(k), actual.get(k)) for k in keys)
    if isinstance(expected, str) and isinstance(actual, (int, float)):
        try:
            return same(float(expected), actual)
        except ValueError:
            return False
    return expected == actual


async def run_case(engine: Engine, imported: Imported, case: Case) -> CaseRun:
    run = CaseRun(case)
    try:
        facts = facts_for(imported, case.inputs)
        recorded = RecordedAnswers({})
        d = await engine.decide(facts, recorded, recorded, FixedClock(), SequentialIds("dmn-"))
    except (DmnError, InvalidInput, BatonError) as e:
        run.error = f"input: {e}"
        return run
    for r in case.results:
        if r.name in imported.skipped:
            run.outcomes.append(Outcome(r.name, r.expected, None, False, f"not imported: {imported.skipped[r.name]}"))
            continue
        if d.outcome == "failed":
            ok = r.error_expected
            run.outcomes.append(Outcome(r.name, r.expected, None, ok, "" if ok else f"the decision failed: {d.reason}"))
            continue
        try:
            actual = result_of(imported, d, r.name)
        except KeyError:
            run.outcomes.append(Outcome(r.name, r.expected, None, False, "no such decision in the model"))
            continue
        ok = (actual is None) if r.error_expected else same(r.expected, actual)
        run.outcomes.append(Outcome(r.name, r.expected, actual, ok))
    return run


def run_tests(imported: Imported, engine: Engine, cases: list[Case]) -> list[CaseRun]:
    async def go() -> list[CaseRun]:
        return [await run_case(engine, imported, c) for c in cases]

    return asyncio.run(go())


def _rounded(value: object) -> object:
    """A value as the engine shows it: numbers to 15 significant digits (engine/loop.py, computed values)."""
    if isinstance(value, float):
        value = float(f"{value:.15g}")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def expected_decision(imported: Imported, case: Case) -> dict[str, object] | None:
    """A case's expected results as the imported ruleset's decision (each decision's results as a list);
    None when a result node is of a decision left out or expects an error."""
    out: dict[str, object] = {}
    for r in case.results:
        dmap = imported.decisions.get(r.name)
        if dmap is None or r.error_expected or r.name in imported.skipped:
            return None
        values = r.expected if dmap.multi else ([] if r.expected is None else [r.expected])
        if not isinstance(values, list):
            return None
        if list(dmap.fields) != ["value"]:
            back = {comp: f for f, comp in dmap.fields.items()}
            values = [{back.get(k, k): v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
                      for item in values]
        if _fine(values):
            return None  # FEEL computes in 34-digit decimals, Baton in binary floating point: see tests_yaml
        out[dmap.fact] = _rounded(values)
    return out


def _fine(value: object) -> bool:
    """Does a number here need more than 12 significant digits (where binary and decimal arithmetic may
    differ in the last digits Baton shows)?"""
    if isinstance(value, float):
        return float(f"{value:.12g}") != float(f"{value:.15g}")
    if isinstance(value, list):
        return any(_fine(v) for v in value)
    if isinstance(value, dict):
        return any(_fine(v) for v in value.values())
    return False


def tests_yaml(imported: Imported, cases: list[Case], source: str) -> str:
    """The cases as the ruleset's embedded ``tests:`` (those it can express; the others are listed)."""
    lines = ["", f"tests:   # from the DMN test file {source}"]
    left_out = []
    for case in cases:
        expected = expected_decision(imported, case)
        if expected is None:
            left_out.append(case.id)
            continue
        try:
            given = facts_for(imported, case.inputs)
        except DmnError:
            left_out.append(case.id)
            continue
        name = f"DMN test case {case.id}" + (f": {case.description}" if case.description else "")
        lines.append(f"  - name: {json.dumps(name, ensure_ascii=False)}")
        lines.append(f"    given: {json.dumps(given, ensure_ascii=False)}")
        lines.append(f"    expect: {json.dumps({'outcome': 'decided', 'decision': expected}, ensure_ascii=False)}")
    if left_out:
        lines.append(f"  # not embedded: cases {', '.join(left_out)} (an expected error, a decision left out, or a "
                     "number past 12 significant digits: baton dmn test compares those to a relative 1e-12)")
    return "\n".join(lines) + "\n"


__all__ = ["Case", "CaseRun", "Outcome", "read_tests", "run_tests", "tests_yaml"]
