"""More hostile rulesets (a red-team pass over issue 32's doors): what each is refused as, or bounded by.

Prompts and effect templates are ruleset text rendered at decide time over the facts - on the worker, in
what-if and impact runs of a candidate, in the console's test runs. A template that would make a gigabyte
string or loop 10^10 times is stopped by :class:`BoundedSandbox` (a ``PromptLimit``), and the model call
goes out carrying the error, as for any template that cannot render.
"""

from __future__ import annotations

import pytest

from engine.errors import CompileErrors
from engine.language.loader import JINJA, load_ruleset
from engine.language.prompts import MAX_STEPS, MAX_TEXT, Prompt, PromptLimit
from engine.language.source import parse_yaml

FACTS = {"t": {"s": "x" * 4000, "a": 5}, "claim": {"amount": 80_000_000, "description": "whiplash"}}

BOMBS = {
    "a field repeated a billion times": "{{ t.s * 1000000000 }}",
    "a list repeated": "{{ ([1] * 1000000) * 1000000 }}",
    "10^10 loop iterations with no output": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                                            "{% endfor %}",
    "loops over a field, three deep": "{% for a in t.s %}{% for b in t.s %}{% for c in t.s %}{% endfor %}{% endfor %}"
                                      "{% endfor %}",
    "a loop printing a long field": "{% for i in range(100000) %}{{ t.s }}{% endfor %}",
    "a huge power": "{{ 7 ** (7 ** 9) }}",
    "a filter's width": "{{ t.s|center(1000000000) }}",
    "a method's width": "{{ t.s.ljust(1000000000) }}",
    "a %-format width": "{{ '%1000000000d' % 1 }}",
    "a str.format width": "{{ '{:>1000000000}'.format(1) }}",
    "a str.format width as an argument": "{{ '{:>{w}}'.format(1, w=1000000000) }}",
    "a format filter's * width": "{{ '%*d'|format(1000000000, 1) }}",
    "a join filter with a long separator": "{{ range(100000)|join(t.s) }}",
    "str.join of a long string": "{{ t.s.join(t.s) }}",
    "replace by a long string": "{{ t.s.replace('x', t.s) }}",
    "doubling by ~": "{% set b = t.s * 250 %}{% set b = b ~ b %}{% set b = b ~ b %}{{ b|length }}",
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_template_bomb_is_stopped_by_its_bound(name: str) -> None:
    with pytest.raises(PromptLimit):
        Prompt(JINJA, BOMBS[name]).render(FACTS)


def test_what_prompts_do_still_renders() -> None:
    source = ("Amount {{ claim.amount|round|int }} {{ '%d'|format(claim.amount) }} {{ '{:,}'.format(claim.amount) }} "
              "{{ claim.amount * 2 }} {{ 2 ** 10 }} {% for c in claim.description %}{{ c|upper }}{% endfor %} "
              "{{ [1, 2, 3]|join(', ') }} [{{ claim.description|center(12) }}] {{ 'a' ~ claim.description ~ 1 }}"
              "{% for i in range(3) %}{{ i }}{% endfor %}")
    assert Prompt(JINJA, source).render(FACTS) == ("Amount 80000000 80000000 80,000,000 160000000 1024 WHIPLASH "
                                                   "1, 2, 3 [  whiplash  ] awhiplash1012")


def test_the_bounds_are_what_they_say() -> None:
    assert Prompt(JINJA, "{{ t.s * 250 }}").render(FACTS) == "x" * MAX_TEXT
    with pytest.raises(PromptLimit):
        Prompt(JINJA, "{{ t.s * 251 }}").render(FACTS)
    loops = "{% for i in range(1000) %}{% for j in range(999) %}{% endfor %}{% endfor %}"  # 1,000 + 999,000
    assert Prompt(JINJA, loops).render(FACTS) == ""
    with pytest.raises(PromptLimit, match=f"{MAX_STEPS:,}"):
        Prompt(JINJA, loops.replace("999", "1000")).render(FACTS)


RULESET = """ruleset: hostile
facts:
  t: {a: number, s: str}
  out: {c: str}
input: [t]
models:
  m:
    group: fast
    produces: out
    prompt: "PROMPT"
rules:
  - name: ask
    when: exists t
    then: m
"""


def test_a_ruleset_whose_prompt_is_a_bomb_compiles_and_its_call_carries_the_error() -> None:
    """Not refused by `check` (what a template makes depends on the facts), but bounded when it renders."""
    rs = load_ruleset(RULESET.replace("PROMPT", "{{ t.s * 1000000000 }}"), "bomb.yaml")
    model = rs.models["m"]
    assert model.template is not None
    with pytest.raises(PromptLimit):
        model.template.render({"t": {"a": 1, "s": "x"}}, facts={})


# What was already refused well (kept here so a regression shows up beside the new cases)
ALREADY = {
    "merge keys multiplying": ("x0: &x0 {a0: 1, a1: 2, a2: 3, a3: 4, a4: 5, a5: 6, a6: 7, a7: 8, a8: 9}\n"
                               + "".join(f"x{k}: &x{k}\n" + "".join(f"  k{j}: {{<<: *x{k - 1}}}\n" for j in range(9))
                                         for k in range(1, 9)), "yaml_aliases"),
    "50,000 aliases in one merge list": ("a: &a {x: 1}\nb: {<<: [" + ", ".join(["*a"] * 50_000) + "]}\n",
                                         "yaml_aliases"),
    "500-deep block mapping": ("x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(500)) + "  " * 501 + "1\n",
                               "yaml_nesting"),
}


@pytest.mark.parametrize("name", list(ALREADY))
def test_yaml_bombs_already_refused_by_name(name: str) -> None:
    text, code = ALREADY[name]
    with pytest.raises(Exception) as e:
        parse_yaml("ruleset: x\n" + text, "bomb.yaml")
    assert getattr(e.value, "code", None) == code
    assert e.value.where.line > 1  # type: ignore[attr-defined]


def test_a_python_object_tag_is_never_constructed() -> None:
    with pytest.raises(CompileErrors) as e:
        load_ruleset('ruleset: x\nx: !!python/object/apply:os.system ["false"]\n', "tag.yaml")
    assert "unknown_key" in [x.code for x in e.value.errors]


@pytest.mark.parametrize(("text", "line", "column", "code"), [
    ("ruleset: x\nb: x\x00y\n", 2, 5, "U+0000"),
    ("ruleset: x\nb: ééé€x\x00y\n", 2, 9, "U+0000"),  # after characters of two and three bytes
    ("\ufeffruleset: x\nrules:\n  - name: \x1b[2J\n", 3, 11, "U+001B"),
])
def test_a_character_yaml_never_allows_is_reported_where_it_stands(text: str, line: int, column: int,
                                                                    code: str) -> None:
    with pytest.raises(Exception) as e:
        parse_yaml(text, "nul.yaml")
    assert getattr(e.value, "code", None) == "yaml_syntax"
    assert (e.value.where.line, e.value.where.column) == (line, column)  # type: ignore[attr-defined]
    assert code in str(e.value)


def test_any_template_rendered_whole_is_bounded_too() -> None:
    """An effect's `with:` template renders with Template.render, not through Prompt: the same bound."""
    template = JINJA.from_string("{% for i in range(1000) %}{{ t.s * 250 }}{% endfor %}")
    with pytest.raises(PromptLimit, match="output"):
        template.render(FACTS)
    assert JINJA.from_string("{{ t.a }}-{% for i in range(3) %}{{ i }}{% endfor %}").render(FACTS) == "5-012"
