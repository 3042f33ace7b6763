"""Decision tables: the policies analysts keep in spreadsheets, compiled to ordinary rules.

A table names its input columns (fact fields), its output columns (the fields of one asserted fact
type, or the payload keys of ``decide``/``escalate``) and rows of cells::

    tables:
      - name: risk-tier
        hit: unique                       # first | unique | priority | collect
        inputs: [claim.amount, claim.customer_tier]
        outputs: [risk.level]             # or [decide.route, decide.reason]
        rows:
          - [">= 50000",        "-",      high]
          - ["[1000..50000)",   gold,     low]
          - ["[1000..50000)",   standard, medium]
          - ["< 1000",          "-",      low]

Input cells: ``-`` (any), a value (``gold``, ``"gold"``, ``5000``, ``true``), a comparison (``> 50000``),
an interval (``[1000..5000)``, brackets closed, parentheses open), a list (``gold, silver``) or
``not`` before a value or list. Each row becomes a rule named ``TABLE#N`` (N counts from 1), so the
trace names the row. Hit policies:

- ``unique``: rows may not overlap (a compile error names both rows); every matching row fires.
- ``first``: the first matching row in written order fires (a row's rule excludes earlier rows).
- ``priority``: the matching row whose first output value ranks highest fires; the ranking is the
  table's ``ranking:`` list or, for an enum output, the enum's order; ties go to the earlier row.
- ``collect``: every matching row fires; only for tables that assert facts.

The analysis is exact over the cells: each column's domain is cut into atoms at every value a cell
mentions, and rows are compared atom by atom (gaps, overlaps and unreachable rows).

This module configures a table (hit policy, aggregate), reads its columns and outputs, and builds the
rules a table needs besides its rows'. The rest lives beside it, and its names are importable from here
as before: table_cells.py (cells, parsed and written back as conditions), table_model.py (columns, rows,
the table, its index, matcher and precedence), table_checks.py (overlaps, gaps, unreachable rows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from engine.errors import BatonError
from engine.language.check import MISSING, Eval, bindings_of, check_value
from engine.language.expr import ExprError, parse
from engine.language.table_cells import (
    ANY,
    Cell,
    Interval,
    as_number,
    cell_condition,
    clock_text,
    literal,
    number_text,
    parse_cell,
    parse_number,
    quote,
)
from engine.language.table_checks import (
    MAX_ATOM_COMBINATIONS,
    MAX_GAPS_SHOWN,
    MAX_OVERLAPS_SHOWN,
    TABLE_ERRORS,
    Atom,
    analyse_table,
    atoms,
)
from engine.language.table_model import (
    MULTI_HIT,
    ROW_FIELD,
    Column,
    Matcher,
    Precedence,
    Row,
    Table,
    TableConflict,
    TableIndex,
    overlaps,
)
from engine.language.types import FactType, FieldSpec

if TYPE_CHECKING:
    from engine.model import Rule

HIT_POLICIES = ("unique", "any", "first", "priority", "collect", "rule_order", "output_order")
AGGREGATES = ("sum", "count", "min", "max")  # collect + aggregate: DMN's C+, C#, C<, C>
PROPOSALS = ("decide", "escalate")


def configure(table: Table, aggregate: object) -> list[BatonError]:
    """What the loader checks of a table's hit policy beyond its shape: ``aggregate:`` (collect only, one
    output, a number for sum/min/max) and multi-hit tables that would decide."""
    out: list[BatonError] = []
    if table.hit in MULTI_HIT and table.head in PROPOSALS:
        out.append(BatonError("bad_value", f"table '{table.name}': hit: {table.hit} asserts a fact per matched row; "
                              f"it cannot {table.head}", table.where, "assert a fact per row, or use hit: first"))
    if aggregate is None:
        types = table.outputs[0].types if table.outputs else None
        own = types.get(table.head) if types is not None else None
        spec = own.fields.get(ROW_FIELD) if own is not None else None
        if table.hit in MULTI_HIT and spec is not None and spec.kind != "int":
            out.append(BatonError("bad_value", f"table '{table.name}': hit: {table.hit} gives each fact the built-in "
                                  f"int field '{ROW_FIELD}', but {table.head}.{ROW_FIELD} is declared {spec.kind}",
                                  table.where, f"rename {table.head}.{ROW_FIELD}"))
        return out
    if table.hit != "collect" or aggregate not in AGGREGATES:
        out.append(BatonError("bad_value", f"table '{table.name}': aggregate: is one of {', '.join(AGGREGATES)}, "
                              "with hit: collect", table.where))
        return out
    if len(table.outputs) != 1 or table.head in PROPOSALS:
        out.append(BatonError("bad_value", f"table '{table.name}': aggregate: {aggregate} needs exactly one output "
                              "field of an asserted fact type", table.where))
        return out
    spec = table.outputs[0].spec
    if aggregate != "count" and (spec is None or spec.scalar_kind != "number"):
        out.append(BatonError("type_mismatch", f"table '{table.name}': aggregate: {aggregate} needs a number "
                              f"output; {table.outputs[0].ref} is not", table.where))
    if aggregate == "count" and (spec is None or spec.kind not in ("number", "int")):
        out.append(BatonError("type_mismatch", f"table '{table.name}': aggregate: count needs a number output; "
                              f"{table.outputs[0].ref} is not", table.where))
    for row in table.rows:
        v = row.outputs[0]
        if aggregate != "count" and (isinstance(v, bool) or not isinstance(v, (int, float))):
            out.append(BatonError("bad_value", f"table '{table.name}' row {row.number}: aggregate: {aggregate} "
                                  "adds up literal numbers", row.where))
            break
    table.aggregate = str(aggregate)
    return out


def add_row_fields(doc: object, types: Mapping[str, FactType]) -> None:
    """The built-in int field ``row`` on the fact types that multi-hit tables assert (before rules are
    checked, so a rule may read ``flag.row``)."""
    from engine.language.types import build_validator

    tables = doc.get("tables") if isinstance(doc, dict) else None
    for node in tables if isinstance(tables, list) else []:
        if not isinstance(node, dict) or node.get("hit") not in MULTI_HIT or node.get("aggregate") is not None:
            continue
        outputs = node.get("outputs")
        head = outputs[0].split(".")[0] if isinstance(outputs, list) and outputs and isinstance(outputs[0], str) else ""
        ft = types.get(head)
        if ft is None or ft.builtin or ROW_FIELD in ft.fields:
            continue
        ft.fields[ROW_FIELD] = FieldSpec(ROW_FIELD, "int", optional=True)
        ft.validate = build_validator(ft)


def aggregate_value(table: Table) -> Eval:
    """A collect table's aggregate over the rows that match the facts the rule matched."""
    matcher = table.matcher()
    how = table.aggregate

    def run(env: Mapping[str, Mapping[str, object]], wm: object) -> object:
        found = [matcher.index.rows[k].outputs[0] for k in matcher.rows(env, wm)]
        if how == "count":
            return len(found)
        numbers = [float(v) if isinstance(v, float) else v for v in found if isinstance(v, (int, float))]
        if not numbers:
            return MISSING
        return sum(numbers) if how == "sum" else min(numbers) if how == "min" else max(numbers)

    return run


def parse_output(value: object, column: Column) -> object:
    """An output cell: ``-`` is absent; text from a CSV becomes the field's kind (the fact is validated
    whole afterwards)."""
    if value is None or (isinstance(value, str) and value.strip() == "-"):
        return None
    if column.spec is None or not isinstance(value, str):
        return value
    kind = column.spec.scalar_kind
    if kind == "number":
        number = parse_number(value)
        return value if number is None else number
    if kind == "bool" and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


_KINDS = {"number": "number", "str": "str", "bool": "bool", "date": "date", "datetime": "datetime"}


def column_ref(text: object, types: Mapping[str, FactType], allowed_heads: tuple[str, ...] = ()) -> Column:
    """An input or output column: ``TYPE.field``, a payload key ``decide.KEY``; for inputs also ``=expr`` or
    a definition's name (an expression input, typed by its expression)."""
    if isinstance(text, str) and not allowed_heads and (text.strip().startswith("=") or "." not in text):
        return _expression_column(text, types)
    if not isinstance(text, str) or text.count(".") != 1:
        raise ValueError(f"{text!r}: a column is TYPE.field, e.g. claim.amount")
    head, fname = text.split(".")
    if head in allowed_heads:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", fname):
            raise ValueError(f"{text!r}: a payload key is letters, digits and _")
        return Column(text, head, fname, None)
    ft = types.get(head)
    if ft is None:
        raise ValueError(f"{text!r}: unknown fact type '{head}'")
    spec = ft.fields.get(fname)
    if spec is None:
        raise ValueError(f"{text!r}: {head} has no field '{fname}'")
    return Column(text, head, fname, spec, types=types)


def _expression_column(text: str, types: Mapping[str, FactType]) -> Column:
    body = text.strip()[1:].strip() if text.strip().startswith("=") else text.strip()
    if not body:
        raise ValueError(f"{text!r}: an expression input is =EXPRESSION, e.g. =quote.value / 1000")
    try:
        node = parse(body)
        ty, value = check_value(node, types, {}, None)
    except ExprError as e:
        raise ValueError(f"{text!r}: {e.message}") from None
    if ty.kind not in _KINDS:
        raise ValueError(f"{text!r} is {ty}; a table column tests single values")
    needs = tuple(dict.fromkeys(bindings_of(node, {}).values()))
    if not needs:
        raise ValueError(f"{text!r} reads no fact; a table input needs a fact to test")
    kind = "enum" if ty.kind == "str" and ty.enum else _KINDS[ty.kind]
    spec = FieldSpec(text.strip(), kind, enum=ty.enum if kind == "enum" else ())
    return Column(text.strip(), "", "", spec, expr=body, needs=needs, types=types, value=value)


def route_inputs(table: Table, types: dict[str, FactType], index: int) -> Rule | None:
    """For a table with expression inputs that all read one fact type, and literal cells and outputs: the
    rule ``TABLE#inputs`` that computes the inputs once per fact into a fact type of the table's own, whose
    fields the rows then test as literals - so the index routes a fact to the rows its values select instead
    of every row running its guard (so the cost per fact grows with the rows selected, not the table).
    None when the table does not qualify (its rows then compute the expressions in their guards)."""
    from engine.language.check import analyse
    from engine.model import Rule, Step

    if not any(c.expr for c in table.inputs) or table.when or table.has_expressions or table.aggregate:
        return None
    heads = {t for c in table.inputs for t in ((c.head,) if c.head else c.needs)}
    if len(heads) != 1 or any(isinstance(v, str) and v.startswith("=") for r in table.rows for v in r.outputs):
        return None
    (head,) = heads
    name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", table.name) + "_inputs"
    while name in types:
        name += "_"
    fields = {}
    computed: list[tuple[tuple[str, ...], str, Eval]] = []
    for k, col in enumerate(table.inputs):
        assert col.spec is not None
        kind = col.spec.kind if col.spec.kind != "enum" else "str"
        fields[f"c{k}"] = FieldSpec(f"c{k}", kind, optional=True)
        text = f"={col.expr}" if col.expr else f"={col.ref}"
        value = col.value if col.value is not None else check_value(parse(col.ref), types, {}, None)[1]
        computed.append(((f"c{k}",), text, value))
    types[name] = FactType(name, fields, table.where, builtin=True)
    table.routed = name
    when = f"exists {head}"
    step = Step("assert", payload={}, fact_type=name, computed=computed)
    return Rule(f"{table.name}#inputs", index, table.priority, when, analyse(parse(when), types), [step], table.where)


def table_coverage(tables: Sequence[Table], fired: set[str]) -> list[tuple[Table, int, list[Row]]]:
    """Per table: how many of its rows fired in any test, and the rows that never did."""
    out = []
    for t in tables:
        never = [r for r in t.rows if t.rule_name(r) not in fired]
        out.append((t, len(t.rows) - len(never), never))
    return out


def table_rule_names(tables: Sequence[Table]) -> set[str]:
    """The rules tables compile to: rows, and each table's own (TABLE#inputs, TABLE#sum ...)."""
    return {t.rule_name(r) for t in tables for r in t.rows} | {
        f"{t.name}#{x}" for t in tables for x in ("inputs", *AGGREGATES)}


def aggregate_rule(table: Table, types: Mapping[str, FactType], index: int) -> Rule:
    """The rule that asserts a collect table's aggregate once its rows have fired: it is written after them,
    at the table's priority, so it fires after the last matched row of the same facts."""
    from engine.language.check import analyse
    from engine.model import Rule, Step

    parts = [f"exists {t}" for t in table.input_types()]
    if table.when:
        parts.append(f"({table.when})")
    when = " and ".join(parts)
    col = table.outputs[0]
    step = Step("assert", payload={}, fact_type=table.head,
                computed=[((col.field,), f"={table.aggregate}({table.name} rows)", aggregate_value(table))])
    guard = None if table.aggregate == "count" else Precedence(table, table.index(), -1, mode="some")
    return Rule(f"{table.name}#{table.aggregate}", index, table.priority, when, analyse(parse(when), types), [step],
                table.where, guard)


__all__ = ["AGGREGATES", "ANY", "HIT_POLICIES", "MAX_ATOM_COMBINATIONS", "MAX_GAPS_SHOWN", "MAX_OVERLAPS_SHOWN",
           "MULTI_HIT", "PROPOSALS", "ROW_FIELD", "TABLE_ERRORS", "Atom", "Cell", "Column", "Interval", "Matcher",
           "Precedence", "Row", "Table", "TableConflict", "TableIndex", "add_row_fields", "aggregate_rule",
           "analyse_table", "as_number", "atoms", "cell_condition", "clock_text", "column_ref", "configure", "literal",
           "number_text", "overlaps", "parse_cell", "parse_number", "parse_output", "quote", "route_inputs",
           "table_coverage", "table_rule_names"]
