"""The fast YAML path (libyaml + ruamel's YAML 1.2 typing) reads every file exactly as ruamel's round trip.

Values decide a ruleset's content hash - its version - so any difference would give a stored version a
new identity. Positions decide every error's file:line:column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import BatonError
from engine.language.source import (
    Map,
    Positions,
    Seq,
    _Fast,
    _from_round_trip,
    content_hash,
    parse_round_trip,
    parse_yaml,
    plain,
)
from tests.scale import ruleset_text, table_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "rulesets").glob("*.yaml"))

TRICKY = """\
a: 2026-01-01
b: yes
c: 010
d: 0o10
e: 1_000
f: .5
g: ~
h: 1e3
i: 0x1F
j: +1
k: .inf
l: True
m: 1:30
n: -0
o: "quoted: yes"
p: 'single'
q: |
  block
  text
r: >
  folded
s: [1, "2", three, {x: null}]
t: R&D * 2 ! not a tag
u: [0, 007, 1_000, -12, +12, 12345678901234567890123, -0, 0o7, 0x0]
"""


def positions(doc: Any, pos: Positions, path: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(doc, Map):
        for key, value in doc.items():
            out.append((f"{path}.{key}:key", str(pos.key(doc, key))))
            out.append((f"{path}.{key}:value", str(pos.value(doc, key))))
            if isinstance(value, str):
                out.append((f"{path}.{key}:text", str(pos.text_start(doc, key))))
            out.extend(positions(value, pos, f"{path}.{key}"))
    elif isinstance(doc, Seq):
        for i, item in enumerate(doc):
            out.append((f"{path}[{i}]", str(pos.value(doc, i))))
            if isinstance(item, str):
                out.append((f"{path}[{i}]:text", str(pos.text_start(doc, i))))
            out.extend(positions(item, pos, f"{path}[{i}]"))
    return out


def same(text: str) -> None:
    fast = _Fast(text).document()  # raises _Unusual if it would fall back to the round trip
    assert plain(fast) == plain(parse_yaml(text, "f.yaml"))
    slow = _from_round_trip(parse_round_trip(text, "f.yaml"))
    assert plain(fast) == plain(slow)
    assert [type(v) for v in _leaves(fast)] == [type(v) for v in _leaves(slow)]
    pos = Positions("f.yaml", text)
    assert positions(fast, pos) == positions(slow, pos)


def _leaves(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in _leaves(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _leaves(v)]
    return [doc]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_reads_the_same_both_ways(path: Path) -> None:
    same(path.read_text())
    text = path.read_text()
    assert content_hash(parse_yaml(text, "x")) == content_hash(parse_round_trip(text, "x"))


def test_yaml_1_2_scalars_quotes_blocks_and_generated_rulesets_read_the_same() -> None:
    same(TRICKY)
    same(ruleset_text(60) + table_text(30))


def test_anchors_and_merge_keys_take_the_round_trip_parser() -> None:
    text = "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n"
    assert plain(parse_yaml(text, "f.yaml")) == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}


def test_a_duplicate_key_is_a_yaml_error_at_the_second_key() -> None:
    with pytest.raises(BatonError) as e:
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert e.value.code == "yaml_syntax" and "duplicate key" in e.value.message and str(e.value.where) == "f.yaml:3:1"


scalars = st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(
    ["yes", "no", "on", "off", "null", "~", "true", "False", "0o17", "0x1f", "1e5", ".5", "-.inf", "2026-02-29",
     "1_0", "07", "+3", "a b", "x: y", "- z", "#c", "'q'", '"d"', "[1]", "{}"]), st.text(
    alphabet="abc019 .:-_'\"#", max_size=8))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), scalars), max_size=6, unique_by=lambda x: x[0]))
def test_random_scalars_read_the_same_both_ways(items: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}: {v}\n" for k, v in items)
    try:
        slow = _from_round_trip(parse_round_trip(text, "f.yaml"))
    except BatonError:
        with pytest.raises(BatonError):
            parse_yaml(text, "f.yaml")
        return
    fast = parse_yaml(text, "f.yaml")
    assert plain(fast) == plain(slow)
    assert [type(v) for v in _leaves(fast)] == [type(v) for v in _leaves(slow)]


def test_a_second_document_is_a_yaml_error_where_it_starts() -> None:
    with pytest.raises(BatonError) as e:
        parse_yaml("a: 1\n---\nb: 2\n", "f.yaml")
    assert e.value.code == "yaml_syntax" and "another document" in e.value.message
    assert str(e.value.where) == "f.yaml:2:1"
    assert plain(parse_yaml("---\na: 1\n...\n", "f.yaml")) == {"a": 1} and parse_yaml("# nothing\n", "f.yaml") is None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_version_is_the_hash_of_the_source_as_written(path: Path) -> None:
    """Loading reads the YAML tree away as it goes (its memory is reused): the version is what was written."""
    from engine.language.loader import load_ruleset

    text = path.read_text()
    assert load_ruleset(text, path.name).version == content_hash(parse_yaml(text, "x"))
