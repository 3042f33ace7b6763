"""Hand-written DMN models that are not in the TCK, in the shapes real modelers save (Camunda Modeler,
Kogito/Drools, Trisotech; DMN 1.3, 1.4, 1.5): each imports strictly (no decision left out), runs under
`baton dmn test` against its test file in the TCK's format, and the ruleset `dmn import --tests` writes
passes its embedded tests under `baton test`.

The expected results in tests/dmn/models/*-test-01.xml are computed by hand from the DMN specification's
semantics; each test case's <description> says how (FEEL's null propagation, the hit policy, the
function's definition). They were written before the import could run them."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from engine.clock import FixedClock, SequentialIds
from engine.dmn.feel import Unsupported, xsd_regex
from engine.dmn.importer import import_dmn
from engine.dmn.model import DmnError
from engine.dmn.tck import facts_for, read_tests, result_of
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers

MODELS = Path(__file__).resolve().parent / "models"
runner = CliRunner()

# model -> (cases, result nodes); every one passes
EXPECTED = {
    "applicant-structures": (4, 16),  # structure with a list component, list input, sum/count/max, list contains
    "camunda-approval": (4, 8),  # camunda: namespaces, no inputData, variables typed by the input expressions
    "claim-dates": (5, 10),  # date("...") and another input as cell bounds, a three-valued and of dates
    "customer-routing": (5, 10),  # FIRST, upper/lower case, starts/ends with, string length, matches()
    "insurance-premium": (4, 20),  # if-then-else inside arithmetic, ceiling, floor, decimal, `in` a range
    "licence-age": (4, 8),  # years and months duration(..).years, number allowed values, PRIORITY
    "loan-eligibility": (4, 12),  # a literal BKM invoked with arguments, a table BKM by a boxed invocation
    "order-discount-drg": (4, 12),  # a decision requiring two others, allowed values as an enum, max()
    "risk-score-collect": (5, 10),  # C+ scorecard, not("DE","FR","NL"), a table on another decision
}


def models() -> list[str]:
    return sorted(p.stem for p in MODELS.glob("*.dmn"))


def test_every_model_is_pinned() -> None:
    assert set(models()) == set(EXPECTED)
    assert len(EXPECTED) >= 6


@pytest.mark.parametrize("model", models())
def test_the_model_imports_and_passes_its_hand_computed_tests(model: str) -> None:
    dmn, tests = MODELS / f"{model}.dmn", MODELS / f"{model}-test-01.xml"
    imported = import_dmn(dmn.read_text(encoding="utf-8"))  # strict: any construct left out raises
    assert not imported.skipped
    result = runner.invoke(app, ["dmn", "test", str(dmn), str(tests), "--json"])
    report = json.loads(result.stdout)
    nodes = [n for r in report["results"] for n in r["nodes"]]
    failed = [(r["id"], n) for r in report["results"] for n in r["nodes"] if not n["passed"]]
    assert failed == []
    assert (report["cases"], len(nodes)) == EXPECTED[model]
    assert report["passed"] == report["cases"]
    assert result.exit_code == 0


@pytest.mark.parametrize("model", models())
def test_the_imported_ruleset_passes_its_embedded_tests(model: str, tmp_path: Path) -> None:
    out = tmp_path / "imported.yaml"
    result = runner.invoke(app, ["dmn", "import", str(MODELS / f"{model}.dmn"), "--tests",
                                 str(MODELS / f"{model}-test-01.xml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    ran = runner.invoke(app, ["test", str(out)])
    assert ran.exit_code == 0, ran.output


def test_a_wrong_expectation_fails() -> None:
    """The pins can fail: the same model with one expected value changed is a failed case."""
    text = (MODELS / "insurance-premium-test-01.xml").read_text(encoding="utf-8")
    broken = text.replace('<value xsi:type="xsd:decimal">1625</value>', '<value xsi:type="xsd:decimal">1626</value>')
    assert broken != text
    path = Path(__file__).resolve().parent / "models" / "insurance-premium.dmn"
    tmp = MODELS.parent / ".broken-test.xml"
    try:
        tmp.write_text(broken, encoding="utf-8")
        result = runner.invoke(app, ["dmn", "test", str(path), str(tmp)])
    finally:
        tmp.unlink()
    assert result.exit_code == 1
    assert "!= Annual Premium: expected 1626, actual 1625" in result.stdout


# -- the FEEL these models needed, one construct at a time ---------------------------------------------

def literal(text: str, type_ref: str, inputs: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" namespace="urn:t" name="t" id="t">
  {inputs}
  <decision id="d1" name="Result"><variable name="Result" typeRef="{type_ref}"/>
    <literalExpression><text>{text}</text></literalExpression></decision>
</definitions>"""


X = '<inputData id="i1" name="X"><variable name="X" typeRef="number"/></inputData>'
S = '<inputData id="i1" name="S"><variable name="S" typeRef="string"/></inputData>'


def decide(text: str, inputs: dict[str, object]) -> object:
    imported = import_dmn(text)
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    d = asyncio.run(engine.decide({"input": inputs}, recorded, recorded, FixedClock(), SequentialIds()))
    assert d.outcome == "decided", d.reason
    return result_of(imported, d, "Result")


@pytest.mark.parametrize(("x", "floor", "ceiling"), [
    (2.5, 2, 3), (3.5, 3, 4), (-2.5, -3, -2), (-0.5, -1, 0), (4, 4, 4), (-7, -7, -7), (0.1, 0, 1),
    (1e15 + 0.5, 1e15, 1e15 + 1), (None, None, None)])
def test_floor_and_ceiling_are_conditionals_over_round(x: float | None, floor: float | None,
                                                       ceiling: float | None) -> None:
    given: dict[str, object] = {"x": x} if x is not None else {}
    assert decide(literal("floor(X)", "number", X), given) == floor
    assert decide(literal("ceiling(X)", "number", X), given) == ceiling


def test_if_inside_a_larger_expression_is_one_rule_per_branch() -> None:
    text = literal("10 * (if X &gt; 5 then 2 else 3) + (if X &gt; 8 then 100 else 0)", "number", X)
    assert [decide(text, {"x": x}) for x in (9, 6, 1)] == [120, 20, 30]
    assert decide(text, {}) == 30  # a null X: both conditions are null, so both else branches: 10 * 3 + 0
    assert decide(literal("X + (if X &gt; 5 then 2 else 3)", "number", X), {}) is None  # null + 3


@pytest.mark.parametrize(("feel", "s", "expected"), [
    ('starts with(S, "a.b")', "a.bc", True), ('starts with(S, "a.b")', "axbc", False),
    ('ends with(S, "(x)")', "f(x)", True), ('ends with(S, "(x)")', "f(x)\n", False),
    ('matches(S, "^\\d+$")', "١٢٣", True),  # \d is any Unicode digit in XPath, \p{Nd} in RE2
    ('matches(S, "^[a-c]+$")', "abd", False), ('matches(S, "b")', "abc", True),  # a search, not anchored
    ('not(starts with(S, "a"))', "ba", True),
    ('starts with(S, "a")', None, None), ('not(starts with(S, "a"))', None, None),  # null in, null out
    ("S = null", None, True), ("S = null", "a", False), ("S != null", None, False), ("S != null", "a", True),
])
def test_string_predicates_and_null_checks(feel: str, s: str | None, expected: bool | None) -> None:
    assert decide(literal(feel, "boolean", S), {"s": s} if s is not None else {}) is expected


@pytest.mark.parametrize(("feel", "x", "expected"), [
    ("X in [1..5]", 1, True), ("X in (1..5]", 1, False), ("X in (&lt; 0, 10)", 10, True),
    ("X in (&lt; 0, 10)", 3, False), ("X in [1..5]", None, None), ("not(X in [1..5])", 9, True)])
def test_in_a_range_or_tests_is_comparisons(feel: str, x: float | None, expected: bool | None) -> None:
    assert decide(literal(feel, "boolean", X), {"x": x} if x is not None else {}) is expected


def test_a_false_cell_on_a_condition_column_is_refused() -> None:
    """FEEL's ends with(null, ...) is null (a `false` cell does not match); Baton's is false."""
    text = (MODELS / "customer-routing.dmn").read_text(encoding="utf-8")
    broken = text.replace('<rule id="r_gov"><inputEntry><text>-</text></inputEntry><inputEntry><text>true</text>',
                          '<rule id="r_gov"><inputEntry><text>-</text></inputEntry><inputEntry><text>false</text>')
    assert broken != text
    with pytest.raises(DmnError) as e:
        import_dmn(broken)
    assert e.value.construct == "FEEL null"
    assert "'Route' (id d_route)" in str(e.value) and "r_gov" in str(e.value)


@pytest.mark.parametrize("pattern", ["\\w+", "\\s", "[\\d]", "\\p{IsBasicLatin}", "[a-z-[aeiou]]", "(a)\\1", "a**"])
def test_xpath_patterns_re2_reads_differently_are_refused(pattern: str) -> None:
    with pytest.raises(Unsupported):
        xsd_regex(pattern)


AGE = ('<itemDefinition id="t_age" name="tAge"><typeRef>number</typeRef><allowedValues><text>{allowed}</text>'
       '</allowedValues></itemDefinition><inputData id="i1" name="X"><variable name="X" typeRef="tAge"/></inputData>')


def test_a_numbers_allowed_values_are_its_min_and_max() -> None:
    imported = import_dmn(literal("X * 2", "number", AGE.format(allowed="[18..120]")))
    assert "x: {type: number, min: 18, max: 120, optional: true}" in imported.yaml
    assert decide(literal("X * 2", "number", AGE.format(allowed="&gt;= 0")), {"x": 4}) == 8
    engine = Engine(load_ruleset(imported.yaml))
    with pytest.raises(Exception, match="120"):  # DMN: a value outside the allowed values is an error
        engine.validate_input({"input": {"x": 121}})


@pytest.mark.parametrize("allowed", ["(0..100]", "&gt; 0", "[1..2], [5..6]", "not(3)", "[0..x]"])
def test_allowed_values_baton_cannot_hold_are_refused(allowed: str) -> None:
    with pytest.raises(DmnError) as e:
        import_dmn(literal("X * 2", "number", AGE.format(allowed=allowed)))
    assert e.value.construct == "allowed values"
    assert "tAge" in str(e.value)


@pytest.mark.parametrize(("where", "language"), [
    ('<inputExpression typeRef="number">', '<inputExpression typeRef="number" expressionLanguage="juel">'),
    ("<inputEntry><text>&gt;= 18", '<inputEntry expressionLanguage="javascript"><text>&gt;= 18'),
    ('namespace="https://example.org/dmn/risk-score">',
     'namespace="https://example.org/dmn/risk-score" expressionLanguage="http://groovy-lang.org/">')])
def test_expressions_in_another_language_are_refused(where: str, language: str) -> None:
    """Camunda 7 models may write an input in JUEL, JavaScript or Groovy: never read as FEEL."""
    text = (MODELS / "risk-score-collect.dmn").read_text(encoding="utf-8")
    text = text.replace(where, language, 1) if where in text else text.replace(
        "<inputEntry><text>&lt; 25", language.replace("&gt;= 18", "&lt; 25"), 1)
    assert language.split(" ", 1)[-1].split(">")[0] in text
    with pytest.raises(DmnError) as e:
        import_dmn(text)
    assert e.value.construct == "expression language"


def _java_period_years(a: date, b: date) -> int:
    """Reference: java.time's Period.between(a, b).getYears() (LocalDate.until), which DMN engines use for
    years and months duration(a, b): months between, less one when b's day is before a's (more one going
    back), divided by 12 toward zero."""
    months = (b.year * 12 + b.month) - (a.year * 12 + a.month)
    if months > 0 and b.day < a.day:
        months -= 1
    elif months < 0 and b.day > a.day:
        months += 1
    return int(months / 12)


@settings(max_examples=150, deadline=None)
@given(st.dates(date(1990, 1, 1), date(2030, 12, 31)), st.dates(date(1990, 1, 1), date(2030, 12, 31)))
def test_years_of_a_years_and_months_duration_is_baton_years(a: date, b: date) -> None:
    dates = ('<inputData id="i1" name="A"><variable name="A" typeRef="date"/></inputData>'
             '<inputData id="i2" name="B"><variable name="B" typeRef="date"/></inputData>')
    text = literal("years and months duration(A, B).years", "number", dates)
    assert decide(text, {"a": a.isoformat(), "b": b.isoformat()}) == _java_period_years(a, b)


@pytest.mark.parametrize(("model", "old", "new", "construct"), [
    ("customer-routing", '<text>starts with(Customer Name, "VIP ")</text>',
     '<text>not(starts with(Customer Name, "VIP "))</text>', "FEEL not() as a value"),
    ("claim-dates", '<outputEntry><text>"Legacy Process"</text>',
     "<outputEntry><text>Incident Date &lt; Claim Date</text>", "FEEL null"),
    ("insurance-premium", "<text>decimal(Annual Premium / 12, 2)</text>",
     "<text>round half up(Annual Premium / 12, 2)</text>", "FEEL function Baton lacks"),
])
def test_where_baton_would_differ_on_null_or_lacks_the_function_the_import_is_refused(
        model: str, old: str, new: str, construct: str) -> None:
    """not(null) is null in FEEL and a condition over an absent field is false in Baton, so not() and
    conditions as table values would answer where DMN gives null: refused, naming the construct."""
    text = (MODELS / f"{model}.dmn").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(DmnError) as e:
        import_dmn(text.replace(old, new))
    assert e.value.construct == construct


@pytest.mark.parametrize(("x", "expected"), [(2.5, 2), (3.5, 4), (-2.5, -2), (2.675, 2.68)])
def test_round_half_even_is_decimal(x: float, expected: float) -> None:
    scale = 0 if expected == int(expected) else 2
    assert decide(literal(f"round half even(X, {scale})", "number", X), {"x": x}) == expected


def test_input_values_constrain_the_field_the_column_reads() -> None:
    """Camunda's predefined input values: a value outside them is an error in DMN, invalid input in Baton."""
    imported = import_dmn((MODELS / "camunda-approval.dmn").read_text(encoding="utf-8"))
    assert 'customer_type: {enum: ["VIP", "regular", "new"], optional: true}' in imported.yaml
    engine = Engine(load_ruleset(imported.yaml))
    with pytest.raises(Exception, match="gold"):
        engine.validate_input({"input": {"customer_type": "gold", "amount": 1, "credit_limit": 1}})


def test_input_values_on_an_input_expression_are_refused() -> None:
    text = (MODELS / "customer-routing.dmn").read_text(encoding="utf-8")
    old = '<text>upper case(Country)</text></inputExpression>'
    assert old in text
    with pytest.raises(DmnError) as e:
        import_dmn(text.replace(old, old + '<inputValues><text>"DE","AT"</text></inputValues>'))
    assert e.value.construct == "input values"
    assert "'Route' (id d_route)" in str(e.value)


def test_a_bkm_with_an_if_is_inlined_into_branches() -> None:
    """Kogito style: a fee BKM whose body is an if-then-else, invoked inside a larger expression."""
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" namespace="urn:t" name="t" id="t">
  {X}
  <businessKnowledgeModel id="b1" name="Fee"><encapsulatedLogic><formalParameter name="amount" typeRef="number"/>
    <literalExpression><text>if amount &gt; 100 then amount * 0.05 else 5</text></literalExpression>
  </encapsulatedLogic></businessKnowledgeModel>
  <decision id="d1" name="Result"><variable name="Result" typeRef="number"/>
    <knowledgeRequirement id="k1"><requiredKnowledge href="#b1"/></knowledgeRequirement>
    <literalExpression><text>X + Fee(X * 2)</text></literalExpression></decision>
</definitions>"""
    # X = 60: Fee(120) = 6, 66; X = 10: Fee(20) = 5, 15; X null: X * 2 > 100 is null, so else 5, but null + 5
    assert [decide(text, {"x": x}) for x in (60, 10)] == [66, 15]
    assert decide(text, {}) is None


COLLECTED = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="c" name="c" namespace="urn:c">
  {X}
  <itemDefinition name="tPoints" isCollection="true"><typeRef>number</typeRef></itemDefinition>
  <decision id="d1" name="Points"><variable name="Points" typeRef="tPoints"/>
    <decisionTable id="t1" hitPolicy="COLLECT">
      <input id="c1"><inputExpression typeRef="number"><text>X</text></inputExpression></input>
      <output id="o1" name="p" typeRef="number"/>
      <rule id="r1"><inputEntry><text>&lt; 30</text></inputEntry><outputEntry><text>10</text></outputEntry></rule>
      <rule id="r2"><inputEntry><text>&lt; 50</text></inputEntry><outputEntry><text>5</text></outputEntry></rule>
      <rule id="r3"><inputEntry><text>-</text></inputEntry><outputEntry><text>1</text></outputEntry></rule>
    </decisionTable></decision>
  <decision id="d2" name="Result"><variable name="Result" typeRef="number"/>
    <informationRequirement id="q"><requiredDecision href="#d1"/></informationRequirement>
    <literalExpression><text>sum(Points) + count(Points) * 100 + max(Points)</text></literalExpression></decision>
</definitions>"""


def test_a_decision_reading_a_collect_list_reads_it_whole_once() -> None:
    """COLLECT's result is the list of every matched rule's output; a decision reading it runs once, on the whole
    list (not once per row as the rows' facts arrive): X = 20: [10, 5, 1], 16 + 300 + 10 = 326."""
    imported = import_dmn(COLLECTED)
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    d = asyncio.run(engine.decide({"input": {"x": 20}}, recorded, recorded, FixedClock(), SequentialIds()))
    assert d.decision == {"points": [10, 5, 1], "result": [326]}
    assert decide(COLLECTED, {"x": 60}) == 102  # [1]: 1 + 100 + 1


@pytest.mark.parametrize("model", models())
def test_each_single_result_decision_has_one_result_in_the_decision(model: str) -> None:
    """What `baton decide` returns for the imported model (the dmn-results decision) holds at most one value
    for every decision that is not multi-hit, on every test case: no decision fires on partial results."""
    imported = import_dmn((MODELS / f"{model}.dmn").read_text(encoding="utf-8"))
    engine = Engine(load_ruleset(imported.yaml))
    for case in read_tests((MODELS / f"{model}-test-01.xml").read_text(encoding="utf-8")):
        recorded = RecordedAnswers({})
        d = asyncio.run(engine.decide(facts_for(imported, case.inputs), recorded, recorded, FixedClock(),
                                      SequentialIds()))
        assert isinstance(d.decision, dict)
        for dmap in imported.decisions.values():
            if not dmap.multi:
                facts = d.decision[dmap.fact]
                assert isinstance(facts, list) and len(facts) <= 1, (case.id, dmap.name, facts)


@pytest.mark.parametrize(("feel", "s", "expected"), [
    ('S = "a"', None, False), ('S != "a"', None, True), ('S != "a"', "a", False), ('S != "a"', "b", True),
    ('if S != "a" then "not a" else "a"', None, "not a"), ('if S = "a" then "a" else "not a"', None, "not a")])
def test_equality_with_null_is_false_never_null(feel: str, s: str | None, expected: object) -> None:
    """FEEL: null = "a" is false and null != "a" true (only < <= > >= with null are null)."""
    type_ref = "string" if feel.startswith("if") else "boolean"
    assert decide(literal(feel, type_ref, S), {"s": s} if s is not None else {}) == expected


NULL_DECISION = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="n" name="n" namespace="urn:n">
  {X}
  <decision id="d1" name="Band"><variable name="Band" typeRef="string"/>
    <decisionTable id="t1"><input id="c1"><inputExpression typeRef="number"><text>X</text></inputExpression></input>
      <output id="o1" name="b" typeRef="string"/>
      <rule id="r1"><inputEntry><text>&gt; 10</text></inputEntry><outputEntry><text>"high"</text></outputEntry></rule>
    </decisionTable></decision>
  <decision id="d2" name="Label"><variable name="Label" typeRef="string"/>
    <informationRequirement id="q"><requiredDecision href="#d1"/></informationRequirement>
    <literalExpression><text>if Band = "high" then "H" else "other"</text></literalExpression></decision>
  <decision id="d3" name="Missing"><variable name="Missing" typeRef="boolean"/>
    <informationRequirement id="q2"><requiredDecision href="#d1"/></informationRequirement>
    <literalExpression><text>Band = null</text></literalExpression></decision>
  <decision id="d4" name="Result"><variable name="Result" typeRef="string"/>
    <informationRequirement id="q3"><requiredDecision href="#d2"/></informationRequirement>
    <literalExpression><text>Label + "!"</text></literalExpression></decision>
</definitions>"""


@pytest.mark.parametrize(("x", "band", "label", "missing", "result"), [
    (20, "high", "H", False, "H!"), (5, None, "other", True, "other!"), (None, None, "other", True, "other!")])
def test_a_null_decision_is_still_read(x: float | None, band: str | None, label: str, missing: bool,
                                       result: str) -> None:
    """Band matches no rule for X <= 10 (or null): null. Label's condition `null = "high"` is false, so its
    else branch; `Band = null` is true; Result reads Label."""
    imported = import_dmn(NULL_DECISION)
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    d = asyncio.run(engine.decide({"input": {"x": x} if x is not None else {}}, recorded, recorded, FixedClock(),
                                  SequentialIds()))
    got = [result_of(imported, d, n) for n in ("Band", "Label", "Missing", "Result")]
    assert got == [band, label, missing, result]


QUESTION = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="q" name="q" namespace="urn:q">
  {S}
  <decision id="d1" name="Result"><variable name="Result" typeRef="string"/>
    <decisionTable id="t1" hitPolicy="FIRST">
      <input id="c1"><inputExpression typeRef="string"><text>S</text></inputExpression></input>
      <output id="o1" name="r" typeRef="string"/>
      <rule id="r1"><inputEntry><text>starts with(?, "VIP")</text></inputEntry>
        <outputEntry><text>"vip"</text></outputEntry></rule>
      <rule id="r2"><inputEntry><text>? = "Bob"</text></inputEntry><outputEntry><text>"bob"</text></outputEntry></rule>
      <rule id="r3"><inputEntry><text>string length(?) &gt; 10</text></inputEntry>
        <outputEntry><text>"long"</text></outputEntry></rule>
      <rule id="r4"><inputEntry><text>-</text></inputEntry><outputEntry><text>"other"</text></outputEntry></rule>
    </decisionTable></decision>
</definitions>"""


@pytest.mark.parametrize(("s", "expected"), [("VIP Ann", "vip"), ("Bob", "bob"), ("Alexandra-Maria", "long"),
                                             ("Al", "other"), (None, "other")])
def test_question_mark_cells(s: str | None, expected: str) -> None:
    """Camunda 8 / FEEL 1.2+: `?` is the input value in a cell; a condition over it is null on a null input."""
    assert decide(QUESTION, {"s": s} if s is not None else {}) == expected


def test_question_mark_in_a_list_is_refused() -> None:
    with pytest.raises(DmnError) as e:
        import_dmn(QUESTION.replace('<text>? = "Bob"</text>', '<text>"Al", starts with(?, "B")</text>'))
    assert e.value.construct == "FEEL ? unary test"
