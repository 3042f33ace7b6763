"""Authoring feedback (RULESETS.md item 21): errors at the true line and column in every YAML scalar style,
test data checked by ``check``, the warnings ``test_date_unfixed`` and ``unanswerable_escalation``, and
``never_fires`` naming the comparisons that contradict each other."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import BatonError, CompileErrors
from engine.language.loader import load_ruleset

HEAD = """\
ruleset: t
facts:
  claim: {amount: number, region: str, opened: date}
input: [claim]
"""
TOKEN = "amonut"  # the deliberate mistake: claim has no field 'amonut'


def errors(text: str) -> list[BatonError]:
    with pytest.raises(CompileErrors) as info:
        load_ruleset(text, "t.yaml")
    return info.value.errors


def where_of(text: str, token: str) -> tuple[int, int]:
    """1-based line and column of the only place ``token`` is written in ``text``."""
    assert text.count(token) == 1
    before = text[:text.index(token)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


# -- positions in every scalar style ----------------------------------------------------------------------

PARTS = st.lists(st.sampled_from([
    "claim.amount > 5", "claim.amount <= 1000", 'claim.region == "north"', "claim.region != 'south'",
    "claim.amount * 2 < 30", 'claim.region in ["a", "b c"]', "exists claim",
    'claim.region == "tab\\there"', "days(claim.opened, decision.date) > 3",
]), min_size=0, max_size=6)


def _layout(style: str, parts: list[str], indent: int, data: st.DataObject) -> str:
    """``when:`` written in one YAML style, with the parts on several lines."""
    pad = " " * indent
    if style in (">", "|"):
        lines = [f"{pad}{p} and" for p in parts[:-1]] + [f"{pad}{parts[-1]}"]
        if style == ">" and len(lines) > 1 and data.draw(st.booleans()):
            lines.insert(1, "")  # a blank line in a folded scalar is a line break in its text
        if style == "|" and len(lines) > 1:
            lines[1] = " " * data.draw(st.integers(0, 3)) + lines[1]  # more indented: kept as written
        return f"{style}\n" + "\n".join(lines)
    if style == "plain":
        body = [p for p in parts if "'" not in p and '"' not in p]  # keep quotes out of the plain scalar's start
        first, rest = body[0], body[1:]
        return first + "".join(f" and\n{pad}{p}" for p in rest)
    if style == "'":
        text = f" and\n{pad}".join(parts).replace("'", "''")
        return f"'{text}'"
    # double-quoted: quotes and backslashes escaped, some spaces written \x20 or \t, some breaks escaped
    out = []
    for k, p in enumerate(parts):
        p = p.replace("\\", "\\\\").replace('"', '\\"')
        if not any(m[1] in p for m in MISTAKES) and data.draw(st.booleans()):
            p = p.replace(" ", "\\x20", 1)
        out.append(p)
        if k < len(parts) - 1:
            out.append(data.draw(st.sampled_from([" and\n" + pad, " and \\\n" + pad + "", " and\\t",
                                                  " and\\n\\\n" + pad])))
    return '"' + "".join(out) + '"'


MISTAKES = [  # (a part with a mistake, the token the error must point at, its code)
    (f"claim.{TOKEN} > 1", TOKEN, "unknown_field"),
    ("claim.amount @ 1", "@", "syntax_error"),
    ("claim.amount > limt", "limt", "unknown_name"),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([">", "|", "plain", "'", '"']), PARTS, st.integers(0, 5), st.integers(6, 10),
       st.sampled_from(MISTAKES), st.booleans(), st.data())
def test_an_error_is_reported_where_its_token_stands_in_every_scalar_style(
        style: str, parts: list[str], at: int, indent: int, mistake: tuple[str, str, str], anchored: bool,
        data: st.DataObject) -> None:
    """Random conditions in each YAML style, on several lines, with one mistake: the error stands where the
    mistake's token is written in the file (through the fast parser, and with an anchor through ruamel's)."""
    wrong, token, code = mistake
    parts = [p for p in parts if style != "plain" or ("'" not in p and '"' not in p)]
    parts.insert(min(at, len(parts)), wrong)
    where = data.draw(st.sampled_from(["when", "define", "value"]))
    if where == "when":
        text = HEAD + "rules:\n  - name: r\n    when: " + _layout(style, parts, indent, data) + \
            "\n    then: {decide: {route: x}}\n"
    elif where == "define":
        text = HEAD + "define:\n  d: " + _layout(style, parts, indent, data) + \
            "\nrules:\n  - name: r\n    when: exists claim and d\n    then: {decide: {route: x}}\n"
    else:
        body = _layout(style, ["=" + p if k == 0 else p for k, p in enumerate(parts)], indent + 4, data)
        text = HEAD + "rules:\n  - name: r\n    when: exists claim\n    then:\n      decide:\n        route: x\n" + \
            "        flag: " + body + "\n"
    text = text.replace("input: [claim]\n", "input: [claim]\nvalues: {limit: 5}\n")
    if anchored:  # an anchor sends the file through ruamel's round-trip parser
        text = text.replace("  claim: {", "  claim: &c {")
    found = [e for e in errors(text) if e.code == code]
    assert found, text
    assert (found[0].where.line, found[0].where.column) == where_of(text, token), text


def test_the_folded_condition_of_the_issue_is_reported_at_its_line() -> None:
    text = HEAD + """\
rules:
  - name: r
    when: >
      exists claim and
      claim.amount > 10 and
      claim.region == "north" and
      claim.amonut < 5
    then: {decide: {route: x}}
"""
    [e] = errors(text)
    assert (e.code, e.where.line, e.where.column) == ("unknown_field", 11, 13)
    assert e.hint == "did you mean 'amount'?"


def test_an_error_in_a_folded_definition_is_at_the_definition_line() -> None:
    text = HEAD + """\
define:
  big: >-
    claim.amount > 100 and
    claim.regoin == "x"
rules:
  - {name: r, when: big, then: {decide: {route: x}}}
"""
    [e] = errors(text)
    assert (e.code, e.where.line, e.where.column) == ("unknown_field", 8, 11)
    assert "used by rule 'r'" in e.message


# -- test data checked by check ----------------------------------------------------------------------------

RULESET = """\
ruleset: t
facts:
  claim: {amount: number, region: str, opened: date, tier: {enum: [standard, gold]}}
  score: {value: number}
  lookup: {limit: number}
  approval: {approved: bool, approver: str}
input: [claim]
models:
  scorer: {group: fast, produces: score, prompt: "Score {{ claim.amount }}"}
tools:
  limits: {connector: lookup, produces: lookup, params: {region: claim.region}}
rules:
  - name: score
    when: exists claim
    then: [scorer, limits]
  - name: review
    when: score.value > 0.5 and lookup.limit > 0
    then: {escalate: {queue: q, expects: approval}}
  - name: approve
    when: approval.approved
    then: {decide: {route: ok}}
tests:
"""


def data_errors(tests: str) -> list[tuple[str, int, int, str, str]]:
    text = RULESET + tests
    return [(e.code, e.where.line, e.where.column, e.message, e.hint) for e in errors(text)]


LINE = RULESET.count("\n") + 1  # the first line of the tests


def test_correct_test_data_passes_check() -> None:
    rs = load_ruleset(RULESET + """\
  - name: fine
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    answers:
      scorer: {value: 0.9}
      limits: [[{limit: 5}], {failure: {kind: timeout, error: slow}}]
    human:
      approval: {approved: true, approver: ann}
    expect: {outcome: decided}
""", "t.yaml")
    assert len(rs.tests) == 1


def test_answers_indented_inside_given_is_a_misplaced_key() -> None:
    [e] = data_errors("""\
  - name: t
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
      answers:
        scorer: {value: 0.9}
    expect: {outcome: decided}
""")
    assert e[:3] == ("misplaced_key", LINE + 3, 7)
    assert "'answers' is written in given, but it belongs to the test itself" in e[3]


def test_answers_indented_inside_a_fact_is_a_misplaced_key() -> None:
    [e] = data_errors("""\
  - name: t
    given:
      claim:
        amount: 10
        region: north
        opened: 2026-03-01
        tier: gold
        answers: {scorer: {value: 0.9}}
""")
    assert e[:3] == ("misplaced_key", LINE + 7, 9)


def test_expect_keys_and_facts_written_at_the_test_level_are_misplaced() -> None:
    found = data_errors("""\
  - name: t
    claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    outcome: decided
""")
    assert [e[:3] for e in found] == [("misplaced_key", LINE + 1, 5), ("misplaced_key", LINE + 2, 5)]
    assert "belongs under given:" in found[0][3] and "belongs under expect:" in found[1][3]


def test_given_facts_are_checked_against_their_types_at_each_key() -> None:
    found = data_errors("""\
  - name: t
    given:
      claim:
        amout: 10
        region: 5
        opened: 15/03/2026
        tier: platinum
      clam: {amount: 1}
""")
    assert [e[:3] for e in found] == [
        ("unknown_field", LINE + 3, 9), ("type_mismatch", LINE + 4, 17), ("bad_date", LINE + 5, 17),
        ("not_in_enum", LINE + 6, 15), ("missing_field", LINE + 3, 9), ("unknown_fact_type", LINE + 7, 7)]
    assert found[0][4] == "did you mean 'amount'?"
    assert found[5][4] == "did you mean 'claim'?"
    assert "given.claim.opened" in found[2][3]


def test_a_list_of_given_facts_is_checked_item_by_item() -> None:
    [e] = data_errors("""\
  - name: t
    given:
      claim:
        - {amount: 10, region: north, opened: 2026-03-01, tier: gold}
        - {amount: ten, region: north, opened: 2026-03-01, tier: gold}
""")
    assert e[:3] == ("type_mismatch", LINE + 4, 20)
    assert "given.claim[1].amount" in e[3]


def test_answers_are_shaped_as_each_actions_produces() -> None:
    found = data_errors("""\
  - name: t
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    answers:
      scorer: {valeu: 0.9}
      limits:
        - [{limit: high}]
      scorre: {value: 1}
""")
    assert [e[:3] for e in found] == [("unknown_field", LINE + 4, 16), ("missing_field", LINE + 4, 15),
                                      ("type_mismatch", LINE + 6, 20), ("unknown_action", LINE + 7, 7)]
    assert found[3][4] == "did you mean 'scorer'?" and found[0][4] == "did you mean 'value'?"
    assert found[0][3].startswith("scorer produces score: answers.scorer: score has no field 'valeu'")


def test_human_answers_are_checked_against_what_escalations_expect() -> None:
    found = data_errors("""\
  - name: t
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    human:
      aproval: {approved: true}
      score: {value: 1}
  - name: u
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    human:
      approval: {approved: yes please, approver: ann}
""")
    assert [e[:3] for e in found] == [("unknown_fact_type", LINE + 4, 7), ("unexpected_answer", LINE + 5, 7),
                                      ("type_mismatch", LINE + 10, 28)]
    assert found[0][4] == "did you mean 'approval'?"


# -- warnings ------------------------------------------------------------------------------------------------

def warnings(text: str) -> list[tuple[str, int, int, str]]:
    return [(w.code, w.where.line, w.where.column, w.message) for w in load_ruleset(text, "t.yaml").warnings]


CLOCK = """\
ruleset: t
facts:
  claim: {amount: number, opened: date}
input: [claim]
define:
  late: days(claim.opened, decision.date) > 30
rules:
  - {name: late-claim, when: late, then: {decide: {route: late}}}
  - {name: on-time, when: not late, then: {decide: {route: ok}}}
tests:
  - name: unfixed
    given: {claim: {amount: 1, opened: 2026-01-01}}
    expect: {decision: {route: late}}
  - name: fixed
    decision_date: 2026-01-05
    given: {claim: {amount: 1, opened: 2026-01-01}}
    expect: {decision: {route: ok}}
"""


def test_a_test_that_fixes_no_date_warns_when_the_rules_read_the_date_through_a_definition() -> None:
    [w] = warnings(CLOCK)
    assert w[:3] == ("test_date_unfixed", 11, 5)
    assert "test 'unfixed'" in w[3] and "rule 'late-claim' reads decision.date" in w[3]


@pytest.mark.parametrize("use", [
    "when: exists claim, then: {decide: {days: '=days(claim.opened, decision.date)'}}",
    "when: 'claim.opened < decision.date', then: {decide: {route: x}}",
    "when: exists claim and decision.time > datetime(\"2026-01-01T00:00:00Z\"), then: {decide: {route: x}}",
])
def test_every_place_that_reads_the_clock_counts(use: str) -> None:
    text = ("ruleset: t\nfacts:\n  claim: {amount: number, opened: date}\nrules:\n  - {name: r, " + use + "}\n"
            "tests:\n  - name: u\n    given: {claim: {amount: 1, opened: 2026-01-01}}\n")
    assert [w[0] for w in warnings(text)] == ["test_date_unfixed"]
    assert [w[0] for w in warnings(text.replace("  - name: u\n", "  - name: u\n    decision_date: 2026-01-02\n"))] \
        == []


def test_text_that_only_mentions_the_clock_does_not_count() -> None:
    text = ("ruleset: t\nfacts:\n  claim: {note: str, decision: {type: str, optional: true}}\nrules:\n"
            "  - {name: r, when: 'claim.note == \"decision.date\"', then: {decide: {route: x}}}\n"
            "tests:\n  - name: u\n    given: {claim: {note: a}}\n")
    assert warnings(text) == []


def test_an_escalation_without_expects_is_unanswerable() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number}
  review: {ok: bool}
rules:
  - name: big
    when: claim.amount > 10
    then:
      escalate: {queue: q, sla: 4h}
  - name: bigger
    when: claim.amount > 100
    then:
      escalate: {queue: q, expects: review}
  - {name: reviewed, when: review.ok, then: {decide: {route: ok}}}
"""
    found = warnings(text)
    assert [w[:3] for w in found if w[0] != "shadowed"] == [("unanswerable_escalation", 9, 17)]
    assert "escalate to 'q' waits 4h for a reviewer's answer but has no expects:" in found[0][3]
    assert found[0][3].endswith("it can only time out")


def test_an_escalation_with_no_sla_and_no_expects_hands_the_case_over_without_a_warning() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number}
rules:
  - {name: big, when: claim.amount > 10, then: {escalate: {queue: q, reason: r}}}
"""
    assert warnings(text) == []


def test_never_fires_names_the_comparisons_that_contradict_each_other() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number, tier: str, region: str}
rules:
  - name: r
    when: >
      claim.region == "north" and claim.amount > 10 and
      claim.tier == "a" and claim.amount < 5
    then: {decide: {route: x}}
  - name: s
    when: claim.tier == "a" and claim.amount > 1 and claim.tier in ["b", "c"]
    then: {decide: {route: x}}
"""
    found = warnings(text)
    assert [w[:2] for w in found] == [("never_fires", 5), ("never_fires", 10)]
    assert found[0][3].endswith("(claim.amount > 10 and claim.amount < 5 cannot both hold)")
    assert found[1][3].endswith('(claim.tier == "a" and claim.tier in ["b", "c"] cannot both hold)')


# -- tables: overlaps name both rows and an input; gaps merged as the cells write them -----------------------

TABLE = """\
ruleset: t
facts:
  claim: {amount: number, tier: {enum: [a, b]}, region: str}
  fee: {rate: number}
input: [claim]
tables:
  - name: fees
    hit: unique
    inputs: [claim.amount, claim.tier]
    outputs: [fee.rate]
    rows:
      - ["< 100", "-", 1]
      - ["[200..300]", "a", 2]
      - ["(250..400)", "b", 3]
      - [">= 500", "-", 4]
      - ["[100..150)", "-", 5]
rules:
  - {name: r, when: fee.rate > 0, then: {decide: {rate: "=fee.rate"}}}
"""


def test_a_gap_is_listed_with_its_intervals_merged_as_cells_write_them() -> None:
    [gap] = [w for w in load_ruleset(TABLE, "t.yaml").warnings if w.code == "table_gap"]
    assert gap.message == ("table 'fees': no row covers claim.amount in [150..200), claim.tier = a; "
                           "claim.amount in (300..500), claim.tier = a; claim.amount in [150..250], claim.tier = b; "
                           "and 1 more")


def test_gaps_of_a_text_column_merge_into_a_list_or_its_complement() -> None:
    text = TABLE.replace("[claim.amount, claim.tier]", "[claim.amount, claim.region]").replace(
        TABLE[TABLE.index("    rows:\n"):TABLE.index("rules:")],
        '    rows:\n      - ["< 100", "north", 1]\n      - ["[100..200)", "south", 2]\n      - [">= 200", "-", 3]\n')
    [gap] = [w for w in load_ruleset(text, "t.yaml").warnings if w.code == "table_gap"]
    assert gap.message == ("table 'fees': no row covers claim.amount < 100, claim.region not in [north]; "
                           "claim.amount in [100..200), claim.region not in [south]")


def test_an_overlap_names_both_rows_lines_and_an_input_where_they_overlap() -> None:
    [e] = errors(TABLE.replace('"(250..400)", "b"', '"(250..400)", "-"'))
    assert (e.code, e.where.line) == ("table_overlap", 14)
    assert e.message == ("table 'fees': rows 2 and 3 overlap (lines 13 and 14), but the hit policy is unique "
                         '(both match claim.amount = 300, claim.tier = "a")')


def test_a_prompt_template_error_is_on_its_line_of_a_literal_prompt() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number}
models:
  m:
    group: g
    produces: claim
    prompt: |
      Read the claim.
      Amount: {{ claim.amount }}
      Broken: {% if claim.amount %}
rules:
  - {name: r, when: exists claim, then: m}
"""
    found = [e for e in errors(text) if e.code == "bad_template"]
    assert [(e.where.line, e.where.column) for e in found] == [(11, 7)]


def test_an_error_in_a_definition_a_table_cell_uses_is_at_the_definition() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number}
  fee: {rate: number}
input: [claim]
define:
  lim: >
    claim.amount +
    claim.amonut * 2
tables:
  - name: fees
    hit: first
    inputs: [claim.amount]
    outputs: [fee.rate]
    rows:
      - ["> lim", 1]
      - ["-", 2]
rules:
  - {name: r, when: fee.rate > 0, then: {decide: {rate: "=fee.rate"}}}
"""
    [e] = errors(text)
    assert (e.code, e.where.line, e.where.column) == ("unknown_field", 9, 11)
    assert e.message.endswith("(in definition 'lim', used by table 'fees' row 1)")


def test_an_error_in_a_table_cell_is_at_the_cell() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number, region: str}
  fee: {rate: number}
input: [claim]
tables:
  - name: fees
    hit: first
    inputs: [claim.amount, claim.region]
    outputs: [fee.rate]
    rows:
      - ["> claim.amonut * 2", "-", 1]
      - ["-", "-", "=claim.amount * claim.regoin"]
rules:
  - {name: r, when: fee.rate > 0, then: {decide: {rate: "=fee.rate"}}}
"""
    assert [(e.code, e.where.line, e.where.column, e.hint) for e in errors(text)] == [
        ("unknown_field", 12, 19, "did you mean 'amount'?"), ("unknown_field", 13, 43, "did you mean 'region'?")]


def test_answers_indented_inside_expect_is_a_misplaced_key() -> None:
    found = data_errors("""\
  - name: t
    given:
      claim: {amount: 10, region: north, opened: 2026-03-01, tier: gold}
    expect:
      outcome: decided
      answers: {scorer: {value: 0.9}}
""")
    assert [e[:3] for e in found] == [("misplaced_key", LINE + 5, 7)]
    assert "'answers' is written in expect, but it belongs to the test itself" in found[0][3]


def test_an_error_in_a_definition_an_output_cell_uses_is_at_the_definition() -> None:
    text = """\
ruleset: t
facts:
  claim: {amount: number}
  fee: {rate: number}
input: [claim]
define:
  doubled: >
    claim.amount +
    claim.amonut
tables:
  - name: fees
    hit: first
    inputs: [claim.amount]
    outputs: [fee.rate]
    rows:
      - ["-", "=doubled"]
rules:
  - {name: r, when: fee.rate > 0, then: {decide: {rate: "=fee.rate"}}}
"""
    [e] = errors(text)
    assert (e.code, e.where.line, e.where.column) == ("unknown_field", 9, 11)
    assert e.message.endswith("(in definition 'doubled', used by table 'fees' row 1)")
