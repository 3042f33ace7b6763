"""Every compile-time error: a stable code, file:line:column pointing at the fault, and a hint."""

from __future__ import annotations

import pytest

from engine.errors import CompileErrors
from tests.helpers import ruleset

HEAD = """\
ruleset: t
facts:
  claim:
    amount: number
    ref: str
    tier: {enum: [standard, gold]}
    tags: {type: list, items: str}
    flag: bool
  policy:
    active: bool
models:
  classify:
    group: fast
    produces: policy
    prompt: "Check {{ claim.ref }}"
rules:
"""


def errors_of(rules: str, head: str = HEAD) -> list[tuple[str, int, int]]:
    with pytest.raises(CompileErrors) as info:
        ruleset(head + rules)
    return [(e.code, e.where.line, e.where.column) for e in info.value.errors]


@pytest.mark.parametrize(("when", "code", "column"), [
    ("clam.amount > 5", "unknown_fact_type", 0),
    ("claim.amout > 5", "unknown_field", 6),
    ('claim.amount > "x"', "type_mismatch", 13),
    ('claim.ref matches "(unclosed"', "bad_regex", 19),
    ('claim.tier == "platinum"', "unknown_value", 14),
    ("not exists claim", "negation_only", 0),
    ("claim.amount > > 5", "syntax_error", 15),
    ("claim.amount + claim.ref > 5", "type_mismatch", 15),
    ("claim.tags contains 5", "type_mismatch", 20),
    ("claim.flag and 5", "type_mismatch", 15),
    ("claim.amount in [1, \"a\"]", "type_mismatch", 16),
    ("exists nothing", "unknown_fact_type", 0),
    ("claim.amount > 1 > 2", "syntax_error", 17),
])
def test_condition_errors_point_at_the_fault(when: str, code: str, column: int) -> None:
    rules = f"  - name: r\n    when: '{when}'\n    then: {{decide: {{route: x}}}}\n"
    line = HEAD.count("\n") + 2
    # the quoted scalar's text starts one column after 'when: ' and its opening quote
    assert errors_of(rules)[0] == (code, line, len("    when: '") + 1 + column)


def test_block_scalar_positions_count_lines() -> None:
    rules = "  - name: r\n    when: |\n      exists claim and\n      claim.nope > 1\n    then: {decide: {route: x}}\n"
    line = HEAD.count("\n") + 4
    assert errors_of(rules) == [("unknown_field", line, 13)]


def test_unknown_action_duplicate_rule_and_keys() -> None:
    rules = """\
  - name: a
    when: exists claim
    then: clasify
  - name: a
    when: exists claim
    then: {decide: {route: x}}
  - name: b
    when: exists claim
    then: {decid: {route: x}}
    priorty: 3
"""
    codes = [c for c, _, _ in errors_of(rules)]
    assert codes == ["unknown_action", "duplicate_rule", "unknown_key", "unknown_action"]


def test_yaml_syntax_error_has_position() -> None:
    with pytest.raises(CompileErrors) as info:
        ruleset("ruleset: t\nfacts:\n  claim:\n    amount: number\n   bad: [\n")
    e = info.value.errors[0]
    assert e.code == "yaml_syntax" and e.where.line >= 4


def test_too_many_patterns_and_fields() -> None:
    names = [f"t{i}" for i in range(17)]
    facts = "".join(f"  {n}:\n    v: number\n" for n in names)
    when = " and ".join(f"exists {n}" for n in names)
    text = f"ruleset: t\nfacts:\n{facts}rules:\n  - name: r\n    when: {when}\n    then: {{decide: {{route: x}}}}\n"
    with pytest.raises(CompileErrors) as info:
        ruleset(text)
    assert info.value.errors[0].code == "too_many_patterns"
    fields = "".join(f"    f{i}: number\n" for i in range(201))
    with pytest.raises(CompileErrors) as info:
        ruleset(f"ruleset: t\nfacts:\n  big:\n{fields}input: [big]\nrules:\n  - name: r\n    when: big.f7 > 1\n"
                "    then: {decide: {route: x}}\n")
    assert [e.code for e in info.value.errors] == ["too_many_fields"]  # not "unknown" wherever it is named


def test_prompt_template_and_test_expectations_are_checked() -> None:
    head = HEAD.replace('prompt: "Check {{ claim.ref }}"', 'prompt: "Check {{ clam.ref }}"')
    rules = """\
  - name: r
    when: exists claim
    then: classify
tests:
  - name: t
    given: {claim: {amount: 1, ref: a, tier: gold, tags: [], flag: true}}
    answers: {clasify: {active: true}}
    expect: {outcome: decided, fired: [rr]}
"""
    codes = [c for c, _, _ in errors_of(rules, head)]
    assert codes == ["unknown_fact_type", "unknown_rule", "unknown_action"]


def test_a_rule_with_one_error_is_still_checked_to_its_end() -> None:
    """Every error in one run: a bad condition does not hide a bad action, nor a duplicate name its body."""
    rules = """\
  - name: r
    when: claim.amout > 5
    then: clasify
  - name: r
    when: claim.ref > 5
    then: [classify, {decide: x}]
"""
    base = HEAD.count("\n")
    assert errors_of(rules) == [("unknown_field", base + 2, 17), ("unknown_action", base + 3, 11),
                                ("duplicate_rule", base + 4, 11), ("type_mismatch", base + 5, 21),
                                ("bad_shape", base + 6, 31)]


def test_errors_render_as_file_line_column_code_message_hint() -> None:
    with pytest.raises(CompileErrors) as info:
        ruleset(HEAD + "  - name: r\n    when: claim.amout > 5\n    then: {decide: {route: x}}\n", "rs/claims.yaml")
    assert str(info.value) == (
        f"rs/claims.yaml:{HEAD.count(chr(10)) + 2}:17: unknown_field: claim has no field 'amout' "
        "(hint: did you mean 'amount'?)")


MORE = {
    "bad_name": "ruleset: t\nfacts:\n  claim:\n    9bad: number\nrules:\n  - {name: r, when: exists claim, then: {decide: {route: x}}}\n",
    "bad_type": "ruleset: t\nfacts:\n  claim:\n    amount: money\nrules:\n  - {name: r, when: exists claim, then: {decide: {route: x}}}\n",
    "bad_shape": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: exists claim, then: {decide: x}}\n",
    "missing_key": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: exists claim}\n",
    "bad_value": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, priority: high, when: exists claim, then: {decide: {route: x}}}\n",
    "unknown_key": "ruleset: t\nfacts:\n  claim: {amount: number}\nrulez: []\nrules:\n  - {name: r, when: exists claim, then: {decide: {route: x}}}\n",
    "duplicate_alias": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: 'claim as a, claim as a', then: {decide: {route: x}}}\n",
    "ambiguous_fact": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: 'claim as a, claim.amount > 1', then: {decide: {route: x}}}\n",
    "too_deep": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: '" + "(" * 80 + "exists claim" + ")" * 80 + "', then: {decide: {route: x}}}\n",
    "too_many_branches": "ruleset: t\nfacts:\n  a: {v: number}\n  b: {v: number}\nrules:\n  - {name: r, when: '"
                         + " and ".join(["(a.v > 1 or b.v > 1)"] * 7) + "', then: {decide: {route: x}}}\n",
    "bad_template": "ruleset: t\nfacts:\n  claim: {amount: number}\nmodels:\n  m: {group: g, produces: claim, prompt: '{{ claim.amount '}\nrules:\n  - {name: r, when: exists claim, then: m}\n",
    "duplicate_action": "ruleset: t\nfacts:\n  claim: {amount: number}\nmodels:\n  m: {group: g, produces: claim, prompt: hi}\ntools:\n  m: {connector: sql, produces: claim}\nrules:\n  - {name: r, when: exists claim, then: m}\n",
    "unknown_rule": "ruleset: t\nfacts:\n  claim: {amount: number}\nrules:\n  - {name: r, when: exists claim, then: {decide: {route: x}}}\ntests:\n  - {name: t, given: {claim: {amount: 1}}, expect: {fired: [nope]}}\n",
}


@pytest.mark.parametrize("code", list(MORE))
def test_every_other_error_code(code: str) -> None:
    with pytest.raises(CompileErrors) as info:
        ruleset(MORE[code])
    errors = info.value.errors
    assert code in [e.code for e in errors], [str(e) for e in errors]
    assert all(e.where.line >= 1 and e.where.column >= 1 for e in errors)


def test_escalate_identity_must_name_a_str_field_of_the_expected_answer() -> None:
    head = HEAD.replace("  policy:\n    active: bool\n", "  policy:\n    active: bool\n  approval:\n    by: str\n    n: int\n")
    assert ruleset(head + "  - name: r\n    when: exists claim\n    then: {escalate: {queue: q, expects: approval, "
                   "identity: by}}\n").rules[0].steps[0].identity == "by"
    for identity in ("n", "who"):
        assert errors_of("  - name: r\n    when: exists claim\n    then: {escalate: {queue: q, expects: approval, "
                         f"identity: {identity}}}}}\n", head)[0][0] == "unknown_field"


def test_every_error_of_a_condition_is_reported_and_a_broken_rule_causes_no_cascade() -> None:
    rules = ("  - name: high-risk\n    when: claim.amout > 5 and policyy.active or claim.amount > \"x\"\n"
             "    then: {decide: {x: 1}}\n"
             "tests:\n  - name: t\n    given: {claim: {amount: 1, ref: r, tier: gold, tags: [], flag: true}}\n"
             "    expect: {fired: [high-risk]}\n")
    line = HEAD.count("\n") + 2
    assert errors_of(rules) == [("unknown_field", line, 17), ("unknown_fact_type", line, 31),
                                ("type_mismatch", line, 62)]  # and no unknown_rule for the test naming it
