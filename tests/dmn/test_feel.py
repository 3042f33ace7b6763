"""FEEL as Baton imports it: the unary-test parser against a plain-Python reference, each hit policy's import,
and the error each unsupported construct gets (naming the DMN element's id and name and the construct)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock, SequentialIds
from engine.dmn.feel import Translator, cell_text, parse_unary_tests
from engine.dmn.importer import import_dmn
from engine.dmn.model import DmnError
from engine.dmn.tck import result_of
from engine.language.check import check_value
from engine.language.expr import parse
from engine.language.loader import load_ruleset
from engine.language.tables import cell_condition, parse_cell
from engine.language.types import FactType, FieldSpec
from engine.loop import Engine
from engine.recorded import RecordedAnswers

# -- the unary-test parser against a reference in plain Python -------------------------------------------

numbers = st.integers(-20, 20)


@st.composite
def one_test(draw: Any) -> tuple[str, Any]:
    """One FEEL positive unary test over numbers, and the plain-Python predicate it means."""
    kind = draw(st.sampled_from(["lt", "le", "gt", "ge", "eq", "range"]))
    a = draw(numbers)
    if kind == "range":
        b = draw(st.integers(a, 25))
        lo_closed, hi_closed = draw(st.booleans()), draw(st.booleans())
        if a == b:
            lo_closed = hi_closed = True
        opener = "[" if lo_closed else draw(st.sampled_from(["(", "]"]))
        closer = "]" if hi_closed else draw(st.sampled_from([")", "["]))
        return (f"{opener}{a}..{b}{closer}",
                lambda x: (x >= a if lo_closed else x > a) and (x <= b if hi_closed else x < b))
    op = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": ""}[kind]
    space = draw(st.sampled_from(["", " "]))
    pred = {"lt": lambda x: x < a, "le": lambda x: x <= a, "gt": lambda x: x > a, "ge": lambda x: x >= a,
            "eq": lambda x: x == a}[kind]
    return f"{op}{space}{a}", pred


@st.composite
def cells(draw: Any) -> tuple[str, Any]:
    tests = draw(st.lists(one_test(), min_size=1, max_size=4))
    text = ",".join(t for t, _ in tests) if draw(st.booleans()) else ", ".join(t for t, _ in tests)

    def any_of(x: float) -> bool:
        return any(p(x) for _, p in tests)

    if draw(st.booleans()):
        return f"not({text})", lambda x: not any_of(x)
    return text, any_of


NUMBER = FieldSpec("n", "number")
FACT = {"t": FactType("t", {"n": NUMBER})}


@settings(max_examples=300, deadline=None)
@given(cells(), st.lists(st.sampled_from([x / 2 for x in range(-50, 51)]), min_size=1, max_size=8))
def test_unary_tests_match_the_reference(cell: tuple[str, Any], probes: list[float]) -> None:
    text, reference = cell
    baton = cell_text(parse_unary_tests(text), Translator({}), "number")
    parsed = parse_cell(baton, NUMBER, "t.n")
    assert parsed.kind == "num"  # literal tests stay literal: exactly analysed and indexed
    condition = check_value(parse(cell_condition("t.n", parsed)), FACT, {}, None)[1]
    for x in probes:
        assert parsed.contains(x) == reference(x), (text, baton, x)
        assert condition({"t": {"n": x}}, None) is reference(x), (text, baton, x)  # type: ignore[arg-type]


def test_cells_with_strings_names_and_lists() -> None:
    scope_text = {"Symptoms": ("input.symptoms", "list")}
    from engine.dmn.feel import Binding

    scope = {"Symptoms": Binding("input.symptoms", "list"), "Limit": Binding("input.limit", "number")}
    tr = Translator(scope)
    assert cell_text(parse_unary_tests('"a","b"'), tr, "str") == '"a", "b"'
    assert cell_text(parse_unary_tests('not("a")'), tr, "str") == 'not("a")'
    assert cell_text(parse_unary_tests("> Limit"), tr, "number") == "> input.limit"
    assert cell_text(parse_unary_tests("[Limit..Limit * 2)"), tr, "number") == "[input.limit..input.limit * 2)"
    assert cell_text(parse_unary_tests("Symptoms"), tr, "str") == "in input.symptoms"
    assert cell_text(parse_unary_tests("-"), tr, "str") == "-"
    assert scope_text


# -- each hit policy's import ----------------------------------------------------------------------------

def dmn(table: str, inputs: str = '<inputData id="i1" name="Age"><variable name="Age" typeRef="number"/>'
        "</inputData>", extra: str = "", type_ref: str = "number") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20230324/MODEL/" namespace="urn:t" name="t" id="t">
  {extra}
  <decision id="d1" name="Result">
    <variable name="Result" typeRef="{type_ref}"/>
    <informationRequirement id="r1"><requiredInput href="#i1"/></informationRequirement>
    {table}
  </decision>
  {inputs}
</definitions>"""


def table(hit: str, rows: list[tuple[str, str]], aggregation: str = "", values: str = "") -> str:
    agg = f' aggregation="{aggregation}"' if aggregation else ""
    out_values = f"<outputValues><text>{values}</text></outputValues>" if values else ""
    body = "".join(f'<rule id="u{k}"><inputEntry><text>{a}</text></inputEntry><outputEntry><text>{o}</text>'
                   "</outputEntry></rule>" for k, (a, o) in enumerate(rows))
    return (f'<decisionTable id="t1" hitPolicy="{hit}"{agg}><input id="c1"><inputExpression typeRef="number">'
            f'<text>Age</text></inputExpression></input><output id="o1" name="out">{out_values}</output>{body}'
            "</decisionTable>")


def run(text: str, age: float | None) -> object:
    imported = import_dmn(text)
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    facts = {"input": {"age": age} if age is not None else {}}
    d = asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(), SequentialIds()))
    assert d.outcome == "decided", d.reason
    return result_of(imported, d, "Result")


ROWS = [("&lt; 18", "1"), ("&gt;= 10", "2"), ("-", "3"), ("&gt;= 10", "2")]


@pytest.mark.parametrize(("hit", "aggregation", "age", "expected", "baton"), [
    ("FIRST", "", 12, 1, "hit: first"),
    ("RULE ORDER", "", 12, [1, 2, 3, 2], "hit: rule_order"),
    ("COLLECT", "", 12, [1, 2, 3, 2], "hit: collect"),
    ("COLLECT", "SUM", 12, 8, "aggregate: sum"),
    ("COLLECT", "COUNT", 12, 4, "aggregate: count"),
    ("COLLECT", "MIN", 30, 2, "aggregate: min"),
    ("COLLECT", "MAX", 5, 3, "aggregate: max"),
])
def test_multi_and_first_hit_policies(hit: str, aggregation: str, age: float, expected: object, baton: str) -> None:
    text = dmn(table(hit, ROWS, aggregation))
    assert baton in import_dmn(text).yaml
    assert run(text, age) == expected


def test_unique_any_priority_and_output_order() -> None:
    rows = [("&lt; 18", '"minor"'), ("[18..65)", '"adult"'), ("&gt;= 65", '"senior"')]
    assert run(dmn(table("UNIQUE", rows), type_ref="string"), 40) == "adult"
    assert run(dmn(table("UNIQUE", rows), type_ref="string"), None) is None  # a null input matches no row
    same = [("&lt; 18", '"low"'), ("&lt; 10", '"low"'), ("&gt;= 18", '"high"')]
    assert run(dmn(table("ANY", same), type_ref="string"), 5) == "low"
    ranked = [("&lt; 18", '"low"'), ("&lt; 10", '"high"'), ("-", '"mid"')]
    values = '"high", "mid", "low"'
    assert run(dmn(table("PRIORITY", ranked, values=values), type_ref="string"), 5) == "high"
    assert run(dmn(table("PRIORITY", ranked, values=values), type_ref="string"), 15) == "mid"
    assert run(dmn(table("OUTPUT ORDER", ranked, values=values), type_ref="string"), 5) == ["high", "mid", "low"]


def test_any_with_different_outputs_is_refused_when_checked() -> None:
    clash = [("&lt; 18", '"low"'), ("&lt; 10", '"high"')]
    imported = import_dmn(dmn(table("ANY", clash), type_ref="string"))
    from engine.errors import CompileErrors

    with pytest.raises(CompileErrors) as e:
        load_ruleset(imported.yaml)
    assert e.value.errors[0].code == "table_conflict"


# -- what cannot be imported ------------------------------------------------------------------------------

def literal(text: str, type_ref: str = "number") -> str:
    return dmn(f"<literalExpression><text>{text}</text></literalExpression>", type_ref=type_ref)


@pytest.mark.parametrize(("text", "construct"), [
    (literal("for x in [1, 2] return x"), "FEEL 'for' expression"),
    (literal("some x in [1, 2] satisfies x &gt; 1"), "FEEL 'some' expression"),
    (literal("every x in [1, 2] satisfies x &gt; 1"), "FEEL 'every' expression"),
    (literal("{a: 1}.a"), "FEEL context"),
    (literal("[1, 2, 3][item &gt; Age]"), "FEEL filter expression"),
    (literal("log(Age)"), "FEEL function Baton lacks"),
    (dmn(table("UNIQUE", [("-", "floor(Age)")])), "FEEL function Baton lacks"),  # floor: only in literal decisions
    (dmn(table("UNIQUE", [("-", "if Age &gt; 18 then 1 else 2")])), "FEEL if-then-else"),
    (literal('substring("abc", Age)', "string"), "FEEL function Baton lacks"),
    (literal('matches("abc", "\\w+")', "boolean"), "FEEL matches"),
    (literal('matches("abc", "[a-z-[aeiou]]")', "boolean"), "FEEL matches"),
    (literal('matches("abc", "a", "i")', "boolean"), "FEEL matches with flags"),
    (literal("Age in [1, 2]", "boolean"), "FEEL 'in' expression"),
    (literal("Age instance of number", "boolean"), "FEEL 'instance of'"),
    (literal("Age + 1 = null", "boolean"), "FEEL null comparison"),
    (dmn(table("UNIQUE", [("null", "1")])), "FEEL null test"),
    (dmn(table("UNIQUE", [("-", "1")]), inputs='<inputData id="i1" name="Age"><variable name="Age" '
         'typeRef="time"/></inputData>'), "FEEL time of day"),
    (dmn(table("UNIQUE", [("-", "1")]), inputs='<inputData id="i1" name="Age"><variable name="Age" '
         'typeRef="days and time duration"/></inputData>'), "FEEL duration"),
    (dmn('<context id="x1"><contextEntry><variable name="a"/><literalExpression><text>1</text>'
         "</literalExpression></contextEntry></context>"), "boxed context"),
])
def test_unsupported_constructs_name_the_element_and_construct(text: str, construct: str) -> None:
    with pytest.raises(DmnError) as e:
        import_dmn(text)
    assert e.value.construct == construct
    message = str(e.value)
    assert ("'Result' (id d1)" in message) or ("'Age' (id i1)" in message), message


def test_entities_are_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><definitions>&lol;</definitions>'
    with pytest.raises(DmnError) as e:
        import_dmn(bomb)
    assert e.value.construct == "DOCTYPE"
    with pytest.raises(DmnError, match="not a DMN model"):
        import_dmn('<definitions xmlns="urn:other"/>')


def test_partial_import_lists_what_it_left_out() -> None:
    imported = import_dmn(literal("log(Age)"), partial=True)
    assert "FEEL function Baton lacks" in imported.skipped["Result"]
    assert "# Left out" in imported.yaml
    load_ruleset(imported.yaml)


def test_if_then_else_decisions_take_the_else_branch_on_null() -> None:
    text = literal('if Age &gt;= 18 then "adult" else if Age &lt; 13 then "child" else "teen"', "string")
    assert [run(text, age) for age in (30, 15, 5, None)] == ["adult", "teen", "child", "teen"]
    boolean = literal("if Age &gt; 10 then Age &gt; 20 else false", "boolean")
    assert [run(boolean, age) for age in (30, 15, 5, None)] == [True, False, False, False]
    partly_null = literal("if Age &gt; 10 then null else Age * 2")
    assert [run(partly_null, age) for age in (30, 5, None)] == [None, 10, None]


def test_list_functions_of_a_list_input() -> None:
    inputs = ('<inputData id="i1" name="Amounts"><variable name="Amounts" typeRef="tAmounts"/></inputData>'
              '<itemDefinition name="tAmounts" isCollection="true"><typeRef>number</typeRef></itemDefinition>')
    for feel, expected in (("sum(Amounts)", 6), ("count(Amounts)", 3), ("max(Amounts)", 3), ("min(Amounts)", 1)):
        text = dmn(f"<literalExpression><text>{feel}</text></literalExpression>", inputs=inputs)
        imported = import_dmn(text)
        engine = Engine(load_ruleset(imported.yaml))
        recorded = RecordedAnswers({})
        d = asyncio.run(engine.decide({"input": {"amounts": [1, 2, 3]}}, recorded, recorded, FixedClock(),
                                      SequentialIds()))
        assert result_of(imported, d, "Result") == expected, feel


def test_variables_without_input_data_are_typed_by_the_table(tmp_path: Any) -> None:
    """A Camunda-style model: no inputData, the table's input expressions name run-time variables."""
    from pathlib import Path

    text = (Path(__file__).parent / "camunda-dish.dmn").read_text(encoding="utf-8")
    imported = import_dmn(text)
    assert "guest_count: {type: number, optional: true}" in imported.yaml
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    for season, guests, dish in (("Spring", 6, "Steak"), ("Winter", 12, "Stew"), ("Summer", 2,
                                                                                  "Light Salad and a nice Steak")):
        d = asyncio.run(engine.decide({"input": {"season": season, "guest_count": guests}}, recorded, recorded,
                                      FixedClock(), SequentialIds()))
        assert result_of(imported, d, "Dish Decision") == dish


@pytest.mark.parametrize("namespace", [
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd", "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "https://www.omg.org/spec/DMN/20191111/MODEL/", "https://www.omg.org/spec/DMN/20211108/MODEL/",
])
def test_each_dmn_version_namespace_is_read(namespace: str) -> None:
    from pathlib import Path

    tck = Path(__file__).parent / "tck" / "compliance-level-2" / "0004-simpletable-U"
    text = (tck / "0004-simpletable-U.dmn").read_text(encoding="utf-8").replace(
        "https://www.omg.org/spec/DMN/20230324/MODEL/", namespace)
    imported = import_dmn(text)
    assert imported.yaml.startswith("# Imported from DMN ")
    engine = Engine(load_ruleset(imported.yaml))
    recorded = RecordedAnswers({})
    d = asyncio.run(engine.decide({"input": {"age": 18, "risk_category": "Medium", "is_affordable": True}}, recorded,
                                  recorded, FixedClock(), SequentialIds()))
    assert result_of(imported, d, "Approval Status") == "Approved"


BKM_TABLE = """<businessKnowledgeModel id="b1" name="Band Of">
    <encapsulatedLogic>
      <formalParameter name="years" typeRef="number"/>
      <decisionTable id="bt" hitPolicy="FIRST">
        <input id="bi"><inputExpression typeRef="number"><text>years</text></inputExpression></input>
        <output id="bo" name="band"/>
        <rule id="br1"><inputEntry><text>&lt; 18</text></inputEntry>
          <outputEntry><text>"minor"</text></outputEntry></rule>
        <rule id="br2"><inputEntry><text>-</text></inputEntry><outputEntry><text>"adult"</text></outputEntry></rule>
      </decisionTable>
    </encapsulatedLogic>
  </businessKnowledgeModel>"""


@pytest.mark.parametrize("logic", [
    "<literalExpression><text>Band Of(Age + 1)</text></literalExpression>",
    '<invocation id="v1"><literalExpression><text>Band Of</text></literalExpression><binding>'
    '<parameter name="years"/><literalExpression><text>Age + 1</text></literalExpression></binding></invocation>',
])
def test_a_bkm_decision_table_invoked_by_a_decision(logic: str) -> None:
    text = dmn(logic, extra=BKM_TABLE, type_ref="string")
    assert [run(text, age) for age in (10, 17, 40, None)] == ["minor", "adult", "adult", "adult"]


def test_a_boxed_invocation_of_a_literal_bkm() -> None:
    bkm = """<businessKnowledgeModel id="b2" name="Twice"><encapsulatedLogic><formalParameter name="x"/>
      <literalExpression><text>x * 2</text></literalExpression></encapsulatedLogic></businessKnowledgeModel>"""
    logic = ('<invocation id="v2"><literalExpression><text>Twice</text></literalExpression><binding>'
             '<parameter name="x"/><literalExpression><text>Age</text></literalExpression></binding></invocation>')
    assert run(dmn(logic, extra=bkm), 21) == 42
