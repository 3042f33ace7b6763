"""engine/language/shape.py is the one description of a ruleset file's shape, and the loader and the JSON Schema
``baton schema`` prints both follow it, each case made from the description itself:

- a scalar key (a number in a range, true/false, a duration, one of a list) given a wrong value is refused by
  the loader with the described message at the value's line and column, and by the schema;
- a list or mapping given another kind of value is refused by both, the loader with the described words
  (``bad_shape`` at the value, or - for a required key whose missing words say what it holds - as missing);
- a key the description requires, left out, is refused by both, the loader with the described code and words
  at the place of what holds it; a key it does not require, left out, is refused by neither: the template
  below writes every required key and few others, and loads;
- an unknown key in each section is refused by both, the loader at the key.
"""

from __future__ import annotations

import jsonschema
import pytest

from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.language.schema import ruleset_schema
from engine.language.shape import (
    EFFECT,
    ESCALATE,
    EXPECT,
    FILE,
    MODEL,
    RULE,
    RULESET,
    SETTINGS,
    TABLE,
    TEST,
    TOOL,
    Key,
    Section,
)
from engine.language.source import parse_yaml, plain

# The file, its sections' lines left out: "@place" stands for that section's lines (BLOCKS), at its indentation.
SKELETON = """\
ruleset: shapes
facts:
  claim: {amount: number, route: str}
models:
  assess:
@model
tools:
  look:
@tool
rules:
  -
@rule
  -
    name: r2
    when: exists claim
    then:
      escalate:
@escalate
  -
    name: r3
    when: exists claim
    then:
      effect:
@effect
tables:
  -
@table
tests:
  -
@test
    expect:
@expect
settings:
@settings
"""
BLOCKS = {
    "model": ["group: fast", "produces: claim", 'prompt: "look at {{ claim.amount }}"'],
    "tool": ["connector: lookup", "produces: claim"],
    "rule": ["name: r1", "when: exists claim", "then: {decide: {route: a}}"],
    "escalate": ["queue: review", "reason: looked at"],
    "effect": ["name: notify", "with: {to: claims}"],
    "table": ["name: t1", "inputs: [claim.amount]", "outputs: [decide.route]", 'rows: [["-", a]]'],
    "test": ["name: t", "given: {claim: {amount: 1, route: x}}"],
    "expect": ["outcome: decided", "reason: any"],
    "settings": ["budget: {max_calls: 3}", "step_limit: 1000"],
}
# place -> its indentation, its section, what the loader's messages call it, and where its errors of a
# required key left out stand: at the key that names it ("anchor", the line above its lines) or at its first line
PLACES: dict[str, tuple[int, Section, str, str]] = {
    "model": (4, MODEL, "model 'assess'", "anchor"), "tool": (4, TOOL, "tool 'look'", "anchor"),
    "rule": (4, RULE, "rule 'r1'", "first"), "escalate": (8, ESCALATE, "escalate", "first"),
    "effect": (8, EFFECT, "effect", "first"), "table": (4, TABLE, "table 't1'", "first"),
    "test": (4, TEST, "test 't'", "first"), "expect": (6, EXPECT, "expect", "first"),
    "settings": (2, SETTINGS, "settings", "first"),
}
TOP = "file"  # the file's own keys: each is the line "key: ..." at the left margin and the lines indented below it
SCALARS = ("int", "number", "bool", "duration", "enum")
CONTAINERS = ("list", "map", "section", "any_of")
# judged elsewhere than by the shape: a table's aggregate with its hit policy and outputs (tables.configure);
# values: and define: by engine/language/names.py, in words of its own; a test's expect: is a place of its own here
SKIP = {("table", "aggregate"), (TOP, "values"), (TOP, "define"), ("test", "expect")}
VALIDATOR = jsonschema.Draft7Validator(ruleset_schema())


def _key(line: str) -> str:
    return line.split(":", 1)[0]


def _render(blocks: dict[str, list[str]]) -> tuple[str, dict[str, int]]:
    """The file, and the line (1-based) each place's lines start at."""
    out: list[str] = []
    starts: dict[str, int] = {}
    for row in SKELETON.splitlines():
        if row.startswith("@"):
            place = row[1:]
            starts[place] = len(out) + 1
            out += [" " * PLACES[place][0] + b for b in blocks[place]]
        else:
            out.append(row)
    return "\n".join(out) + "\n", starts


def _file_lines(text: str, key: str, line: str | None) -> str:
    """``text`` with the file's key ``key`` (and the lines indented below it) replaced by ``line``, or left out."""
    rows = text.rstrip("\n").split("\n")
    found = [i for i, r in enumerate(rows) if r.startswith(f"{key}:")]
    at = found[0] if found else len(rows)
    end = at + 1 if found else at
    while end < len(rows) and rows[end].startswith(" "):
        end += 1
    return "\n".join(rows[:at] + ([line] if line is not None else []) + rows[end:]) + "\n"


def _variant(place: str, key: str, line: str | None) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """The file with ``key`` of ``place`` written as ``line`` (None: left out); where that line stands, and
    where the place's errors of a required key left out stand."""
    if place == TOP:
        text = _file_lines(_render(BLOCKS)[0], key, line)
        rows = text.split("\n")
        at = next((i + 1 for i, r in enumerate(rows) if line is not None and r == line), 0)
        given = next((i + 1 for i, r in enumerate(rows) if r.startswith(f"{key}:")), 0)
        return text, (at, 1), (given, 1) if given else (1, 1)
    lines = [b for b in BLOCKS[place] if _key(b) != key]
    if line is not None:
        written = [_key(b) for b in BLOCKS[place]]
        lines.insert(written.index(key) if key in written else len(lines), line)
    text, starts = _render({**BLOCKS, place: lines})
    indent, _, _, owner_at = PLACES[place]
    at = starts[place] + lines.index(line) if line is not None else 0
    owner = (starts[place] - 1, indent - 1) if owner_at == "anchor" else (starts[place], indent + 1)
    return text, (at, indent + 1), owner


def _sections() -> dict[str, Section]:
    return {TOP: RULESET, **{place: spec[1] for place, spec in PLACES.items()}}


def _cases(kinds: tuple[str, ...]) -> list[object]:
    return [pytest.param(place, key, spec, id=f"{place}.{key}") for place, section in _sections().items()
            for key, spec in section.keys.items() if spec.kind in kinds and (place, key) not in SKIP]


def _written(place: str) -> list[str]:
    if place == TOP:
        return [_key(r) for r in SKELETON.splitlines() if r and not r.startswith((" ", "@"))]
    return [_key(b) for b in BLOCKS[place]]


def _errors(text: str) -> list[tuple[str, str, int, int]]:
    with pytest.raises(CompileErrors) as caught:
        load_ruleset(text, "x.yaml")
    return [(e.code, e.message, e.where.line, e.where.column) for e in caught.value.errors]


def _schema_errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(plain(parse_yaml(text, "x.yaml")))]


def test_the_template_loads_and_fits_the_schema() -> None:
    text = _render(BLOCKS)[0]
    assert load_ruleset(text, "x.yaml").name == "shapes"
    assert _schema_errors(text) == []


@pytest.mark.parametrize(("place", "key", "spec"), _cases(SCALARS))
def test_a_wrong_scalar_is_refused_by_loader_and_schema_alike(place: str, key: str, spec: Key) -> None:
    text, (line, column), _ = _variant(place, key, f"{key}: nope")
    assert ("bad_value", spec.complaint(key), line, column + len(key) + 2) in _errors(text)
    assert _schema_errors(text) != []


@pytest.mark.parametrize(("place", "key", "spec"), _cases(CONTAINERS))
def test_a_list_or_mapping_of_the_wrong_kind_is_refused_by_loader_and_schema_alike(place: str, key: str,
                                                                                    spec: Key) -> None:
    text, (line, column), owner = _variant(place, key, f"{key}: 5")
    if spec.missing and spec.left_out(5):  # the missing words say what it holds: "needs 'rows:' (a list ...)"
        expected = (spec.missing_code, spec.missing_message(PLACES[place][2] if place != TOP else ""), *owner)
    else:
        expected = ("bad_shape", spec.complaint(key), line, column + len(key) + 2)
    assert expected in _errors(text)
    assert _schema_errors(text) != []


@pytest.mark.parametrize("place", list(_sections()))
def test_the_template_writes_every_required_key(place: str) -> None:
    """So the next test leaves out each key the description requires."""
    assert set(_sections()[place].required()) <= set(_written(place))


@pytest.mark.parametrize(("place", "key"), [pytest.param(place, key, id=f"{place}.{key}")
                                            for place in _sections() for key in _written(place)])
def test_a_key_left_out_is_refused_exactly_when_the_description_requires_it(place: str, key: str) -> None:
    spec = _sections()[place].keys[key]
    text, _, owner = _variant(place, key, None)
    if not spec.required:
        load_ruleset(text, "x.yaml")
        assert _schema_errors(text) == []
        return
    errors = _errors(text)
    name = PLACES[place][2] if place != TOP else ""
    assert spec.missing  # every required key says what it is for when left out
    assert (spec.missing_code, spec.missing_message(name), *owner) in errors, errors
    assert _schema_errors(text) != []


@pytest.mark.parametrize("place", list(_sections()))
def test_an_unknown_key_is_refused_at_the_key(place: str) -> None:
    section = _sections()[place]
    text, (line, column), _ = _variant(place, "bogus_key", "bogus_key: 1")
    if section.open or section.extra is not None:  # a tool's connector settings, an escalation's payload
        load_ruleset(text, "x.yaml")
        assert _schema_errors(text) == []
        return
    assert ("unknown_key", line, column) in [(c, ln, col) for c, _, ln, col in _errors(text)]
    assert _schema_errors(text) != []


@pytest.mark.parametrize("text", ["- ruleset: shapes\n", "shapes\n"])
def test_a_file_that_is_not_a_mapping_is_refused_by_loader_and_schema_alike(text: str) -> None:
    assert _errors(text) == [("bad_shape", FILE.complaint(""), 1, 1)]
    assert _schema_errors(text) != []


def test_a_quoted_value_is_the_same_value() -> None:
    """The YAML reader's quoted strings are a str subclass: "decided" and 'first' are as good as the bare words."""
    text = _variant("table", "hit", 'hit: "first"')[0].replace("outcome: decided", 'outcome: "decided"')
    rs = load_ruleset(text, "x.yaml")
    assert rs.tables[0].hit == "first"
    assert rs.tests[0].expect["outcome"] == "decided"


@pytest.mark.parametrize(("place", "key", "spec"), _cases(("list", "map", "section", "any_of", "str", "int", "number",
                                                          "bool", "enum", "duration", "schema")))
def test_a_key_written_with_nothing_after_it_is_taken_alike_by_loader_and_schema(place: str, key: str,
                                                                                spec: Key) -> None:
    """`settings:` with nothing under it: the loader and the JSON Schema agree whether that is allowed."""
    text, _, _ = _variant(place, key, f"{key}:")
    try:
        load_ruleset(text, "x.yaml")
        loads = True
    except CompileErrors:
        loads = False
    assert loads == (_schema_errors(text) == []), (loads, _schema_errors(text))
