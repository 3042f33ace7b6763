"""tables: - decision tables: columns, rows and hit policy, each row checked and turned into an
ordinary rule ``TABLE#N``."""

from __future__ import annotations

import re
from typing import Any

from engine.errors import BatonError, Where
from engine.language.check import Condition, analyse, suggest
from engine.language.expr import ExprError, parse
from engine.language.gaps import gap_text
from engine.language.names import BROKEN
from engine.language.sections.base import LoaderBase
from engine.language.sections.rules import computed_value, fact_with_computed, spells_a_field
from engine.language.shape import RULESET, TABLE, TABLE_ENTRY, TABLE_NAME
from engine.language.source import plain
from engine.language.tables import (
    HIT_POLICIES,
    PROPOSALS,
    TABLE_ERRORS,
    Column,
    Row,
    Table,
    aggregate_rule,
    analyse_table,
    column_ref,
    configure,
    parse_cell,
    parse_output,
    route_inputs,
)
from engine.language.types import BUILTIN_TYPES, FactType
from engine.model import Rule, Step

NAME_TABLE = re.compile(TABLE_NAME + r"\Z")
_TOKEN_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")


class TablesLoader(LoaderBase):
    """tables:, each row an ordinary rule."""

    def load_tables(self, doc: Any, types: dict[str, FactType], rules: list[Rule]) -> list[Table]:
        """Each table row becomes an ordinary rule ``TABLE#N`` appended to ``rules``."""
        node = self.container(doc, "tables", RULESET.keys["tables"])
        if node is None:
            return []
        names = {r.name for r in rules}
        out: list[Table] = []
        for i in range(len(node)):
            table = self.load_table(node, i, types, names)
            if table is None:
                continue
            out.append(table)
            routing = route_inputs(table, types, len(rules))  # expression inputs computed once per fact
            if routing is not None:
                rules.append(routing)
                names.add(routing.name)
            for row, when in table.rules_text():
                rule = self.table_rule(table, row, when, types, len(rules))
                if rule is not None:
                    rules.append(rule)
                    names.add(rule.name)
            if table.aggregate:  # collect + aggregate: one fact after the matched rows
                rules.append(aggregate_rule(table, types, len(rules)))
                names.add(rules[-1].name)
        return out

    def load_table(self, parent: Any, i: int, types: dict[str, FactType], names: set[str]) -> Table | None:
        named = self.named_entry(parent, i, TABLE_ENTRY, TABLE)
        if named is None:
            return None
        tnode, where, name = named
        if any(n == name or n.startswith(f"{name}#") for n in names):
            self.error("duplicate_rule", f"'{name}' is already the name of a rule or table", self.pos.value(tnode,
                                                                                                          "name"))
            return None
        hit = self.take(tnode, TABLE, "hit", invalid=None, hint=suggest(str(tnode.get("hit")), list(HIT_POLICIES)))
        if hit is None:
            return None
        priority = self.take(tnode, TABLE, "priority")
        when = self.take(tnode, TABLE, "when", invalid=None)
        if when is None:
            return None
        if when:
            self.current = f"table '{name}'"
            try:
                analyse(parse(when), types)
            except ExprError as e:
                self.expr_error(e, self.pos.text_start(tnode, "when"), when)
                return None
        columns = self.table_columns(tnode, name, hit, where, types)
        if columns is None:
            return None
        inputs, outputs = columns
        rows = self.table_rows(tnode, name, inputs, outputs, where, types)
        if rows is None:
            return None
        ranking = self.table_ranking(tnode, name, hit, outputs, rows, where)
        if ranking is None or len(rows) != len(tnode["rows"]):
            return None
        return self.checked_table(Table(str(name), str(hit), priority, when, inputs, outputs, rows, ranking, where,
                                        str(tnode.get("description") or "")), tnode)

    def table_columns(self, tnode: Any, name: str, hit: str, where: Where, types: dict[str, FactType]
                      ) -> tuple[list[Column], list[Column]] | None:
        """A table's inputs and outputs (None: an error, reported)."""
        inputs: list[Column] = []
        outputs: list[Column] = []
        for key, heads, sink in (("inputs", (), inputs), ("outputs", (*PROPOSALS,), outputs)):
            if not self.require(tnode, TABLE, f"table '{name}'", where, key):
                return None
            cols = tnode[key]
            for k, text in enumerate(cols):
                try:
                    col = column_ref(text, types, heads)
                except ValueError as e:
                    self.error("unknown_field" if "has no field" in str(e) else "unknown_fact_type"
                               if "unknown fact type" in str(e) else "bad_value", str(e), self.pos.value(cols, k))
                    return None
                if key == "inputs" and col.spec is not None and col.spec.kind == "list":
                    self.error("type_mismatch", f"{col.ref} is a list; a table column tests single values",
                               self.pos.value(cols, k))
                    return None
                sink.append(col)
        return (inputs, outputs) if self.table_head_ok(tnode, name, hit, outputs) else None

    def table_head_ok(self, tnode: Any, name: str, hit: str, outputs: list[Column]) -> bool:
        """The outputs are fields of one fact type (not a built-in one), or all decide.KEY / escalate.KEY."""
        if len({c.head for c in outputs}) != 1:
            self.error("bad_value", f"table '{name}': outputs must all be fields of one fact type, or all "
                       "decide.KEY / escalate.KEY", self.pos.value(tnode, "outputs"))
            return False
        head = outputs[0].head
        if head not in PROPOSALS and (head in BUILTIN_TYPES):
            self.error("bad_value", f"table '{name}' cannot assert the built-in '{head}'",
                       self.pos.value(tnode, "outputs"))
            return False
        if hit == "collect" and head in PROPOSALS:
            self.error("bad_value", f"table '{name}': hit: collect gathers facts; it cannot {head}",
                       self.pos.value(tnode, "hit"), "assert a fact per row, or use hit: first / priority")
            return False
        if head == "escalate" and not any(c.field == "queue" for c in outputs):
            self.error("missing_key", f"table '{name}': escalate outputs need an escalate.queue column",
                       self.pos.value(tnode, "outputs"))
            return False
        return True

    def table_rows(self, tnode: Any, name: str, inputs: list[Column], outputs: list[Column], where: Where,
                   types: dict[str, FactType]) -> list[Row] | None:
        """The rows whose cells parse (None: no rows: at all); a row with an error is reported and left out."""
        if not self.require(tnode, TABLE, f"table '{name}'", where, "rows"):
            return None
        rows_node = tnode["rows"]
        head = outputs[0].head
        rows: list[Row] = []
        width = len(inputs) + len(outputs)
        for j, raw in enumerate(rows_node):
            rwhere = self.pos.value(rows_node, j)
            if not isinstance(raw, list) or len(raw) != width:
                self.error("bad_shape", f"table '{name}' row {j + 1}: {width} cells expected ({len(inputs)} inputs, "
                           f"{len(outputs)} outputs), found {len(raw) if isinstance(raw, list) else 'no list'}",
                           rwhere)
                continue
            cells = self.row_cells(name, j, raw, inputs)
            values = [parse_output(plain(raw[len(inputs) + k]), col) for k, col in enumerate(outputs)]
            if cells is None:
                continue
            row = Row(j + 1, cells, values, rwhere)
            self.raw_rows[(str(name), j + 1)] = raw
            if head not in PROPOSALS:
                try:  # =expr cells are checked with the row's condition (table_rule); the rest as a fact now
                    fact_with_computed(types[head], plain(self.payload(outputs, values)), f"{name}#{j + 1}")
                except BatonError as e:
                    self.error(e.code, f"table '{name}' row {j + 1}: {e.message}", rwhere)
                    continue
            rows.append(row)
        return rows

    def row_cells(self, name: str, j: int, raw: list[Any], inputs: list[Column]) -> list[Any] | None:
        """A row's input cells, parsed (None: one or more did not parse, each reported)."""
        ok = True
        cells = []
        for k, col in enumerate(inputs):
            assert col.spec is not None
            try:
                cells.append(parse_cell(plain(raw[k]), col.spec, col.ref, col.known))
            except ValueError as e:
                self.error("bad_cell", f"table '{name}' row {j + 1}: {e}", self.pos.value(raw, k),
                           "cells: -, a value, > 5000, [1000..5000), < 18, >= 60, gold, silver, not(gold), "
                           "> applicant.min_income")
                ok = False
        return cells if ok else None

    def table_ranking(self, tnode: Any, name: str, hit: str, outputs: list[Column], rows: list[Row],
                      where: Where) -> list[object] | None:
        """hit: priority's ranking of the first output's values, highest first (None: an error, reported)."""
        if hit != "priority":
            return []
        first = outputs[0]
        raw_rank = tnode.get("ranking")
        if isinstance(raw_rank, list) and raw_rank:
            ranking = list(plain(raw_rank))
        elif first.spec is not None and first.spec.enum:
            ranking = list(first.spec.enum)
        else:
            self.error("missing_key", f"table '{name}': hit: priority needs 'ranking:' (the values of "
                       f"{first.ref}, highest first)", where, "or make the first output an enum field")
            return None
        unranked = sorted({str(r.outputs[0]) for r in rows if r.outputs[0] not in ranking})
        if unranked:
            self.error("bad_value", f"table '{name}': ranking does not list {', '.join(unranked)}", where)
            return None
        return ranking

    def checked_table(self, table: Table, tnode: Any) -> Table | None:
        """The table's aggregate set, and its gaps, overlaps and other problems found (None: an error)."""
        settings = configure(table, tnode.get("aggregate"))
        if settings:
            self.errors.extend(settings)
            return None
        for problem in analyse_table(table):
            if problem.code == "table_gap":  # the gaps merged into intervals and lists, as cells write them
                merged = gap_text(table)
                problem.message = f"table '{table.name}': no row covers {merged}" if merged else problem.message
            (self.errors if problem.code in TABLE_ERRORS else self.warnings).append(problem)
        return table

    @staticmethod
    def payload(outputs: list[Column], values: list[object]) -> dict[str, object]:
        return {col.field: v for col, v in zip(outputs, values, strict=True) if v is not None}

    def table_rule(self, table: Table, row: Row, when: str, types: dict[str, FactType], index: int) -> Rule | None:
        try:
            condition = analyse(parse(when), types)
        except ExprError as e:
            if e.code == BROKEN or self.vocab.locate(e.offset) is not None:  # a definition a cell uses
                self.current = f"table '{table.name}' row {row.number}"
                self.expr_error(e, row.where, when)
                return None
            self.error(e.code, f"table '{table.name}' row {row.number}: {e.message} in: {when}",
                       self.cell_where(table, row, when, e.offset), e.hint)
            return None
        payload = dict(table.payload(row))
        fact = types.get(table.head) if table.head not in PROPOSALS else None
        computed = self.table_values(table, row, payload, types, condition, fact)
        if computed is None:
            return None
        if table.head in PROPOSALS:
            reason = payload.pop("reason", "")
            step = Step(table.head, payload=payload, reason=str(reason or ""), computed=computed)
        else:
            step = Step("assert", payload=fact_with_computed(types[table.head], payload, table.rule_name(row)),
                        fact_type=table.head, computed=computed)
        return Rule(table.rule_name(row), index, table.priority, when, condition, [] if table.aggregate else [step],
                    row.where, table.precedence(row))

    def cell_where(self, table: Table, row: Row, when: str, offset: int) -> Where:
        """Where, in the input cell that wrote it, the token at ``offset`` of a row's condition stands (the row's
        place when no cell holds it once)."""
        raw = self.raw_rows.get((table.name, row.number))
        m = _TOKEN_AT.match(when, max(offset, 0))
        if not isinstance(raw, list) or m is None:
            return row.where
        word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(m.group())}(?![A-Za-z0-9_])")
        found = [(k, hit.start()) for k in range(min(len(table.inputs), len(raw))) if isinstance(raw[k], str)
                 for hit in word.finditer(raw[k])]
        if len(found) != 1:
            return row.where
        k, at = found[0]
        return self.pos.text_start(raw, k).shifted(raw[k], at)

    def table_values(self, table: Table, row: Row, payload: dict[str, object], types: dict[str, FactType],
                     condition: Condition, fact: FactType | None) -> list[tuple[tuple[str, ...], str, Any]] | None:
        """A row's ``=expr`` output cells, checked over the facts its condition matches (None: an error)."""
        out: list[tuple[tuple[str, ...], str, Any]] = []
        ok = True
        for key, value in payload.items():
            if not isinstance(value, str):
                continue
            where = f"table '{table.name}' row {row.number}, output {table.head}.{key}"
            if value.startswith("="):
                try:
                    out.append(((key,), value, computed_value(value, key, types, condition, fact)))
                except ExprError as e:
                    if e.code == BROKEN or self.vocab.locate(e.offset) is not None:  # a definition it uses
                        self.current = f"table '{table.name}' row {row.number}"
                        self.expr_error(e, row.where, value)
                        ok = False
                        continue
                    raw = self.raw_rows.get((table.name, row.number))
                    k = len(table.inputs) + next(i for i, c in enumerate(table.outputs) if c.field == key)
                    at = self.pos.text_start(raw, k).shifted(value, max(e.offset, 0) + 1) if isinstance(
                        raw, list) and k < len(raw) and raw[k] == value else row.where
                    self.error(e.code, f"{where}: {e.message} (in {value})", at, e.hint)
                    ok = False
            elif spells_a_field(value, types, condition):
                self.error("ambiguous_value", f"{where}: '{value.strip()}' spells the field {value.strip()}, but "
                           "it is written as text and would be sent as that text", row.where,
                           f"write ={value.strip()} for the field's value")
                ok = False
        return out if ok else None
