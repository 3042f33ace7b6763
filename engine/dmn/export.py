"""A ruleset's decision tables as a DMN 1.5 model, laid out with DMNDI shapes so a modeler opens it drawn.

- Each input fact type is an inputData whose type is an itemDefinition with the fact's fields.
- Each table is a decision with a decision table: its inputs are FEEL paths (``claim.amount``), its cells
  FEEL unary tests, its hit policy DMN's. A table that reads the facts another table asserts requires
  that table's decision (``risk.level``: the decision ``risk``'s component ``level``).
- What DMN cannot hold is returned as a list, never dropped silently: rules that are not tables, model
  and tool actions, escalations, effects, and table cells or outputs that are expressions.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from engine.language.tables import Cell, Column, Table, clock_text
from engine.model import Ruleset

NS = "https://www.omg.org/spec/DMN/20230324/MODEL/"
DMNDI = "https://www.omg.org/spec/DMN/20230324/DMNDI/"
DC = "http://www.omg.org/spec/DMN/20180521/DC/"
DI = "http://www.omg.org/spec/DMN/20180521/DI/"
FEEL_TYPES = {"str": "string", "enum": "string", "number": "number", "int": "number", "bool": "boolean",
              "date": "date", "datetime": "date and time"}
HIT = {"unique": "UNIQUE", "any": "ANY", "first": "FIRST", "priority": "PRIORITY", "collect": "COLLECT",
       "rule_order": "RULE ORDER", "output_order": "OUTPUT ORDER"}
W, H = 180, 80


class NotExportable(Exception):
    pass


def _feel_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _bound(x: float, clock: str) -> str:
    if clock == "date":
        return clock_text(x, clock)
    if clock == "datetime":
        return clock_text(x, clock).replace("datetime(", "date and time(")
    return _feel_literal(int(x) if float(x).is_integer() and abs(x) < 1e15 else x)


def feel_cell(cell: Cell) -> str:
    """A literal cell as FEEL unary tests; NotExportable for an expression cell."""
    if cell.kind == "any":
        return "-"
    if cell.kind == "expr":
        raise NotExportable(f"the cell {cell.text!r} has expression bounds")
    if cell.kind == "set":
        body = ", ".join(_feel_literal(v) for v in sorted(cell.values, key=str))
        return f"not({body})" if cell.negated else body
    parts = []
    for i in cell.intervals:
        lo, hi = math.isfinite(i.lo), math.isfinite(i.hi)
        if lo and hi and i.lo == i.hi:
            parts.append(_bound(i.lo, cell.clock))
        elif lo and hi:
            parts.append(f"{'[' if i.lo_closed else '('}{_bound(i.lo, cell.clock)}..{_bound(i.hi, cell.clock)}"
                         f"{']' if i.hi_closed else ')'}")
        elif lo:
            parts.append(f"{'>=' if i.lo_closed else '>'} {_bound(i.lo, cell.clock)}")
        elif hi:
            parts.append(f"{'<=' if i.hi_closed else '<'} {_bound(i.hi, cell.clock)}")
        else:
            parts.append("-")
    return ", ".join(parts)


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def new(self, prefix: str) -> str:
        self.n += 1
        return f"_{prefix}{self.n}"


def export_dmn(rs: Ruleset) -> tuple[str, list[str]]:
    """The model's XML, and what was left out (each a sentence)."""
    ex = _Exporter(rs)
    ex.leave_out_rules_and_actions()
    for tname in rs.inputs:
        ex.input_data(tname)
    for t, did in ex.exportable_tables():
        ex.decision(t, did)
    for iid in ex.inputs.values():
        ex.depth[iid] = 0
    return ex.xml(ex.diagram()), ex.left_out


class _Exporter:
    """One export: the ids handed out in document order, and the parts of the model as they are written."""

    def __init__(self, rs: Ruleset) -> None:
        self.rs = rs
        self.ids = _Ids()
        self.left_out: list[str] = []
        self.items: list[str] = []
        self.inputs: dict[str, str] = {}  # fact type -> inputData id
        self.body: list[str] = []
        self.produced: dict[str, str] = {}  # fact type asserted by a table -> its decision id
        self.edges: list[tuple[str, str, str]] = []  # (requirement id, from element id, to decision id)
        self.depth: dict[str, int] = {}

    def leave_out_rules_and_actions(self) -> None:
        rs = self.rs
        table_rules = ({t.rule_name(r) for t in rs.tables for r in t.rows}
                       | {f"{t.name}#{t.aggregate}" for t in rs.tables}
                       | {f"{t.name}#inputs" for t in rs.tables})  # a table's routed expression inputs are the table's
        for rule in rs.rules:
            if rule.name in table_rules:
                continue
            kinds = sorted({s.kind for s in rule.steps})
            self.left_out.append(f"rule {rule.name!r} ({', '.join(kinds)}): only decision tables are exported")
        self.left_out.extend(f"model action {m!r}" for m in rs.models)
        self.left_out.extend(f"tool action {x!r}" for x in rs.tools)

    def input_data(self, tname: str) -> None:
        """An input fact type: its itemDefinition and inputData."""
        ids = self.ids
        ft = self.rs.types[tname]
        comps = []
        for fname, spec in ft.fields.items():
            kind = spec.items.kind if spec.kind == "list" and spec.items is not None else spec.kind
            feel = FEEL_TYPES.get(kind)
            if feel is None:
                self.left_out.append(f"field {tname}.{fname} ({spec.kind})")
                continue
            allowed = ""
            enum = spec.items.enum if spec.kind == "list" and spec.items is not None else spec.enum
            if enum:
                allowed = (f"<allowedValues><text>{escape(', '.join(_feel_literal(v) for v in enum))}</text>"
                           "</allowedValues>")
            coll = ' isCollection="true"' if spec.kind == "list" else ""
            comps.append(f'      <itemComponent id="{ids.new("c")}" name={quoteattr(fname)}{coll}>'
                         f"<typeRef>{feel}</typeRef>{allowed}</itemComponent>")
        self.items.append(f'  <itemDefinition id="{ids.new("t")}" name={quoteattr("t_" + tname)}>\n'
                          + "\n".join(comps) + "\n  </itemDefinition>")
        iid = ids.new("i")
        self.inputs[tname] = iid
        self.body.append(f'  <inputData id="{iid}" name={quoteattr(tname)}>'
                         f'<variable id="{ids.new("v")}" name={quoteattr(tname)} typeRef={quoteattr("t_" + tname)}/>'
                         "</inputData>")

    def exportable_tables(self) -> list[tuple[Table, str]]:
        """The tables DMN can hold, each with its decision's id; the others left out, saying why."""
        exportable: list[tuple[Table, str]] = []
        for t in self.rs.tables:
            try:
                _check_exportable(t)
            except NotExportable as e:
                self.left_out.append(f"table {t.name!r}: {e}")
                continue
            if t.head in ("escalate",):
                self.left_out.append(f"table {t.name!r}: escalations are not DMN")
                continue
            did = self.ids.new("d")
            if t.head not in ("decide",):
                self.produced[t.head] = did
            exportable.append((t, did))
        return exportable

    def decision(self, t: Table, did: str) -> None:
        """A table as a decision: what it reads, its decision table, and its place in the graph."""
        ids = self.ids
        name = t.name if t.head == "decide" else t.head
        sources = self.sources(t)
        reqs = []
        for src in sources:
            rid = ids.new("r")
            self.edges.append((rid, src, did))
            tag = "requiredDecision" if src.startswith("_d") else "requiredInput"
            reqs.append(f'    <informationRequirement id="{rid}"><{tag} href="#{src}"/></informationRequirement>')
        outputs = self.output_columns(t)
        ins = self.input_columns(t)
        rules = self.rule_elements(t)
        agg = f' aggregation="{t.aggregate.upper()}"' if t.aggregate else ""
        type_ref = _output_type(t.outputs[0]) if len(t.outputs) == 1 else ""
        var = f'<variable id="{ids.new("v")}" name={quoteattr(name)}' + (f" typeRef={quoteattr(type_ref)}" if
                                                                           type_ref and not t.multi else "") + "/>"
        self.body.append(f'  <decision id="{did}" name={quoteattr(name)}>\n'
                         f"    <description>{escape(t.description or t.name)}</description>\n    {var}\n"
                         + "\n".join(reqs) + "\n"
                         f'    <decisionTable id="{ids.new("x")}" hitPolicy="{HIT[t.hit]}"{agg}>\n'
                         + "\n".join(ins) + "\n" + "\n".join(outputs) + "\n" + "\n".join(rules)
                         + "\n    </decisionTable>\n  </decision>")
        self.depth[did] = 1 + max((self.depth.get(s, 0) for s in sources), default=0)

    def sources(self, t: Table) -> list[str]:
        """The inputData or decisions a table's inputs read, in order, once each."""
        sources: list[str] = []
        for col in t.inputs:
            src = self.produced.get(col.head) or self.inputs.get(col.head)
            if src is None:
                self.left_out.append(f"table {t.name!r}: input {col.ref} is neither an input fact nor another "
                                     "table's output")
                src = ""
            if src and src not in sources:
                sources.append(src)
        return sources

    def output_columns(self, t: Table) -> list[str]:
        outputs = []
        for col in t.outputs:
            feel = _output_type(col)
            listed: tuple[object, ...] = ()
            if col.spec is not None and col.spec.enum:
                listed = col.spec.enum
            elif t.hit == "priority" and t.ranking and col is t.outputs[0]:
                listed = tuple(t.ranking)
            values = (f"<outputValues><text>{escape(', '.join(_feel_literal(v) for v in listed))}</text>"
                      "</outputValues>") if listed else ""
            outputs.append(f'      <output id="{self.ids.new("o")}" name={quoteattr(col.field)}'
                           + (f" typeRef={quoteattr(feel)}" if feel else "") + f">{values}</output>")
        return outputs

    def input_columns(self, t: Table) -> list[str]:
        ins = []
        for col in t.inputs:
            feel = FEEL_TYPES.get(col.spec.kind if col.spec is not None else "", "")
            ref = col.ref if col.head in self.inputs else (col.head if single_output(self.rs, col) else col.ref)
            ins.append(f'      <input id="{self.ids.new("n")}" label={quoteattr(col.ref)}><inputExpression '
                       f'id="{self.ids.new("e")}" typeRef={quoteattr(feel)}><text>{escape(ref)}</text>'
                       "</inputExpression></input>")
        return ins

    def rule_elements(self, t: Table) -> list[str]:
        ids = self.ids
        rules = []
        for row in t.rows:
            entries = [f'<inputEntry id="{ids.new("u")}"><text>{escape(feel_cell(c))}</text></inputEntry>'
                       for c in row.cells]
            entries += [f'<outputEntry id="{ids.new("u")}"><text>'
                        f'{escape(_feel_literal(v) if v is not None else "null")}</text></outputEntry>'
                        for v in row.outputs]
            rules.append(f'      <rule id="{ids.new("u")}"><description>{escape(t.name)} row {row.number}'
                         f"</description>{''.join(entries)}</rule>")
        return rules

    def diagram(self) -> list[str]:
        """DMNDI: inputs on the bottom row, each decision a row above what it reads."""
        rows: dict[int, list[str]] = {}
        for el, dep in self.depth.items():
            rows.setdefault(dep, []).append(el)
        top = max(rows, default=0)
        pos: dict[str, tuple[int, int]] = {}
        shapes = []
        for dep, els in sorted(rows.items()):
            for k, el in enumerate(els):
                x, y = 40 + k * (W + 40), 40 + (top - dep) * (H + 80)
                pos[el] = (x, y)
                shapes.append(f'      <dmndi:DMNShape id="{self.ids.new("s")}" dmnElementRef="{el}">'
                              f'<dc:Bounds x="{x}" y="{y}" width="{W}" height="{H}"/></dmndi:DMNShape>')
        for rid, src, dst in self.edges:
            (x1, y1), (x2, y2) = pos.get(src, (0, 0)), pos.get(dst, (0, 0))
            shapes.append(f'      <dmndi:DMNEdge id="{self.ids.new("s")}" dmnElementRef="{rid}">'
                          f'<di:waypoint x="{x1 + W // 2}" y="{y1}"/><di:waypoint x="{x2 + W // 2}" y="{y2 + H}"/>'
                          "</dmndi:DMNEdge>")
        return shapes

    def xml(self, shapes: list[str]) -> str:
        rs = self.rs
        about = "Exported by baton dmn export from ruleset " + rs.name + " version " + rs.version
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<definitions xmlns="{NS}" xmlns:dmndi="{DMNDI}" '
                f'xmlns:dc="{DC}" xmlns:di="{DI}" id="_{_safe(rs.name)}" name={quoteattr(rs.name)} '
                f'namespace={quoteattr("https://baton.invalid/rulesets/" + rs.name)}>\n'
                f"  <description>{escape(about)}</description>\n"
                + "\n".join(self.items) + "\n" + "\n".join(self.body) + "\n"
                '  <dmndi:DMNDI>\n    <dmndi:DMNDiagram id="_diagram">\n' + "\n".join(shapes)
                + "\n    </dmndi:DMNDiagram>\n  </dmndi:DMNDI>\n</definitions>\n")


def _check_exportable(t: Table) -> None:
    """Raise NotExportable when a table uses what DMN's decision tables cannot say."""
    for col in t.inputs:
        if col.expr:
            raise NotExportable(f"the input {col.ref!r} is an expression")
    for row in t.rows:
        for cell in row.cells:
            feel_cell(cell)
        for v in row.outputs:
            if isinstance(v, str) and v.startswith("="):
                raise NotExportable(f"row {row.number}'s output {v!r} is an expression")
    if t.when:
        raise NotExportable(f"its when: {t.when!r}")


def single_output(rs: Ruleset, col: Column) -> bool:
    """Does the table that asserts ``col``'s fact type have one output (so its decision's value is that field)?"""
    for t in rs.tables:
        if t.head == col.head:
            return len(t.outputs) == 1
    return False


def _output_type(col: Column) -> str:
    if col.spec is None:
        return ""
    return FEEL_TYPES.get(col.spec.kind, "")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


__all__ = ["export_dmn", "feel_cell"]
