"""Two mistakes an author makes in an editor, reported where they were made: a fact type renamed under
`facts:` but not where it is used, and a `{` or `[` left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import CompileErrors
from engine.language.loader import load_ruleset

ROOT = Path(__file__).resolve().parents[2]
SOURCE = (ROOT / "rulesets/claims-triage.yaml").read_text()


def errors(text: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(CompileErrors) as e:
        load_ruleset(text, "r.yaml")
    return [(x.code, x.where.line, x.where.column, x.message) for x in e.value.errors]


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


def test_a_renamed_fact_type_is_one_error_at_the_renamed_line() -> None:
    renamed = SOURCE.replace("\n  claim:\n", "\n  claims:\n", 1)
    [(code, line, column, message)] = errors(renamed)
    assert (code, line, column) == ("unknown_fact_type", line_of(renamed, "  claims:\n"), 3)
    assert "'claims' is declared here and used nowhere, while 'claim' is used" in message


def test_an_unknown_type_with_no_renamed_declaration_is_reported_at_each_use() -> None:
    text = SOURCE.replace("exists claim", "exists claimz", 2)
    found = errors(text)
    assert [c for c, *_ in found] == ["unknown_fact_type", "unknown_fact_type"]


@pytest.mark.parametrize(("before", "after", "bracket"), [
    ("assert: {risk: {level: high}}", "assert: {risk: {level: high}", "{"),
    ("fired: [fetch-policy, classify-claim, high-risk, default-route, senior-for-high-risk-injury]",
     "fired: [fetch-policy, classify-claim, high-risk, default-route, senior-for-high-risk-injury", "["),
])
def test_a_bracket_left_open_is_reported_where_it_opens(before: str, after: str, bracket: str) -> None:
    broken = SOURCE.replace(before, after, 1)
    [(code, line, column, message)] = errors(broken)
    opened = broken.index(after) + after.index(bracket)
    assert (code, line) == ("yaml_syntax", broken[:opened].count("\n") + 1)
    assert column == opened - broken.rindex("\n", 0, opened)
    assert f"this '{bracket}' is never closed" in message
