"""The JSON Schema for ruleset files accepts every ruleset Baton accepts here, and flags wrong shapes."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from engine.language.schema import ruleset_schema
from engine.language.source import parse_yaml, plain

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft7Validator(ruleset_schema())


def _documented() -> list[str]:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^```yaml\n(ruleset:.*?)^```", text, re.S | re.M)]


def test_the_schema_is_valid_draft_7() -> None:
    jsonschema.Draft7Validator.check_schema(ruleset_schema())


@pytest.mark.parametrize("text", [p.read_text(encoding="utf-8") for p in sorted((ROOT / "rulesets").glob("*.yaml"))]
                         + _documented())
def test_every_example_ruleset_is_valid(text: str) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(
        plain(parse_yaml(text, "x.yaml")))]
    assert errors == []


@pytest.mark.parametrize(("fragment", "where"), [
    ("rules: [{name: r, when: exists claim}]", "rules/0"),  # no then
    ("tests: [{name: t, given: {}, expect: {outcome: done}}]", "tests/0/expect/outcome"),
    ("rules: [{name: r, when: exists claim, then: {decide: {}}, priorty: 3}]", "rules/0"),
    ("input: 3", "input"),
    ("facts: {claim: {amount: money}}", "facts/claim/amount"),
    ("rules: [{name: r, when: exists claim, then: {escalate: {reason: x}}}]", "rules/0/then"),
    ("tables: [{name: t, inputs: [claim.amount], outputs: [decide.x], rows: [[1, 2]], hit: anything}]", "tables/0/hit"),
])
def test_wrong_shapes_are_flagged_where_they_are(fragment: str, where: str) -> None:
    doc = {"ruleset": "r", "facts": {"claim": {"amount": "number"}}, **plain(parse_yaml(fragment, "x.yaml"))}
    paths = ["/".join(map(str, e.absolute_path)) for e in VALIDATOR.iter_errors(doc)]
    assert any(p.startswith(where) for p in paths), paths
