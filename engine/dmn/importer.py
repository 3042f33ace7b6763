"""A DMN model as a Baton ruleset (YAML text that compiles), and the map from DMN names to Baton's.

- Input data of simple types are fields of one fact type, ``input`` (each optional: DMN inputs may be
  null); an input whose type is a structure is a fact type of its own, its components the fields.
  Allowed values of strings become enums; collections become lists.
- Each decision is a fact type holding its result: ``value`` (one output) or one field per output. A
  decision table becomes a Baton table asserting it, with the DMN hit policy (RULESETS.md item 19); a
  literal expression becomes a rule asserting ``value = expression``; a boolean literal expression becomes
  two rules (true when..., false when...), so FEEL's three-valued ``and``/``or``/``not`` over null inputs
  gives null exactly as DMN does. Default outputs are a rule of lower priority that asserts the default
  when no row matched. A decision that reads another's result joins that decision's fact, so the
  requirements graph is the order in which facts are derived.
- Business knowledge models with a literal expression body are inlined at each invocation.
- Anything else raises ``DmnError`` naming the element's id and name and the construct (``partial=True``
  leaves such decisions out and lists them instead: how ``baton dmn test`` reports what it could not run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.dmn.feel import (
    KEYWORDS,
    PREDICATES,
    Binding,
    Node,
    Translator,
    Unsupported,
    _number_text,
    _wrap,
    cell_text,
    desugar,
    expand_in,
    is_null,
    parse_expression,
    parse_unary_tests,
    split_if,
    tokenize,
)
from engine.dmn.model import (
    Bkm,
    Column,
    Decision,
    DecisionTable,
    DmnError,
    ItemDef,
    Model,
    TableRule,
    read_model,
)

INPUT = "input"
BASE_TYPES = {"string": "str", "number": "number", "boolean": "bool", "date": "date", "date and time": "datetime",
              "dateTime": "datetime", "Any": "any", "any": "any",
              # the Java type names some modelers (Camunda) write
              "integer": "number", "long": "number", "double": "number", "int": "number", "decimal": "number"}
UNSUPPORTED_TYPES = {"time": "FEEL time of day", "duration": "FEEL duration",
                     "days and time duration": "FEEL duration", "dayTimeDuration": "FEEL duration",
                     "years and months duration": "FEEL duration", "yearMonthDuration": "FEEL duration",
                     "context": "FEEL context", "function": "FEEL function"}
HIT = {"UNIQUE": "unique", "ANY": "any", "FIRST": "first", "PRIORITY": "priority", "COLLECT": "collect",
       "RULE ORDER": "rule_order", "OUTPUT ORDER": "output_order"}
STRING_ARGUMENT = ("upper case", "lower case", "string length", "starts with", "ends with", "matches", "contains",
                   "substring", "substring before", "substring after")
MAX_BRANCHES = 64  # rules one literal expression's if-then-else branches may become
AGGREGATION = {"SUM": "sum", "COUNT": "count", "MIN": "min", "MAX": "max"}
YAML_KIND = {"str": "str", "number": "number", "bool": "bool", "date": "date", "datetime": "datetime"}


@dataclass(slots=True)
class Kind:
    """A resolved DMN type: a scalar kind, an enum, a list of a kind, or a record of components."""

    kind: str  # str number bool date datetime any list record
    enum: tuple[str, ...] = ()
    item: Kind | None = None
    components: list[tuple[str, Kind]] = field(default_factory=list)
    bounds: tuple[str, str] = ("", "")  # a number's allowed values as an inclusive min and max ("": none)


@dataclass(slots=True)
class DecisionMap:
    """Where a decision's result is in Baton: its fact type and fields (field -> DMN component name)."""

    name: str
    fact: str
    fields: dict[str, str]  # Baton field -> DMN output/component name ("" for the single output 'value')
    multi: bool  # a list of results (collect, rule order, output order without aggregation)
    id: str = ""


@dataclass(slots=True)
class Imported:
    yaml: str
    decisions: dict[str, DecisionMap]  # DMN decision name -> where its result is
    inputs: dict[str, tuple[str, str, Kind]]  # DMN input name -> (fact type, field or "" for a record, kind)
    components: dict[str, dict[str, str]]  # record input name -> DMN component -> field
    skipped: dict[str, str] = field(default_factory=dict)  # decision name -> why it was left out (partial)
    notes: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)  # inputs left out (partial)
    # Baton table name -> (DMN decision, hit policy, the DMN rule ids of its rows)
    tables: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)

    def explain(self, message: str) -> str:
        """A compile message about an imported table's rows, in the model's terms (decision, rule ids)."""
        m = re.search(r"table '([^']+)'(?: row (\d+)|: rows (\d+) and (\d+))", message)
        if not m or m.group(1) not in self.tables:
            return ""
        decision, hit, ids = self.tables[m.group(1)]
        rows = [int(x) for x in m.groups()[1:] if x]
        named = [ids[r - 1] for r in rows if 0 < r <= len(ids)]
        return f"DMN decision {decision!r} ({hit}): rule{'s' if len(named) > 1 else ''} {' and '.join(named)}"


def slug(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z]+", "_", name.strip()).strip("_").lower()
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    if not s:
        s = "x"
    if s[0].isdigit():
        s = "n_" + s
    return s


def _camel(name: str) -> str:
    """camelCase and spaces to snake_case: termMonths -> term_months, Full Name -> full_name."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return slug(s)


class _Names:
    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken: set[str] = set(taken or ())

    def new(self, name: str) -> str:
        base = _camel(name)
        if base in ("decision", "failure", "timeout", "document", "row", "id", "sid", "t", INPUT):
            base = f"{base}_"
        out, k = base, 2
        while out in self.taken:
            out = f"{base}_{k}"
            k += 1
        self.taken.add(out)
        return out


def _q(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


class Importer:
    def __init__(self, model: Model, partial: bool = False) -> None:
        self.m = model
        self.partial = partial
        self.type_names = _Names({INPUT})
        self.input_fields = _Names()
        self.scope: dict[str, Binding] = {}
        self.inputs: dict[str, tuple[str, str, Kind]] = {}
        self.components: dict[str, dict[str, str]] = {}
        self.facts: dict[str, list[str]] = {INPUT: []}  # fact type -> YAML lines of its fields
        self.decisions: dict[str, DecisionMap] = {}
        self.rules: list[str] = []
        self.tables: list[str] = []
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.table_rules: dict[str, tuple[str, str, list[str]]] = {}
        self.dropped: set[str] = set()  # inputs left out (partial): a test's value for them is ignored
        self.read: set[str] = set()  # the facts of decisions another decision reads

    # -- types -------------------------------------------------------------------------------------
    def kind(self, type_ref: str, where: tuple[str, str], seen: frozenset[str] = frozenset()) -> Kind:
        ref = type_ref.split(":", 1)[-1] if ":" in type_ref and not type_ref.startswith("date") else type_ref
        if not ref:
            return Kind("any")
        if ref in BASE_TYPES:
            return Kind(BASE_TYPES[ref])
        if ref in UNSUPPORTED_TYPES:
            raise DmnError(f"type {ref!r} is not supported ({UNSUPPORTED_TYPES[ref]})", *where,
                           construct=UNSUPPORTED_TYPES[ref])
        item = self.m.items.get(ref)
        if item is None or ref in seen:
            raise DmnError(f"unknown or recursive type {ref!r}", *where, construct="itemDefinition")
        return self.item_kind(item, where, seen | {ref})

    def item_kind(self, item: ItemDef, where: tuple[str, str], seen: frozenset[str]) -> Kind:
        if item.components:
            comps = []
            for c in item.components:
                try:
                    comps.append((c.name, self.item_kind(c, where, seen)))
                except DmnError as e:
                    if not self.partial:
                        raise
                    comps.append((c.name, Kind("dropped", enum=(e.construct,))))
            base = Kind("record", components=comps)
        else:
            base = self.kind(item.type_ref, where, seen)
            if item.allowed:
                base = self.allowed(item, base, where)
        if item.collection:
            return Kind("list", item=base)
        return base

    def input_values(self, c: Column, text: str, kind: str, where: tuple[str, str]) -> None:
        """A table input's inputValues: a value outside them is an error in DMN, so they constrain the field
        the column reads (strings an enum, a number's interval its min/max), as allowed values do. On an
        input expression that is not a field, or a field already constrained otherwise, they are refused."""
        m = re.fullmatch(r"\(?([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\)?", text)
        if m is None or m.group(1) not in self.facts:
            raise DmnError(f"the input values {c.values!r} of the input {c.text!r}, which is not an input field",
                           *where, construct="input values")
        tname, fname = m.groups()
        k = self.allowed(ItemDef(f"input {c.text}", allowed=c.values), Kind(kind), where)
        lines = self.facts[tname]
        for n, line in enumerate(lines):
            if line.startswith(f"    {fname}: "):
                head, _, comment = line.partition("   # ")
                new = self.field_yaml(fname, k)
                if "enum:" in head or "min:" in head or "max:" in head:
                    if head.rstrip() != new:
                        raise DmnError(f"the input values {c.values!r} of the input {c.text!r} differ from the "
                                       f"field's own constraint ({head.strip()})", *where, construct="input values")
                    return
                lines[n] = new + (f"   # {comment}" if comment else "")
                return
        raise DmnError(f"the input values {c.values!r} of the input {c.text!r}: no field {tname}.{fname}", *where,
                       construct="input values")

    @staticmethod
    def allowed(item: ItemDef, base: Kind, where: tuple[str, str]) -> Kind:
        """Allowed values as Baton constrains a field: strings listed as an enum, a number's closed interval or
        ``>=``/``<=`` bound as its ``min``/``max``. A value outside them is an error in DMN and invalid input in
        Baton. Anything else (open bounds, several intervals, dates) is refused, not silently unchecked."""
        def refuse(why: str) -> DmnError:
            return DmnError(f"allowed values {item.allowed!r} of {item.name!r}: {why}", *where,
                            construct="allowed values")
        try:
            tests = parse_unary_tests(item.allowed)
        except Unsupported as e:
            raise refuse(str(e)) from None
        if tests.negated or tests.any:
            raise refuse("not(...) or '-' is not a constraint Baton's fields hold")
        if base.kind == "str":
            values = tuple(str(t.args[0].value) for t in tests.tests if t.kind == "eq" and t.args[0].kind == "str")
            if len(values) != len(tests.tests):
                raise refuse("only a list of strings becomes an enum")
            return Kind("str", enum=values)
        if base.kind == "number" and len(tests.tests) == 1:
            (t,) = tests.tests
            if t.kind == "eq" and t.args[0].kind == "range":
                t = t.args[0]
            bound = [a.value for a in t.args]
            if t.kind == "range" and all(a.kind == "num" for a in t.args) and t.extra == (True, True):
                return Kind("number", bounds=(str(bound[0]), str(bound[1])))
            if t.kind == "cmp" and t.args[0].kind == "num" and t.value in (">=", "<="):
                return Kind("number", bounds=(str(bound[0]), "") if t.value == ">=" else ("", str(bound[0])))
        raise refuse("a number's allowed values become a field's inclusive min and max only ([a..b], >= a, <= b)")

    @staticmethod
    def field_yaml(name: str, k: Kind, optional: bool = True) -> str:
        opt = ", optional: true" if optional else ""
        if k.kind == "list":
            item = k.item or Kind("any")
            if item.kind in ("record", "list", "any"):
                raise Unsupported("list of structures or of values of any type", name)
            items = f"{{enum: [{', '.join(_q(v) for v in item.enum)}]}}" if item.enum else YAML_KIND[item.kind]
            return f"    {name}: {{type: list, items: {items}{opt}}}"
        if k.enum:
            return f"    {name}: {{enum: [{', '.join(_q(v) for v in k.enum)}]{opt}}}"
        if k.kind not in YAML_KIND:
            raise Unsupported(f"a value of type {k.kind}", name)
        lo, hi = k.bounds
        bounds = (f", min: {_number_text(lo)}" if lo else "") + (f", max: {_number_text(hi)}" if hi else "")
        return f"    {name}: {{type: {YAML_KIND[k.kind]}{bounds}{opt}}}"

    # -- inputs ------------------------------------------------------------------------------------
    def load_inputs(self) -> None:
        for i in self.m.inputs:
            where = (i.id, i.name)
            try:
                k = self.kind(i.type_ref, where)
            except DmnError as e:
                if not self.partial:
                    raise
                self.scope[i.name] = Binding(kind="dropped", ref=e.construct)
                self.dropped.add(i.name)
                self.notes.append(f"inputData {i.name!r} left out: {e.message}")
                continue
            if k.kind == "any":
                raise DmnError("an input without a type (typeRef) cannot be typed in Baton", *where,
                               construct="untyped inputData")
            if k.kind == "record":
                tname = self.type_names.new(i.name)
                comps: dict[str, tuple[str, str]] = {}
                dropped: dict[str, str] = {}
                names = _Names()
                lines = []
                for cname, ck in k.components:
                    if ck.kind == "dropped":
                        dropped[cname] = ck.enum[0]
                        self.notes.append(f"inputData {i.name!r}: component {cname!r} left out ({ck.enum[0]})")
                        continue
                    fname = names.new(cname)
                    if ck.kind == "record":
                        raise DmnError(f"component {cname!r} is itself a structure", *where,
                                       construct="nested structure")
                    try:
                        lines.append(self.field_yaml(fname, ck))
                    except Unsupported as e:
                        raise DmnError(str(e), *where, construct=e.construct) from None
                    comps[cname] = (fname, ck.kind if ck.kind != "list" else "list")
                self.facts[tname] = [f"    # dmn: inputData {i.name!r} ({i.id})", *lines]
                self.scope[i.name] = Binding(tname, "record", comps, dropped=dropped)
                self.inputs[i.name] = (tname, "", k)
                self.components[i.name] = {c: f for c, (f, _) in comps.items()}
                continue
            fname = self.input_fields.new(i.name)
            try:
                self.facts[INPUT].append(self.field_yaml(fname, k) + f"   # dmn: inputData {i.name!r} ({i.id})")
            except Unsupported as e:
                raise DmnError(str(e), *where, construct=e.construct) from None
            self.scope[i.name] = Binding(f"{INPUT}.{fname}", k.kind, item=k.item.kind if k.item else "")
            self.inputs[i.name] = (INPUT, fname, k)

    def load_bkms(self) -> None:
        for b in self.m.bkms:
            body: Node | None = None
            if b.kind == "literal":
                try:
                    body = parse_expression(b.literal, [*self.scope, *(p for p, _ in b.params), *self.bkm_names()])
                except Unsupported as e:
                    body = None
                    self.notes.append(f"business knowledge model {b.name!r}: {e}")
            self.scope[b.name] = Binding(params=tuple(p for p, _ in b.params) or ("",), body=body)

    def bkm_names(self) -> list[str]:
        return [b.name for b in self.m.bkms]

    def names(self) -> list[str]:
        return [*self.scope, *(d.name for d in self.m.decisions)]

    # -- decisions ---------------------------------------------------------------------------------
    def order(self) -> list[Decision]:
        """Decisions in requirement order: what a decision reads comes first."""
        by_id = {d.id: d for d in self.m.decisions}
        out: list[Decision] = []
        state: dict[str, int] = {}

        def visit(d: Decision) -> None:
            if state.get(d.id) == 2:
                return
            if state.get(d.id) == 1:
                raise DmnError("the decision requirements have a cycle", d.id, d.name, construct="cycle")
            state[d.id] = 1
            for r in d.requires:
                if r in by_id:
                    visit(by_id[r])
            state[d.id] = 2
            out.append(d)

        for d in self.m.decisions:
            visit(d)
        return out

    def load_decisions(self) -> None:
        decisions = self.order()
        # every decision's name is in scope from the start (as a reference to its fact), so a use is resolved
        planned: dict[str, tuple[str, Kind, DecisionMap]] = {}
        for d in decisions:
            planned[d.name] = self.plan(d)
        for d in decisions:
            tname, k, dmap = planned[d.name]
            try:
                self.decision(d, tname, k, dmap)
            except (Unsupported, DmnError) as e:
                construct = e.construct if isinstance(e, (Unsupported, DmnError)) else ""
                err = e if isinstance(e, DmnError) else DmnError(str(e), d.id, d.name, construct)
                if not self.partial:
                    raise err from None
                self.skipped[d.name] = err.message if not construct or err.message.startswith(construct) else \
                    f"{construct}: {err.message}"
                self.scope.pop(d.name, None)
                self.decisions.pop(d.name, None)
                self.facts.pop(tname, None)

    def plan(self, d: Decision) -> tuple[str, Kind, DecisionMap]:
        where = (d.id, d.name)
        tname = self.type_names.new(d.name)
        called = self.called_table(d)
        table = called[0].table if called is not None else d.table if d.kind == "table" else None
        multi = table is not None and table.hit in ("COLLECT", "RULE ORDER", "OUTPUT ORDER") and not table.aggregation
        try:
            k = self.kind(d.type_ref, where)
        except DmnError as e:
            if not self.partial:
                raise
            k = Kind("any")
            self.skipped[d.name] = f"{e.construct}: {e.message}"
        if multi and k.kind == "list" and k.item is not None:
            k = k.item
        fields: dict[str, str] = {}
        comps: dict[str, tuple[str, str]] = {}
        if table is not None and len(table.outputs) > 1:
            names = _Names()
            ck = dict(k.components) if k.kind == "record" else {}
            for o in table.outputs:
                f = names.new(o.text)
                fields[f] = o.text
                comps[o.text] = (f, ck.get(o.text, Kind("any")).kind)
            binding = Binding(tname, "record", comps)
        elif k.kind == "record":
            names = _Names()
            for cname, ckind in k.components:
                f = names.new(cname)
                fields[f] = cname
                comps[cname] = (f, ckind.kind)
            binding = Binding(tname, "record", comps)
        else:
            fields["value"] = ""
            binding = Binding(f"{tname}.value", k.kind if not multi else "list")
        if multi:
            # a multi-hit decision is one fact per matched row: as a FEEL list, list() of them in row order
            binding = Binding(f"list({tname}.value)", "list") if "value" in fields else Binding(tname, "list", comps)
        self.scope[d.name] = binding
        dmap = DecisionMap(d.name, tname, fields, multi, d.id)
        self.decisions[d.name] = dmap
        return tname, k, dmap

    def called_table(self, d: Decision) -> tuple[Bkm, list[str]] | None:
        """A decision that only invokes a BKM whose body is a decision table (a boxed invocation, or a
        literal ``BKM(a, b)``): the BKM and the arguments' FEEL, in parameter order."""
        bkms = {b.name: b for b in self.m.bkms}
        if d.kind == "invocation" and d.invocation is not None:
            b = bkms.get(d.invocation.callee)
            if b is None or b.kind != "table":
                return None
            given = dict(d.invocation.bindings)
            return b, [given.get(p, "null") for p, _ in b.params]
        if d.kind == "literal":
            try:
                node = parse_expression(d.literal, [*self.names(), *self.bkm_names()])
            except Unsupported:
                return None
            if node.kind == "call" and isinstance(node.value, str) and node.value in bkms and \
                    bkms[node.value].kind == "table":
                return bkms[node.value], [_feel_of(d.literal, a) for a in node.args]
        return None

    def decision(self, d: Decision, tname: str, k: Kind, dmap: DecisionMap) -> None:
        where = (d.id, d.name)
        if d.name in self.skipped:
            raise DmnError(self.skipped.pop(d.name), *where)
        called = self.called_table(d)
        if called is not None:
            bkm, args = called
            if len(args) != len(bkm.params) or bkm.table is None:
                raise DmnError(f"{bkm.name} takes {len(bkm.params)} arguments", *where,
                               construct="business knowledge model invocation")
            used: set[str] = set()
            tr = self.translator(used)
            names = [*self.names(), *self.bkm_names()]
            params = {p: (f"({tr.write(parse_expression(a, names))})", tr.kind_of(parse_expression(a, names)))
                      for (p, _), a in zip(bkm.params, args, strict=True)}
            self.table(d, bkm.table, tname, k, dmap, params, used)
        elif d.kind == "invocation" and d.invocation is not None:
            call = f"{d.invocation.callee}(" + ", ".join(f"({v})" for _, v in self._ordered(d)) + ")"
            self.literal(Decision(d.id, d.name, d.type_ref, "literal", literal=call, requires=d.requires), tname, k)
        elif d.kind == "table":
            assert d.table is not None
            self.table(d, d.table, tname, k, dmap)
        elif d.kind == "literal":
            self.literal(d, tname, k)
        else:
            construct = {"context": "boxed context", "invocation": "boxed invocation", "relation": "relation",
                         "list": "boxed list", "functionDefinition": "function definition",
                         "conditional": "boxed conditional", "filter": "boxed filter", "for": "boxed for",
                         "every": "boxed every", "some": "boxed some", "none": "a decision without logic"}.get(
                             d.kind, d.kind)
            raise DmnError(f"{construct} is not imported", *where, construct=construct)

    def _ordered(self, d: Decision) -> list[tuple[str, str]]:
        """A boxed invocation's bindings in the BKM's parameter order (an unbound parameter is null)."""
        assert d.invocation is not None
        bkm = next((b for b in self.m.bkms if b.name == d.invocation.callee), None)
        if bkm is None:
            raise DmnError(f"invokes {d.invocation.callee!r}, which is no business knowledge model", d.id, d.name,
                           construct="boxed invocation")
        given = dict(d.invocation.bindings)
        return [(p, given.get(p, "null")) for p, _ in bkm.params]

    def translator(self, used: set[str]) -> Translator:
        return Translator(self.scope, on_name=used.add)

    def null_safe_negation(self, t: DecisionTable, j: int, feel: str, column: str, kind: str,
                           names: list[str]) -> str:
        """FEEL's ``null = "DE"`` is false, so a cell ``not("DE", "FR")`` (or ``!= "DE"``) matches a null input;
        Baton's negated cell matches nothing absent. Where every cell of the column tests equality with literals
        (or is ``-``), the column reads ``coalesce(field, SENTINEL)``, a value no cell names: then null matches
        exactly the negated cells, as in FEEL. Otherwise such a cell is refused."""
        parsed = [(r.id, r.inputs[j], parse_unary_tests(r.inputs[j], names)) for r in t.rules]
        negating = [(rid, text) for rid, text, p in parsed if not p.any and (
            p.negated or any(x.kind == "cmp" and x.value == "!=" for x in p.tests))]
        if not negating:
            return column
        literals: list[object] = []
        for _, _, p in parsed:
            for x in p.tests:
                value = x.args[0] if x.kind in ("eq", "cmp") else None
                if value is None or value.kind not in ("str", "num") or (
                        x.kind == "cmp" and x.value not in ("=", "!=")):
                    literals = []
                    break
                literals.append(value.value if value.kind == "str" else float(str(value.value)))
            else:
                continue
            break
        rid, text = negating[0]
        if not literals or kind not in ("str", "number") or column.startswith("="):
            # a negation of another input's value (0036's not(Complex.aString)), or a column with comparisons
            # too: imported as before, and said - a null input matches no such cell, where FEEL's may match
            self.notes.append(f"decision table {t.id}, rule {rid}: the cell {text!r} on {feel!r} matches nothing "
                              "when that input is null (FEEL: null = x is false, so its negation matches)")
            return column
        if kind == "str":
            sentinel = next(x for x in ("", "(null)", "(no value)") if x not in literals)
            return f"=coalesce({column}, {json.dumps(sentinel)})"
        big = max((abs(x) for x in literals if isinstance(x, float)), default=0.0)
        return f"=coalesce({column}, {_number_text(repr(-(big + 1)))})"

    def after_lists(self, used: set[str]) -> str:
        """``priority: -1`` for the rules of a decision that reads a multi-hit decision's list: that table's rows
        (priority 0) all fire first, so the list is whole when it is read once (at 0 the reader would fire after
        each row, asserting a result per partial list). Its default output rule is then at -2."""
        multi = any(self.decisions[n].multi for n in used if n in self.decisions)
        return "    priority: -1\n" if multi else ""

    def requirements(self, used: set[str], own: str) -> list[str]:
        """The fact types a decision's rules must find: the input (always), and each decision it reads."""
        out = [INPUT]
        for name in used:
            if name in self.decisions and self.decisions[name].fact != own:
                fact = self.decisions[name].fact
                self.read.add(fact)
                if fact not in out:
                    out.append(fact)
            elif name in self.inputs and self.inputs[name][0] not in out:
                out.append(self.inputs[name][0])
        return out

    def fact_fields(self, tname: str, d: Decision, k: Kind, dmap: DecisionMap, enums: dict[str, tuple[str, ...]],
                    kinds: dict[str, str]) -> None:
        lines = [f"    # dmn: decision {d.name!r} ({d.id})"]
        for f, comp in dmap.fields.items():
            kind = kinds.get(f) or "any"
            if kind == "any":
                raise Unsupported("an output whose type cannot be told", f"{d.name} {comp}".strip())
            lines.append(self.field_yaml(f, Kind(kind, enum=enums.get(f, ()))))
        self.facts[tname] = lines

    def literal(self, d: Decision, tname: str, k: Kind) -> None:
        used: set[str] = set()
        tr = self.translator(used)
        node = parse_expression(d.literal, [*self.names(), *self.bkm_names()])
        if k.kind == "record":
            raise Unsupported("a literal expression whose result is a structure", d.name)
        if is_null(node):  # FEEL: null, whatever the inputs - no rule asserts the decision's fact
            kind = k.kind if k.kind not in ("any", "list", "record") else "number"
            self.fact_fields(tname, d, k, self.decisions[d.name], {}, {"value": kind})
            self.rules.append(f"  # dmn: decision {d.name!r} ({d.id}) is always null: {_one_line(d.literal)}")
            return
        node = desugar(self.inline(node))  # BKM bodies in place (their ifs become branches); floor/ceiling
        branches = self.branches(node, tr, [])  # if-then-else: one rule per branch, under its conditions
        if len(branches) > MAX_BRANCHES:
            raise Unsupported("FEEL if-then-else", f"{len(branches)} branches (more than {MAX_BRANCHES} rules)")
        kinds = [] if k.kind != "any" else [  # not(...) is boolean; it is written only through truth()
            "bool" if leaf.kind == "call" and leaf.value == "not" else tr.kind_of(leaf)
            for _, leaf in branches if not is_null(leaf)]
        kind = k.kind if k.kind not in ("any",) else (kinds[0] if kinds else "any")
        if kind in ("list", "any"):
            raise Unsupported("a literal expression whose result is a list or of unknown type", d.name)
        self.fact_fields(tname, d, k, self.decisions[d.name], {}, {"value": kind})
        rname = self.type_names.new(f"{d.name} rule")
        comment = f"    # dmn: decision {d.name!r} ({d.id}), literal expression: {_one_line(d.literal)}"
        for n, (conds, leaf) in enumerate(branches):
            if is_null(leaf):
                continue  # this branch is null: nothing is asserted
            name = rname + (f"-{n + 1}" if len(branches) > 1 else "")
            leaf_tr = Translator(self.scope, on_name=used.add)
            if kind == "bool":
                for outcome in (True, False):
                    cond = self.truth(leaf, leaf_tr, outcome)
                    if cond is None:
                        continue
                    needs = " and ".join([*(f"exists {t}" for t in self.requirements(used, tname)),
                                          *(f"({c})" for c in conds), *((f"({cond})",) if cond else ())])
                    self.rules.append(f"  - name: {name}-{'true' if outcome else 'false'}\n{comment}\n"
                                      f"{self.after_lists(used)}    when: {_q(needs)}\n"
                                      f"    then: {{assert: {{{tname}: {{value: {'true' if outcome else 'false'}}}}}}}")
                continue
            text = leaf_tr.write(leaf)
            needs = " and ".join([*(f"exists {t}" for t in self.requirements(used, tname)), *(f"({c})" for c in conds),
                                  *(f"{_paren(x)} != 0" for x in leaf_tr.divisors)])  # FEEL: x / 0 is null
            value: object = _literal_value(leaf) if leaf.kind in ("num", "str") else "=" + text
            self.rules.append(f"  - name: {name}\n{comment}\n{self.after_lists(used)}    when: {_q(needs)}\n"
                              f"    then: {{assert: {{{tname}: {{value: {_q(value)}}}}}}}")

    def inline(self, node: Node, depth: int = 0) -> Node:
        """Invocations of literal-expression BKMs whose body holds an ``if`` replaced by the body with the
        arguments in place of the parameters, so the ifs become branches (other invocations are inlined as
        text by the translator)."""
        args = tuple(self.inline(a, depth) for a in node.args)
        b = self.scope.get(str(node.value)) if node.kind == "call" else None
        if b is not None and b.params and b.body is not None and _has_if(b.body) and len(args) == len(b.params):
            if depth > 16:
                raise Unsupported("recursive business knowledge model", str(node.value))
            return self.inline(_substitute(b.body, dict(zip(b.params, args, strict=True))), depth + 1)
        return Node(node.kind, node.value, args, node.extra) if args != node.args else node

    def branches(self, node: Node, tr: Translator, conds: list[str]) -> list[tuple[list[str], Node]]:
        """``if c then a else b`` as (conditions, value) pairs: ``a`` where c is true, ``b`` where it is not
        (false or null, as FEEL takes the else branch for both)."""
        if node.kind != "if":
            inner = split_if(node)  # an if inside a larger expression: the expression in each branch
            if inner is None:
                return [(conds, node)]
            node = Node("if", args=inner)
        if len(conds) > 12:
            raise Unsupported("FEEL if-then-else", "nested more than 12 deep")
        cond, then, other = node.args
        truth = self.truth(cond, tr, True)
        if truth is None:
            return self.branches(other, tr, conds)
        if truth == "":
            return self.branches(then, tr, conds)
        return self.branches(then, tr, [*conds, truth]) + self.branches(other, tr, [*conds, f"not ({truth})"])

    def truth(self, node: Node, tr: Translator, want: bool) -> str | None:
        """The condition under which a boolean FEEL expression is ``want`` (False: false, not merely not
        true): "" for always, None for never. Null inputs make neither hold, as in FEEL."""
        k = node.kind
        if k == "bool":
            return "" if bool(node.value) == want else None
        if k == "not" or (k == "call" and node.value == "not" and len(node.args) == 1):
            return self.truth(node.args[0], tr, not want)
        if k in ("and", "or"):
            a, b = self.truth(node.args[0], tr, want), self.truth(node.args[1], tr, want)
            both = (k == "and") == want  # true-and / false-or: both sides; else either side
            if both:
                if a is None or b is None:
                    return None
                return " and ".join(f"({x})" for x in (a, b) if x) or ""
            if a == "" or b == "":
                return ""
            parts = [x for x in (a, b) if x is not None]
            return " or ".join(f"({x})" for x in parts) if parts else None
        if k == "in":
            return self.truth(expand_in(node), tr, want)
        if k == "cmp" and node.value in ("=", "!=") and any(a.kind == "null" for a in node.args):
            # x = null: true where x is absent. Only of a name or path: Baton's x == x holds where it is present
            other = [a for a in node.args if a.kind != "null"]
            if not other:
                return "" if (node.value == "=") == want else None
            if other[0].kind not in ("name", "path"):
                raise Unsupported("FEEL null comparison", "of an expression that is not a name or path")
            text = tr.write(other[0])
            present = (node.value == "!=") == want
            return f"{_wrap(text)} == {_wrap(text)}" if present else f"not ({_wrap(text)} == {_wrap(text)})"
        if k == "cmp":
            op = str(node.value)
            if not want:
                op = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}[op]
            return tr.write(Node("cmp", op, node.args))
        if k in ("name", "path"):
            text = tr.write(node)
            return f"{text} == {'true' if want else 'false'}"
        text = tr.write(node)
        if not want and k == "call" and node.value in PREDICATES:
            # Baton's matches/contains are false where an operand is absent; FEEL's are null: not false
            operands = [tr.write(a) for a in node.args]
            return " and ".join([*(f"{_wrap(x)} == {_wrap(x)}" for x in operands), f"not ({text})"])
        return text if want else f"not ({text})"

    def table(self, d: Decision, t: DecisionTable, tname: str, k: Kind, dmap: DecisionMap,
              params: dict[str, tuple[str, str]] | None = None, used: set[str] | None = None) -> None:
        """A decision table (the decision's own, or a BKM's invoked with ``params``: name -> (Baton text, kind))."""
        where = (d.id, d.name)
        hit = HIT.get(t.hit)
        if hit is None:
            raise DmnError(f"hit policy {t.hit!r} is not imported", *where, construct=f"hit policy {t.hit}")
        names = [*self.names(), *self.bkm_names(), *(params or {})]
        t = _question_cells(t, names)
        used = set() if used is None else used
        tr = Translator(self.scope, dict(params or {}), on_name=used.add)
        columns, column_kinds = self.table_inputs(t, tr, names, where)
        fields = list(dmap.fields)
        out_kinds, enums = self.output_kinds(t, k, fields, where)
        rows = self.table_rows(t, tr, names, column_kinds, fields, out_kinds, where)
        self.fact_fields(tname, d, k, dmap, enums, out_kinds)
        table_name = self.type_names.new(d.name + " table")
        self.table_rules[table_name] = (d.name, t.hit + (f" {t.aggregation}" if t.aggregation else ""),
                                        [r.id for r in t.rules])
        tab = [f"  - name: {table_name}",
               f"    description: {_q('DMN decision ' + repr(d.name) + ' (' + d.id + '), decision table ' + t.id)}",
               f"    hit: {hit}"]
        if t.aggregation:
            if t.aggregation not in AGGREGATION:
                raise DmnError(f"aggregation {t.aggregation!r} is not imported", *where, construct="aggregation")
            tab.append(f"    aggregate: {AGGREGATION[t.aggregation]}")
        if hit == "priority":
            ranking = enums.get(fields[0])
            if not ranking:
                raise DmnError("a PRIORITY table needs output values on its first output", *where,
                               construct="priority without output values")
            tab.append(f"    ranking: [{', '.join(_q(v) for v in ranking)}]")
        if self.after_lists(used):
            tab.append(self.after_lists(used).rstrip("\n"))
        needs = self.requirements(used, tname)
        if needs != [INPUT] or not any(c.startswith(f"{INPUT}.") for c in columns):
            tab.append(f"    when: {_q(' and '.join(f'exists {x}' for x in needs))}")
        tab.append(f"    inputs: [{', '.join(_q(c) for c in columns)}]")
        tab.append(f"    outputs: [{', '.join(f'{tname}.{f}' for f in fields)}]")
        tab.append("    rows:")
        tab.extend(rows)
        self.tables.append("\n".join(tab))
        self.default_rule(d, t, tname, fields, tr, names, used)

    def table_inputs(self, t: DecisionTable, tr: Translator, names: list[str], where: tuple[str, str]
                     ) -> tuple[list[str], list[str]]:
        """The table's input columns as Baton writes them (a field path, or =expression), and their kinds."""
        columns: list[str] = []
        column_kinds: list[str] = []
        for c in t.inputs:
            node = parse_expression(c.text, names)
            text, kind = tr._write(node)
            if c.type_ref:
                try:
                    declared = self.kind(c.type_ref, where)
                    kind = declared.kind if declared.kind not in ("any", "record") else kind
                except DmnError:
                    pass
            if kind in ("record", "any"):
                raise Unsupported("a table input whose type cannot be told", c.text)
            if kind == "bool" and not re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", text):
                # a condition as a column: Baton refuses `a matches b == true` as a chain, so it is and-ed with
                # true (the same value)
                text = f"{_wrap(text)} and true"
                _only_true_tested(t, len(columns), c.text, names)
            columns.append(text if re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", text) else "=" + text)
            column_kinds.append(kind)
            if c.values:
                self.input_values(c, text, kind, where)
        for j, c in enumerate(t.inputs):
            columns[j] = self.null_safe_negation(t, j, c.text, columns[j], column_kinds[j], names)
        return columns, column_kinds

    def output_kinds(self, t: DecisionTable, k: Kind, fields: list[str], where: tuple[str, str]
                     ) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
        """Each output field's kind (any: told by the rows' values) and, where listed, its allowed values."""
        out_kinds: dict[str, str] = {}
        enums: dict[str, tuple[str, ...]] = {}
        ck = dict(k.components) if k.kind == "record" else {}
        for f, o in zip(fields, t.outputs, strict=False):
            declared = self.kind(o.type_ref, where) if o.type_ref else (ck.get(o.text) or (k if len(fields) == 1 else
                                                                                         Kind("any")))
            out_kinds[f] = declared.kind if declared.kind != "list" else (declared.item.kind if declared.item
                                                                          else "any")
            if declared.enum:
                enums[f] = declared.enum
            if o.values:
                vals = parse_unary_tests(o.values)
                strs = tuple(str(x.args[0].value) for x in vals.tests if x.kind == "eq" and x.args[0].kind == "str")
                if strs and len(strs) == len(vals.tests):
                    enums[f] = strs
                    out_kinds[f] = "str"
        return out_kinds, enums

    def table_rows(self, t: DecisionTable, tr: Translator, names: list[str], column_kinds: list[str],
                   fields: list[str], out_kinds: dict[str, str], where: tuple[str, str]) -> list[str]:
        """Each rule of the table as a row of Baton cells (an output of kind any takes the kind of its value)."""
        rows: list[str] = []
        for r in t.rules:
            if len(r.inputs) != len(t.inputs) or len(r.outputs) != len(t.outputs):
                raise DmnError(f"rule {r.id} has {len(r.inputs)} input and {len(r.outputs)} output entries",
                               *where, construct="decision table shape")
            cells = []
            for text, kind in zip(r.inputs, column_kinds, strict=True):
                try:
                    cells.append(_q(cell_text(parse_unary_tests(text, names), tr, kind)))
                except Unsupported as e:
                    raise Unsupported(e.construct, f"rule {r.id}, cell {text!r}: {e.detail}") from None
            outs = []
            for f, text in zip(fields, r.outputs, strict=True):
                node = parse_expression(text, names)
                if node.kind == "null":
                    outs.append('"-"')
                    continue
                wtext, wkind = tr._write(node)
                if wkind == "bool" and node.kind not in ("bool", "name", "path"):
                    raise Unsupported("FEEL null", f"rule {r.id}: the output {text!r} is a condition, null in FEEL "
                                      "where an operand is null and false in Baton")
                if out_kinds.get(f, "any") == "any":
                    out_kinds[f] = wkind
                outs.append(_q(_literal_value(node)) if node.kind in ("num", "str", "bool") else _q("=" + wtext))
            rows.append(f"      - [{', '.join([*cells, *outs])}]   # dmn: rule {r.id}")
        return rows

    def default_rule(self, d: Decision, t: DecisionTable, tname: str, fields: list[str], tr: Translator,
                     names: list[str], used: set[str]) -> None:
        """The outputs' default values, as a low-priority rule asserting them when no row matched."""
        defaults = {f: o.default for f, o in zip(fields, t.outputs, strict=True) if o.default}
        if not defaults:
            return
        values = []
        for f, text in defaults.items():
            node = parse_expression(text, names)
            shown = _literal_value(node) if node.kind in ("num", "str", "bool") else "=" + tr.write(node)
            values.append(f"{f}: {_q(shown)}")
        needs_text = " and ".join(f"exists {x}" for x in self.requirements(used, tname))
        self.rules.append(f"  - name: {self.type_names.new(d.name + ' default')}\n"
                          f"    # dmn: decision {d.name!r} ({d.id}): the default output when no rule matches\n"
                          f"    priority: {-2 if self.after_lists(used) else -1}\n"
                          f"    when: {_q(needs_text + ' and not exists ' + tname)}\n"
                          f"    then: {{assert: {{{tname}: {{{', '.join(values)}}}}}}}")

    # -- the file ------------------------------------------------------------------------------------
    def implicit_inputs(self) -> None:
        """Names a decision table's input expression reads that no input data, decision or BKM declares: some
        modelers (Camunda) leave input data out and bind variables by name at run time. Each becomes an input
        field typed by the input expression's typeRef (a table without one is an error naming it)."""
        declared = {*self.scope, *(d.name for d in self.m.decisions), *self.bkm_names()}
        for d in self.m.decisions:
            if d.table is None:
                continue
            for c in d.table.inputs:
                name = c.text.strip()
                if name not in declared and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ ]*", name):
                    self.implicit_in_expression(d, c.text, declared)
                    continue
                if name in declared:
                    continue
                if not c.type_ref:
                    raise DmnError(f"the input expression {name!r} reads no declared input data and has no typeRef",
                                   d.id, d.name, construct="undeclared input")
                k = self.kind(c.type_ref, (d.id, d.name))
                fname = self.input_fields.new(name)
                self.facts[INPUT].append(self.field_yaml(fname, k) + f"   # dmn: the variable {name!r} that "
                                         f"decision {d.name!r} reads (no inputData declares it)")
                self.scope[name] = Binding(f"{INPUT}.{fname}", k.kind)
                self.inputs[name] = (INPUT, fname, k)
                declared.add(name)
                self.notes.append(f"{name!r}: an input of decision {d.name!r} without inputData; typed {c.type_ref}")

    def implicit_in_expression(self, d: Decision, text: str, declared: set[str]) -> None:
        """An input expression over undeclared variables (Camunda: ``upper case(reference)``): a variable that
        is the string argument of a FEEL string function is a string input; any other stays unknown (the
        decision is then refused naming it)."""
        try:
            node = parse_expression(text, sorted(declared))
        except Unsupported:
            return
        found: dict[str, str] = {}

        def walk(n: Node) -> None:
            if n.kind == "call" and n.value in STRING_ARGUMENT and n.args and n.args[0].kind == "name":
                name = str(n.args[0].value)
                if name not in declared and name not in KEYWORDS:
                    found.setdefault(name, "string")
            for a in n.args:
                walk(a)

        walk(node)
        for name, type_ref in found.items():
            k = self.kind(type_ref, (d.id, d.name))
            fname = self.input_fields.new(name)
            self.facts[INPUT].append(self.field_yaml(fname, k) + f"   # dmn: the variable {name!r} that "
                                     f"decision {d.name!r} reads (no inputData declares it; a string, as "
                                     f"the argument of a string function)")
            self.scope[name] = Binding(f"{INPUT}.{fname}", k.kind)
            self.inputs[name] = (INPUT, fname, k)
            declared.add(name)
            self.notes.append(f"{name!r}: an input of decision {d.name!r} without inputData; typed string (the "
                              "argument of a string function)")

    def null_results(self) -> None:
        """A decision none of whose rules applies is null in FEEL, and a decision reading it still runs (``if
        D = null then ...``, ``if D > 5 then a else b`` takes the else branch). So each single-result decision
        that is read by another asserts its fact without a value when nothing else did: at priority -3, after
        all its own rules, its table's default (-1) and list readers (-1, -2); written in requirement order, so
        a decision's null fact comes before those of the decisions that read it have a chance to fire."""
        for d in self.order():
            dmap = self.decisions.get(d.name)
            if dmap is None or dmap.multi or dmap.fact not in self.read:
                continue
            self.rules.append(f"  - name: {self.type_names.new(d.name + ' null')}\n"
                              f"    # dmn: decision {d.name!r} ({d.id}) is null when none of its rules applies\n"
                              "    priority: -3\n"
                              f"    when: {_q(f'exists {INPUT} and not exists {dmap.fact}')}\n"
                              f"    then: {{assert: {{{dmap.fact}: {{}}}}}}")

    def run(self) -> Imported:
        self.load_inputs()
        self.implicit_inputs()
        self.load_bkms()
        self.load_decisions()
        self.null_results()
        if not self.facts[INPUT]:
            self.facts[INPUT].append("    model: {type: str, optional: true}   # a model without simple inputs")
        name = re.sub(r"[^a-z0-9_.-]+", "-", self.m.name.lower()).strip("-.") or "dmn-model"
        if not name[0].isalnum():
            name = "dmn-" + name
        lines = [f"# Imported from DMN {self.m.version} model {self.m.name!r} ({self.m.namespace}) by "
                 "baton dmn import.",
                 f"ruleset: {name[:100]}",
                 f"description: {_q('DMN model ' + self.m.name)}", "", "facts:"]
        for tname, fields in self.facts.items():
            lines.append(f"  {tname}:")
            lines.extend(fields)
        inputs = [t for t in self.facts if t == INPUT or any(v[0] == t for v in self.inputs.values())]
        lines.append(f"\ninput: [{', '.join(inputs)}]")
        if self.tables:
            lines.append("\ntables:")
            lines.extend(self.tables)
        results = []
        for dmap in self.decisions.values():
            value = f"=list({dmap.fact}.value)" if list(dmap.fields) == ["value"] else f"=list({dmap.fact})"
            results.append(f"{dmap.fact}: {_q(value)}")
        if not results:
            self.rules.append("  - name: dmn-results\n    # no decision of the model could be imported\n"
                              "    when: exists input\n    then: {decide: {imported: none}}")
        if results:  # the decision's answer: every DMN decision's result(s), as lists (empty: null)
            self.rules.append("  - name: dmn-results\n"
                              "    # every decision's result as a list: [] is null, one item a single result\n"
                              "    priority: -1000\n"
                              "    when: exists input\n"
                              f"    then: {{decide: {{{', '.join(results)}}}}}")
        if self.rules:
            lines.append("\nrules:")
            lines.extend(self.rules)
        if self.skipped:
            lines.append("\n# Left out (not expressible in Baton):")
            lines.extend(f"#   decision {n!r}: {why}" for n, why in self.skipped.items())
        text = "\n".join(lines) + "\n"
        return Imported(text, self.decisions, self.inputs, self.components, self.skipped, self.notes, self.dropped,
                        self.table_rules)


def _only_true_tested(t: DecisionTable, column: int, text: str, names: list[str]) -> None:
    """Baton's condition is false where FEEL's is null (an absent operand), so a condition column may be tested
    only for true (or ``-``), never for false: raise Unsupported otherwise."""
    for r in t.rules:
        cell = r.inputs[column] if len(r.inputs) > column else "-"
        tests = parse_unary_tests(cell, names)
        if not tests.any and (tests.negated or any(
                x.kind != "eq" or x.args[0].kind != "bool" or x.args[0].value is not True
                for x in tests.tests)):
            raise Unsupported("FEEL null", f"rule {r.id}: the cell {cell!r} on the condition {text!r}, "
                              "which is null in FEEL where an operand is null and false in Baton")


def _uses_question(node: Node) -> bool:
    return (node.kind == "name" and node.value == "?") or any(_uses_question(a) for a in node.args)


def _question_cells(t: DecisionTable, names: list[str]) -> DecisionTable:
    """FEEL's ``?`` (the input value) in a cell. ``? > 5`` is the cell ``> 5``. A condition over ``?``
    (``starts with(?, "VIP")``) becomes a column of its own - the condition with the input expression in
    place of ``?`` - tested ``true`` in that rule and ``-`` in the others, the rule's own cell ``-``: FEEL's
    condition is null on a null input and matches nothing, as a ``true`` cell. ``?`` in a list of tests or
    under ``not(...)`` is refused."""
    if not any("?" in text for r in t.rules for text in r.inputs):
        return t
    inputs = list(t.inputs)
    rules = [TableRule(r.id, list(r.inputs), list(r.outputs)) for r in t.rules]
    for j, c in enumerate(t.inputs):
        for r in rules:
            text = r.inputs[j] if j < len(r.inputs) else ""
            if "?" not in text:
                continue
            tests = parse_unary_tests(text, [*names, "?"])
            if not any(_uses_question(x) for x in tests.tests):
                continue
            if tests.negated or len(tests.tests) != 1 or tests.tests[0].kind != "eq":
                raise Unsupported("FEEL ? unary test", f"rule {r.id}, cell {text!r}: '?' in a list or under not()")
            expr = tests.tests[0].args[0]
            if expr.kind == "cmp" and expr.args[0] == Node("name", "?") and not _uses_question(expr.args[1]):
                r.inputs[j] = f"{expr.value} {text[text.index(str(expr.value)) + len(str(expr.value)):].strip()}"
                continue
            spans = [tok for tok in tokenize(text, [*names, "?"]) if tok.kind == "name" and tok.text == "?"]
            feel = text
            for tok in reversed(spans):
                feel = feel[:tok.pos] + f"({c.text})" + feel[tok.pos + 1:]
            inputs.append(Column(f"{c.id}-{r.id}", feel, "boolean"))
            r.inputs[j] = "-"
            for other in rules:
                other.inputs.append("true" if other is r else "-")
    return DecisionTable(t.id, t.hit, t.aggregation, inputs, t.outputs, rules)


def _has_if(node: Node) -> bool:
    return node.kind == "if" or any(_has_if(a) for a in node.args)


def _substitute(node: Node, params: dict[str, Node]) -> Node:
    """A BKM body with its parameters' names replaced by the argument expressions."""
    if node.kind == "name" and str(node.value) in params:
        return params[str(node.value)]
    if node.kind == "call" and str(node.value) in params:
        raise Unsupported("FEEL call of a parameter", str(node.value))
    args = tuple(_substitute(a, params) for a in node.args)
    return Node(node.kind, node.value, args, node.extra) if args != node.args else node


def _feel_of(text: str, node: Node) -> str:
    """An argument's FEEL text (re-parsed where it is used, so names resolve in that scope)."""
    return _render(node)


def _render(node: Node) -> str:
    """A FEEL tree written back as FEEL (for arguments passed on to a BKM's table)."""
    k = node.kind
    if k == "num":
        return str(node.value)
    if k == "str":
        return json.dumps(node.value)
    if k == "bool":
        return "true" if node.value else "false"
    if k == "null":
        return "null"
    if k == "name":
        return str(node.value)
    if k == "path":
        return f"{_render(node.args[0])}.{node.value}"
    if k == "neg":
        return f"-({_render(node.args[0])})"
    if k in ("bin", "cmp"):
        return f"({_render(node.args[0])}) {node.value} ({_render(node.args[1])})"
    if k in ("and", "or"):
        return f"({_render(node.args[0])}) {k} ({_render(node.args[1])})"
    if k == "call" and isinstance(node.value, str):
        return f"{node.value}(" + ", ".join(_render(a) for a in node.args) + ")"
    if k == "list":
        return "[" + ", ".join(_render(a) for a in node.args) + "]"
    raise Unsupported(f"FEEL {k}", "as an argument of a business knowledge model's table")


def _paren(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*|-?\d+(\.\d+)?", text) else f"({text})"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _literal_value(node: Node) -> object:
    if node.kind == "num":
        text = str(node.value)
        value = float(text)
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    if node.kind == "bool":
        return bool(node.value)
    return str(node.value)


def import_dmn(text: str, partial: bool = False) -> Imported:
    """A DMN file's text as a ruleset; raises DmnError naming the element and construct it cannot import."""
    model = read_model(text)
    try:
        return Importer(model, partial).run()
    except Unsupported as e:
        raise DmnError(str(e), construct=e.construct) from None


_ = (Bkm, Callable)
__all__ = ["DecisionMap", "Imported", "import_dmn", "slug"]
