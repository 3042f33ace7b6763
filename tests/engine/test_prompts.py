"""Prompts render exactly as the sandboxed Jinja template would, whether or not they take the fast path
(plain `{{ type.field }}` substitutions rendered without Jinja's runtime)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.language.loader import JINJA
from engine.language.prompts import Prompt, simple_parts

NAMES = ["claim", "policy", "chunk", "facts", "range"]
FIELDS = ["description", "amount", "ref", "items", "keys", "text", "__class__"]
values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.sampled_from(FIELDS), st.integers()))
facts = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
contexts = st.dictionaries(st.sampled_from(NAMES), st.one_of(facts, values), max_size=4)
pieces = st.one_of(st.text(alphabet="ab \n{}%#:-", max_size=12).filter(lambda t: "{" not in t and "%" not in t),
                   st.builds(lambda n, f: "{{ " + n + "." + f + " }}", st.sampled_from(NAMES), st.sampled_from(FIELDS)),
                   st.builds(lambda n, f: "{{ " + n + "." + f + " | upper }}", st.sampled_from(NAMES),
                             st.sampled_from(FIELDS)),
                   st.sampled_from(["{{ claim['ref'] }}", "{% if claim %}x{% endif %}", "{{ claim }}", "\n"]))


def jinja(source: str, context: dict[str, Any], names: dict[str, Any]) -> str:
    try:
        return JINJA.from_string(source).render(context, **names)
    except Exception as e:
        return f"error: {type(e).__name__}: {e}"


def ours(source: str, context: dict[str, Any], names: dict[str, Any]) -> str:
    try:
        return Prompt(JINJA, source).render(context, **names)
    except Exception as e:
        return f"error: {type(e).__name__}: {e}"


@settings(max_examples=1500, deadline=None)
@given(st.lists(pieces, max_size=6), contexts, st.dictionaries(st.just("facts"), facts))
@pytest.mark.slow
def test_every_prompt_renders_as_jinja_renders_it(parts: list[str], context: dict[str, Any],
                                                  names: dict[str, Any]) -> None:
    source = "".join(parts)
    assert ours(source, context, names) == jinja(source, context, names)


def test_the_fast_path_takes_only_plain_substitutions() -> None:
    assert simple_parts(JINJA, "Describe: {{ claim.description }}, {{ claim.amount }}\n") == (
        "Describe: ", ("claim", "description"), ", ", ("claim", "amount"))
    for source in ("{{ claim.description | upper }}", "{{ claim['description'] }}", "{{ claim.items }}",
                   "{% for x in facts.claim %}{{ x }}{% endfor %}", "{{ claim.a.b }}", "{{ claim"):
        assert simple_parts(JINJA, source) is None, source


@pytest.mark.parametrize(("context", "expected"), [
    ({"claim": {"description": "whiplash", "amount": 80000.5}}, "whiplash / 80000.5"),
    ({"claim": {"description": True, "amount": 3}}, "True / 3"),
    ({"claim": {"description": "x"}}, "error: UndefinedError: 'dict object' has no attribute 'amount'"),
    ({"claim": {"description": None, "amount": 1}}, "None / 1"),
    ({"claim": {"description": ["a"], "amount": {"k": 1}}}, "['a'] / {'k': 1}"),
])
def test_values_render_as_jinja_renders_them(context: dict[str, Any], expected: str) -> None:
    source = "{{ claim.description }} / {{ claim.amount }}"
    assert ours(source, context, {}) == jinja(source, context, {}) == expected
