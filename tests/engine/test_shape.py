"""engine/language/shape.py is the one description of a ruleset file's shape: for every key it describes as a
scalar (a number in a range, true/false, a duration, one of a list), a wrong value is refused by the loader
with the described message at the value's line and column, and by the JSON Schema ``baton schema`` prints;
an unknown key in each section is refused by both, the loader at the key."""

from __future__ import annotations

import jsonschema
import pytest

from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.language.schema import ruleset_schema
from engine.language.shape import MODEL, RULE, SETTINGS, TABLE, TOOL, Section
from engine.language.source import parse_yaml, plain

# each section written out in block style; {extra} is a line of the section's keys at its indentation
TEMPLATE = """\
ruleset: shapes
facts:
  claim: {{amount: number, route: str}}
models:
  assess:
    group: fast
    produces: claim
    prompt: "look at {{{{ claim.amount }}}}"
{model}
tools:
  look:
    connector: lookup
    produces: claim
{tool}
rules:
  - name: r1
    when: exists claim
    then: {{decide: {{route: a}}}}
{rule}
tables:
  - name: t1
    inputs: [claim.amount]
    outputs: [decide.route]
    rows:
      - ["-", a]
{table}
settings:
  budget: {{max_calls: 3}}
{settings}
"""
PLACES = {"model": ("    ", MODEL), "tool": ("    ", TOOL), "rule": ("    ", RULE), "table": ("    ", TABLE),
          "settings": ("  ", SETTINGS)}
SCALARS = ("int", "number", "bool", "duration", "enum")


def _doc(place: str, line: str) -> str:
    lines = {p: "" for p in PLACES}
    lines[place] = PLACES[place][0] + line
    return TEMPLATE.format(**lines)


def _cases() -> list[object]:
    # a table's aggregate: is judged with its hit policy and outputs together (tables.configure), by meaning
    return [pytest.param(place, key, section, id=f"{place}.{key}") for place, (_, section) in PLACES.items()
            for key, spec in section.keys.items() if spec.kind in SCALARS and (place, key) != ("table", "aggregate")]


VALIDATOR = jsonschema.Draft7Validator(ruleset_schema())


def test_the_template_loads_and_fits_the_schema() -> None:
    text = _doc("rule", "description: fine")
    assert load_ruleset(text, "x.yaml").name == "shapes"
    assert list(VALIDATOR.iter_errors(plain(parse_yaml(text, "x.yaml")))) == []


@pytest.mark.parametrize(("place", "key", "section"), _cases())
def test_a_wrong_scalar_is_refused_by_loader_and_schema_alike(place: str, key: str, section: Section) -> None:
    text = _doc(place, f"{key}: nope")
    with pytest.raises(CompileErrors) as caught:
        load_ruleset(text, "x.yaml")
    line = text.split("\n").index(PLACES[place][0] + f"{key}: nope") + 1
    column = len(PLACES[place][0]) + len(key) + 3
    found = [(e.code, e.message, e.where.line, e.where.column) for e in caught.value.errors]
    assert ("bad_value", section.keys[key].complaint(key), line, column) in found, found
    assert list(VALIDATOR.iter_errors(plain(parse_yaml(text, "x.yaml")))) != []


@pytest.mark.parametrize("place", list(PLACES))
def test_an_unknown_key_is_refused_at_the_key(place: str) -> None:
    text = _doc(place, "bogus_key: 1")
    schema_errors = list(VALIDATOR.iter_errors(plain(parse_yaml(text, "x.yaml"))))
    if PLACES[place][1].open:  # a tool's connector settings stand beside its own keys
        load_ruleset(text, "x.yaml")
        assert schema_errors == []
        return
    with pytest.raises(CompileErrors) as caught:
        load_ruleset(text, "x.yaml")
    line = text.split("\n").index(PLACES[place][0] + "bogus_key: 1") + 1
    found = [(e.code, e.where.line, e.where.column) for e in caught.value.errors]
    assert ("unknown_key", line, len(PLACES[place][0]) + 1) in found, found
    assert schema_errors != []


def test_a_quoted_value_is_the_same_value() -> None:
    """The YAML reader's quoted strings are a str subclass: "decided" and 'first' are as good as the bare words."""
    text = _doc("table", 'hit: "first"') + ('tests:\n  - name: t\n    given: {claim: {amount: 1, route: x}}\n'
                                            '    expect: {outcome: "decided", decision: {route: a}}\n')
    rs = load_ruleset(text, "x.yaml")
    assert rs.tables[0].hit == "first"
    assert rs.tests[0].expect["outcome"] == "decided"
