"""Rulesets are untrusted input: what the loader refuses by name before it builds anything."""

from __future__ import annotations

import pytest

from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.language.source import ALIAS_NODES, MAX_DEPTH, SourceLimits, parse_yaml, plain

HEAD = "ruleset: hostile\nfacts:\n  t: {a: number}\n"
RULE = "  - name: r{i}\n    when: t.a > {i}\n    then: {{decide: {{route: q{i}}}}}\n"


def errors(text: str, limits: SourceLimits = SourceLimits()) -> list[tuple[str, int, int]]:
    with pytest.raises(CompileErrors) as e:
        load_ruleset(text, "h.yaml", limits)
    return [(x.code, x.where.line, x.where.column) for x in e.value.errors]


def laughs(levels: int, width: int = 9) -> str:
    lines = [HEAD, 'l0: &l0 ["lol"]\n']
    for k in range(1, levels + 1):
        lines.append(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]\n")
    return "".join(lines)


def test_billion_laughs_is_refused_at_the_alias_that_goes_over() -> None:
    text = laughs(9)
    assert len(text) < 600
    [(code, line, column)] = errors(text)
    assert code == "yaml_aliases"
    # each *l3 brings 1,549 nodes (9 ** 3 scalars and the lists around them): the aliases have added more
    # than ALIAS_NODES at the sixth *l3 of line l4, while the whole document holds about 100
    assert text.splitlines()[line - 1].startswith("l4:")
    assert column == text.splitlines()[line - 1].index("*l3") + 1 + 5 * len("*l3, ")
    assert text.splitlines()[line - 1][column - 1] == "*"


def test_aliases_that_a_ruleset_uses_for_shared_test_data_still_load() -> None:
    text = (HEAD + "rules:\n" + RULE.format(i=1) + "tests:\n"
            + "  - name: base\n    given: {t: &base {a: 5}}\n    expect: {outcome: decided}\n"
            + "".join(f"  - name: t{i}\n    given: {{t: *base}}\n    expect: {{outcome: decided}}\n"
                      for i in range(200)))
    rs = load_ruleset(text, "h.yaml")
    assert len(rs.tests) == 201


@pytest.mark.slow
def test_aliases_may_add_as_much_as_the_document_holds() -> None:
    """Past ALIAS_NODES, aliases may add no more values than the document itself has."""
    own = "".join(f"v{i}: {i}\n" for i in range(ALIAS_NODES))
    ok = f"big: &big [{', '.join(str(i) for i in range(ALIAS_NODES // 2))}]\n{own}again: *big\n"
    assert plain(parse_yaml(ok, "h.yaml"))["again"][-1] == ALIAS_NODES // 2 - 1
    too_much = ok + "".join(f"more{i}: *big\n" for i in range(5))
    with pytest.raises(Exception) as e:
        parse_yaml(too_much, "h.yaml")
    assert getattr(e.value, "code", "") == "yaml_aliases"


def test_a_recursive_alias_is_refused() -> None:
    [(code, line, _)] = errors(HEAD + "loop: &loop [1, *loop]\n")
    assert (code, line) == ("yaml_aliases", 4)


@pytest.mark.parametrize("text", [
    "x: " + "[" * 5000 + "]" * 5000 + "\n",
    "x: " + "{a: " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1) + "\n",
    "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n",
])
def test_deep_nesting_is_refused_by_name(text: str) -> None:
    [(code, _, _)] = errors(HEAD + text)
    assert code == "yaml_nesting"  # beyond 1,000 levels libyaml refuses first: the same code


def test_nesting_beyond_the_bound_but_within_libyaml_is_yaml_nesting() -> None:
    depth = MAX_DEPTH + 5
    [(code, line, _)] = errors(HEAD + "x: " + "[" * depth + "]" * depth + "\n")
    assert (code, line) == ("yaml_nesting", 4)


def test_size_limits_are_refused_by_name_and_configurable() -> None:
    rules = HEAD + "rules:\n" + "".join(RULE.format(i=i) for i in range(30))
    assert load_ruleset(rules, "h.yaml").name == "hostile"
    [(code, line, _)] = errors(rules, SourceLimits(max_rules=29))
    assert (code, line) == ("too_many_rules", 4)
    [(code, _, _)] = errors(rules, SourceLimits(max_chars=len(rules) - 1))
    assert code == "too_large"
    table = (HEAD + "tables:\n  - name: t\n    hit: first\n    inputs: [t.a]\n    outputs: [route]\n    rows:\n"
             + "".join(f"      - ['{i}', r{i}]\n" for i in range(5)))
    [(code, line, _)] = errors(table, SourceLimits(max_table_rows=4))
    assert (code, line) == ("too_many_rows", 9)


def test_a_ten_megabyte_line_is_refused_before_it_is_parsed() -> None:
    [(code, line, column)] = errors(HEAD + "description: " + "x" * 10_000_000 + "\n")
    assert (code, line, column) == ("too_large", 1, 1)


@pytest.mark.parametrize("when", [
    " + ".join(["t.a"] * 20_000) + " > 1",
    "(" * 5000 + "t.a > 1" + ")" * 5000,
    "not " * 5000 + "t.a > 1",
    "t.a > " + "-" * 5000 + "1",
])
def test_expressions_too_deep_for_the_checker_are_refused(when: str) -> None:
    [(code, line, _)] = errors(HEAD + "rules:\n  - name: r\n    when: " + when + "\n    then: {decide: {x: y}}\n")
    assert (code, line) == ("too_deep", 6)


def test_a_long_chain_of_conditions_parses_flat_in_linear_time() -> None:
    """60,000 conditions joined by `and` are one BoolOp of 60,000 operands (each `and` once, not a tuple
    copied per operand: that took 35 s)."""
    from engine.language.expr import BoolOp, parse

    text = " and ".join(f"t.a != {i}" for i in range(60_000))
    node = parse(text)
    assert isinstance(node, BoolOp) and node.op == "and" and len(node.operands) == 60_000
    mixed = parse("t.a > 1 and t.a > 2 or t.a > 3 and t.a > 4 or t.a > 5")
    assert isinstance(mixed, BoolOp) and mixed.op == "or" and len(mixed.operands) == 3
    assert [type(o).__name__ for o in mixed.operands] == ["BoolOp", "BoolOp", "Binary"]


@pytest.mark.parametrize("prompt", [
    "".join("{% if t %}" for _ in range(3000)) + "x" + "".join("{% endif %}" for _ in range(3000)),
    "{{ " + "(" * 5000 + "t.s" + ")" * 5000 + " }}",
])
def test_a_prompt_template_nested_too_deeply_is_refused_at_the_prompt(prompt: str) -> None:
    text = (HEAD.replace("t: {a: number}", "t: {a: number, s: str}\n  out: {v: str}")
            + f"models:\n  m:\n    group: fast\n    produces: out\n    prompt: |\n      {prompt}\n"
            + "rules:\n  - name: r\n    when: t.a > 1\n    then: m\n")
    [(code, line, _)] = errors(text)
    assert (code, line) == ("too_deep", 10)  # the template's first line
