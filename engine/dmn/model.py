"""DMN 1.1-1.5 XML read into plain records: item definitions, input data, decisions (decision tables and
literal expressions), business knowledge models, and the requirements between them.

DMN files are untrusted input: a document type declaration (and so any entity) is refused before parsing,
and defusedxml parses when it is installed. Element names are matched by local name within a DMN
namespace of any version; unknown vendor extensions are ignored.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from engine.dmn.feel import Unsupported

DMN_NAMESPACES = {
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd": "1.1",
    "http://www.omg.org/spec/DMN/20180521/MODEL/": "1.2",
    "https://www.omg.org/spec/DMN/20191111/MODEL/": "1.3",
    "https://www.omg.org/spec/DMN/20211108/MODEL/": "1.4",
    "https://www.omg.org/spec/DMN/20230324/MODEL/": "1.5",
}
MAX_BYTES = 20_000_000


class DmnError(Exception):
    """A DMN file that cannot be imported: names the element (id and name) and the construct."""

    def __init__(self, message: str, element_id: str = "", element_name: str = "", construct: str = "") -> None:
        where = f"{element_name!r} (id {element_id})" if element_name or element_id else ""
        super().__init__(f"{where}: {message}" if where else message)
        self.element_id, self.element_name, self.construct = element_id, element_name, construct
        self.message = message


@dataclass(slots=True)
class ItemDef:
    name: str
    type_ref: str = ""
    collection: bool = False
    components: list[ItemDef] = field(default_factory=list)
    allowed: str = ""  # the allowedValues unary tests, as written
    id: str = ""


@dataclass(slots=True)
class InputData:
    id: str
    name: str
    type_ref: str


@dataclass(slots=True)
class Column:
    id: str
    text: str  # input: the input expression; output: the output's name
    type_ref: str
    values: str = ""  # inputValues / outputValues, as written
    default: str = ""  # output: defaultOutputEntry


@dataclass(slots=True)
class TableRule:
    id: str
    inputs: list[str]
    outputs: list[str]


@dataclass(slots=True)
class DecisionTable:
    id: str
    hit: str  # UNIQUE FIRST PRIORITY ANY COLLECT RULE ORDER OUTPUT ORDER
    aggregation: str
    inputs: list[Column]
    outputs: list[Column]
    rules: list[TableRule]


@dataclass(slots=True)
class Invocation:
    """A boxed invocation: the business knowledge model called and its parameters' expressions."""

    callee: str
    bindings: list[tuple[str, str]]


@dataclass(slots=True)
class Decision:
    id: str
    name: str
    type_ref: str
    kind: str  # table | literal | other construct's element name
    table: DecisionTable | None = None
    literal: str = ""
    requires: list[str] = field(default_factory=list)  # ids of input data, decisions and BKMs
    invocation: Invocation | None = None


@dataclass(slots=True)
class Bkm:
    id: str
    name: str
    params: list[tuple[str, str]]
    kind: str
    literal: str = ""
    table: DecisionTable | None = None


@dataclass(slots=True)
class Model:
    name: str
    namespace: str
    version: str
    items: dict[str, ItemDef]
    inputs: list[InputData]
    decisions: list[Decision]
    bkms: list[Bkm]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _children(e: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in e if _local(c.tag) == name]


def _child(e: ET.Element, name: str) -> ET.Element | None:
    found = _children(e, name)
    return found[0] if found else None


def _text(e: ET.Element | None) -> str:
    if e is None:
        return ""
    t = _child(e, "text")
    return (t.text or "").strip() if t is not None else ""


def _type_ref(e: ET.Element | None) -> str:
    if e is None:
        return ""
    ref = e.get("typeRef") or ""
    if not ref:
        t = _child(e, "typeRef")
        ref = (t.text or "").strip() if t is not None else ""
    return ref


def _href(e: ET.Element) -> str:
    return (e.get("href") or "").split("#")[-1]


def parse_xml(text: str) -> ET.Element:
    if len(text) > MAX_BYTES:
        raise DmnError(f"the file is over {MAX_BYTES:,} bytes")
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise DmnError("the file declares a document type or entities; DMN needs neither (refused: "
                       "entity expansion is a known attack on XML readers)", construct="DOCTYPE")
    try:
        import defusedxml.ElementTree as DET

        return DET.fromstring(text, forbid_dtd=True)  # type: ignore[no-any-return]
    except ImportError:
        pass
    except ET.ParseError as e:
        raise DmnError(f"not well-formed XML: {e}") from None
    except Exception as e:  # defusedxml's own refusals
        raise DmnError(f"refused: {e}") from None
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise DmnError(f"not well-formed XML: {e}") from None


def _item(e: ET.Element) -> ItemDef:
    allowed = _child(e, "allowedValues")
    return ItemDef(e.get("name") or "", _type_ref(e), (e.get("isCollection") or "false") == "true",
                   [_item(c) for c in _children(e, "itemComponent")], _text(allowed), e.get("id") or "")


def _table(e: ET.Element) -> DecisionTable:
    inputs = []
    for i in _children(e, "input"):
        expr = _child(i, "inputExpression")
        inputs.append(Column(i.get("id") or "", _text(expr), _type_ref(expr), _text(_child(i, "inputValues"))))
    outputs = [Column(o.get("id") or "", o.get("name") or "", _type_ref(o), _text(_child(o, "outputValues")),
                      _text(_child(o, "defaultOutputEntry"))) for o in _children(e, "output")]
    rules = [TableRule(r.get("id") or "", [_text(x) for x in _children(r, "inputEntry")],
                       [_text(x) for x in _children(r, "outputEntry")]) for r in _children(e, "rule")]
    return DecisionTable(e.get("id") or "", (e.get("hitPolicy") or "UNIQUE").upper(),
                         (e.get("aggregation") or "").upper(), inputs, outputs, rules)


EXPRESSIONS = ("decisionTable", "literalExpression", "context", "invocation", "relation", "list",
               "functionDefinition", "conditional", "filter", "for", "every", "some")


def _expression(e: ET.Element) -> tuple[str, DecisionTable | None, str, Invocation | None]:
    for c in e:
        tag = _local(c.tag)
        if tag == "decisionTable":
            return "table", _table(c), "", None
        if tag == "literalExpression":
            return "literal", None, _text(c), None
        if tag == "invocation":
            return "invocation", None, "", _invocation(c)
        if tag in EXPRESSIONS:
            return tag, None, "", None
    return "none", None, "", None


def _invocation(e: ET.Element) -> Invocation:
    callee = _child(e, "literalExpression")
    bindings: list[tuple[str, str]] = []
    for b in _children(e, "binding"):
        param = _child(b, "parameter")
        value = _child(b, "literalExpression")
        if value is None and len(b) > 1:
            raise DmnError("a binding whose value is not a literal expression", e.get("id") or "",
                           construct="boxed invocation binding")
        bindings.append(((param.get("name") or "") if param is not None else "", _text(value) if value is not None
                         else "null"))
    return Invocation(_text(callee), bindings)


def _only_feel(root: ET.Element) -> None:
    """Every expression is FEEL: an ``expressionLanguage`` naming another (Camunda 7's juel, javascript,
    groovy) is refused, naming the decision or business knowledge model it is in - never read as FEEL."""
    def other(e: ET.Element) -> str:
        lang = e.get("expressionLanguage") or ""
        return lang if lang and "feel" not in lang.lower() else ""

    if other(root):
        raise DmnError(f"the model's expressionLanguage is {other(root)!r}", root.get("id") or "",
                       root.get("name") or "", construct="expression language")
    for tag in ("decision", "businessKnowledgeModel"):
        for el in _children(root, tag):
            for e in el.iter():
                if other(e):
                    named = _local(e.tag) + (f" {e.get('id')}" if e.get("id") else "")
                    raise DmnError(f"{named} is written in {other(e)!r}, not FEEL",
                                   el.get("id") or "", el.get("name") or "", construct="expression language")


def read_model(text: str) -> Model:
    """The model in a DMN file; raises DmnError."""
    root = parse_xml(text)
    ns = _ns(root.tag)
    if _local(root.tag) != "definitions" or ns not in DMN_NAMESPACES:
        raise DmnError(f"not a DMN model: the root element is {_local(root.tag)!r} in namespace {ns!r} "
                       "(DMN 1.1 to 1.5 expected)")
    _only_feel(root)
    items = {i.name: i for i in (_item(e) for e in _children(root, "itemDefinition"))}
    inputs = [InputData(e.get("id") or "", e.get("name") or "", _type_ref(_child(e, "variable")))
              for e in _children(root, "inputData")]
    decisions = []
    for e in _children(root, "decision"):
        kind, table, literal, invocation = _expression(e)
        requires = [_href(r) for req in (*_children(e, "informationRequirement"), *_children(e, "knowledgeRequirement"))
                    for r in req if r.get("href")]
        decisions.append(Decision(e.get("id") or "", e.get("name") or "", _type_ref(_child(e, "variable")), kind,
                                  table, literal, requires, invocation))
    bkms = []
    for e in _children(root, "businessKnowledgeModel"):
        logic = _child(e, "encapsulatedLogic")
        if logic is None:
            bkms.append(Bkm(e.get("id") or "", e.get("name") or "", [], "none"))
            continue
        params = [(p.get("name") or "", _type_ref(p)) for p in _children(logic, "formalParameter")]
        kind, table, literal, _ = _expression(logic)
        bkms.append(Bkm(e.get("id") or "", e.get("name") or "", params, kind, literal, table))
    for tag in ("decisionService", "import"):
        found = _children(root, tag)
        if found:
            raise DmnError(f"a {tag} is not imported", found[0].get("id") or "", found[0].get("name") or "",
                           construct=tag)
    return Model(root.get("name") or "dmn-model", root.get("namespace") or "", DMN_NAMESPACES[ns], items, inputs,
                 decisions, bkms)


__all__ = ["Bkm", "Decision", "DecisionTable", "DmnError", "InputData", "ItemDef", "Model", "Unsupported",
           "read_model"]
