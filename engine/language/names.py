"""Named values (``values:``) and definitions (``define:``): a ruleset's shared vocabulary.

    values:
      high_risk_countries: [IR, KP, SY, CU]     # a list of one scalar kind
      reporting_threshold: 10000
      amnesty_ends: 2026-03-31                  # unquoted: a date ("2026-03-31" quoted: text)
    define:
      in_force: policy.start <= claim.loss_date and claim.loss_date <= policy.end
      net_loss: claim.estimate - policy.deductible

A bare name in any expression stands for its value, or for its definition's expression written there
in brackets: the parser puts the literal, or the definition's parsed tree, in the name's place
(engine/language/expr.py, :func:`expr.vocabulary`), so a rule that uses a definition compiles to exactly
the rule written out by hand - the same engine patterns, index tests and guard. The facts a definition
names join the rule's patterns; inside an aggregate's ``where`` its references to the aggregated type
mean the fact being counted.

A definition's nodes carry positions in a region of its own (``REGION * (k + 1) + offset``), so an
error found while checking a rule that uses it is reported at the definition's own line and column
(:meth:`Vocabulary.locate`), naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import BatonError, Where
from engine.language import dates
from engine.language.check import (
    AGGREGATES,
    DECISION,
    EMPTY,
    FUNCTIONS,
    MAX_MAGNITUDE,
    Checker,
    Condition,
    Eval,
    bindings_of,
    compile_expr,
    normalise,
)
from engine.language.expr import (
    KEYWORDS,
    REGION,
    BoolOp,
    Call,
    ExprError,
    ListLit,
    Lit,
    Node,
    parse,
    render,
    tokenize,
)
from engine.language.source import Positions, Quoted
from engine.language.types import FactType

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BROKEN = "definition_error"  # a use of a definition that has errors of its own (reported once, at it)
MAX_DEFINITION_SIZE = 10_000  # the parts one definition expands to, with the definitions it uses
MAX_EXPANDED = 2_000_000  # the parts all uses of definitions add to one ruleset (d1: d2 + d2, d2: d3 + d3, ...)


@dataclass(slots=True)
class Value:
    name: str
    value: object  # str | int | float | bool, or a list of one kind of them
    kind: str  # str | number | bool | date | datetime | list
    where: Where
    item: str = ""  # a list's items' kind ("" for an empty list)


def _node(value: object, kind: str, pos: int) -> Node:
    if isinstance(value, list):
        return ListLit(pos, tuple(_node(v, kind, pos) for v in value))
    if kind in ("date", "datetime"):
        return Call(pos, kind, (Lit(pos, str(value)),))
    assert isinstance(value, (str, int, float, bool))
    return Lit(pos, value)


@dataclass(slots=True)
class Definition:
    name: str
    text: str
    number: int
    where: Where  # where its text starts
    body: Node | None = None
    broken: bool = False

    @property
    def base(self) -> int:
        return REGION * (self.number + 1)


@dataclass(slots=True)
class Vocabulary:
    values: dict[str, Value] = field(default_factory=dict)
    definitions: dict[str, Definition] = field(default_factory=dict)
    uses: list[str] = field(default_factory=list)  # definitions named at the top level since last reset
    _stack: list[str] = field(default_factory=list)
    _sizes: dict[int, int] = field(default_factory=dict)  # id(definition body) -> parts it expands to
    _expanded: int = 0

    def names(self) -> tuple[str, ...]:
        return (*self.values, *self.definitions)

    def resolve(self, name: str, pos: int) -> Node | None:
        value = self.values.get(name)
        if value is not None:
            return _node(value.value, value.item if value.kind == "list" else value.kind, pos)
        d = self.definitions.get(name)
        if d is None:
            return None
        if not self._stack:
            self.uses.append(name)
        if d.broken:
            raise ExprError(BROKEN, f"definition '{name}' has errors", d.base)
        if d.body is None:
            self._stack.append(name)
            try:
                body = parse(d.text, d.base)
                size = self._size(body)
                if size > MAX_DEFINITION_SIZE:
                    raise ExprError("too_large", f"definition '{name}' expands to {size:,} parts (at most "
                                    f"{MAX_DEFINITION_SIZE:,}) through the definitions it uses", d.base,
                                    "a definition used twice in another is written out twice: use it once")
                d.body = body
                self._sizes[id(body)] = size
            except ExprError:
                d.broken = True
                raise
            finally:
                self._stack.pop()
        self._expanded += self._sizes[id(d.body)]
        if self._expanded > MAX_EXPANDED:
            raise ExprError("too_large", f"uses of definitions expand this ruleset beyond {MAX_EXPANDED:,} parts",
                            pos, "use large definitions in fewer places")
        return d.body

    def _size(self, root: Node) -> int:
        """The parts a tree expands to, counting each use of a definition as the parts it expands to
        (without walking them again: a definition used twice in each of thirty others is 2**30 parts)."""
        total, stack = 0, [root]
        while stack:
            node = stack.pop()
            known = self._sizes.get(id(node)) if node is not root else None
            if known is not None:
                total += known
                continue
            total += 1
            for slot in getattr(node, "__slots__", ()):
                value = getattr(node, slot, None)
                if isinstance(value, Node):
                    stack.append(value)
                elif isinstance(value, tuple):
                    stack.extend(v for v in value if isinstance(v, Node))
        return total

    def locate(self, offset: int) -> tuple[Definition, int] | None:
        """The definition whose text a node position lies in, and the offset into that text."""
        if offset < REGION:
            return None
        number = offset // REGION - 1
        for d in self.definitions.values():
            if d.number == number:
                return d, offset - d.base
        return None


def uses_of(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """For each named value and definition of a parsed ruleset (plain data), the rules and tables that use
    it, directly or through definitions: ``{"high_risk": ["rule sanctions", "table fees"]}``."""
    values, defs = doc.get("values"), doc.get("define")
    values = values if isinstance(values, dict) else {}
    defs = defs if isinstance(defs, dict) else {}
    names = {str(n) for n in (*values, *defs)}
    via = {str(n): _names_in(str(t)) & names for n, t in defs.items()}
    users: dict[str, list[str]] = {}
    for section, what in (("rules", "rule"), ("tables", "table")):
        items = doc.get(section)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            found: set[str] = set()
            for text in _strings(item):
                found |= _names_in(text[1:] if text.startswith("=") else text) & names
            todo = list(found)
            while todo:
                for m in via.get(todo.pop(), ()):
                    if m not in found:
                        found.add(m)
                        todo.append(m)
            for n in sorted(found):
                users.setdefault(n, []).append(f"{what} {item.get('name')}")
    return users


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() if k not in ("name", "description") for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _names_in(text: str) -> set[str]:
    """The bare names an expression text uses (not fields, functions or fact types with a field)."""
    try:
        tokens = tokenize(text)
    except ExprError:
        return set()
    out = set()
    for i, tok in enumerate(tokens):
        if tok.kind != "name" or tok.text in KEYWORDS:
            continue
        before = tokens[i - 1].text if i > 0 else ""
        after = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if before != "." and after not in (".", "("):
            out.add(tok.text)
    return out


def _scalar(raw: object) -> tuple[object, str] | None:
    """A value's Python value and kind; None if it is not a scalar a value may hold."""
    if isinstance(raw, bool):
        return raw, "bool"
    if isinstance(raw, (int, float)):
        if raw != raw or abs(raw) > MAX_MAGNITUDE:
            return None
        return raw, "number"
    if isinstance(raw, str):
        if not isinstance(raw, Quoted):  # unquoted 2026-03-31 is a date (quoted, it is text)
            for kind, canonical in (("date", dates.canonical_date), ("datetime", dates.canonical_datetime)):
                if re.match(r"\d{4}-\d{2}-\d{2}", raw):
                    try:
                        return canonical(raw), kind
                    except dates.DateError:
                        continue
        return str(raw), "str"
    return None


def load_vocabulary(vocab: Vocabulary, doc: Any, pos: Positions, types: Mapping[str, FactType],
                    error: Callable[[BatonError], None]) -> None:
    """Fill ``vocab`` from the ``values:`` and ``define:`` sections, checked: names, kinds, clashes, cycles."""
    taken = {*types, *FUNCTIONS, *AGGREGATES, *KEYWORDS, DECISION}

    def named(parent: Any, key: object, what: str) -> str | None:
        name = str(key)
        where = pos.key(parent, name)
        if not NAME.match(name):
            error(BatonError("bad_name", f"'{name}' cannot name a {what}", where, "letters, digits and _"))
            return None
        if name in taken or name in vocab.values or name in vocab.definitions:
            other = ("a fact type" if name in types else "a function" if name in (*FUNCTIONS, *AGGREGATES) else
                     "a word of the language" if name in KEYWORDS or name == DECISION else
                     "a named value" if name in vocab.values else "a definition")
            error(BatonError("name_clash", f"'{name}' is already {other}", where,
                             "a bare name must mean one thing: choose another name"))
            return None
        return name

    _load_values(vocab, doc, pos, named, error)
    _load_definitions(vocab, doc, pos, named, error)


_Namer = Callable[[Any, object, str], str | None]


def _load_values(vocab: Vocabulary, doc: Any, pos: Positions, named: _Namer,
                 error: Callable[[BatonError], None]) -> None:
    """values: a name to a scalar, or to a list of one kind of scalar."""
    values = doc.get("values")
    if values is not None and not isinstance(values, dict):
        error(BatonError("bad_shape", "values: maps names to values, e.g. reporting_threshold: 10000",
                         pos.value(doc, "values")))
    elif values:
        for key, raw in values.items():
            name = named(values, key, "value")
            if name is None:
                continue
            where = pos.value(values, name)
            if isinstance(raw, list):
                items = [_scalar(v) for v in raw]
                kinds = {k for it in items if it is not None for k in (it[1],)}
                if any(it is None for it in items) or len(kinds) > 1:
                    error(BatonError("bad_value", f"value '{name}': a list of one kind of scalar (all strings, all "
                                     "numbers, all dates)", where, 'quote a date to make it text: "2026-03-31"'))
                    continue
                vocab.values[name] = Value(name, [it[0] for it in items if it is not None], "list", where,
                                           kinds.pop() if kinds else "")
                continue
            scalar = _scalar(raw)
            if scalar is None:
                error(BatonError("bad_value", f"value '{name}': a string, number, true/false, date or a list of "
                                 "one of these", where))
                continue
            vocab.values[name] = Value(name, scalar[0], scalar[1], where)


def _load_definitions(vocab: Vocabulary, doc: Any, pos: Positions, named: _Namer,
                      error: Callable[[BatonError], None]) -> None:
    """define: a name to an expression (checked where it is used), with no cycles among them."""
    defs = doc.get("define")
    if defs is not None and not isinstance(defs, dict):
        error(BatonError("bad_shape", "define: maps names to expressions, e.g. late: days(a.x, b.y) > 30",
                         pos.value(doc, "define")))
    elif defs:
        for key, text in defs.items():
            name = named(defs, key, "definition")
            if name is None:
                continue
            if isinstance(text, bool) or not isinstance(text, (str, int, float)) or not str(text).strip():
                error(BatonError("bad_value", f"definition '{name}' needs an expression", pos.value(defs, name)))
                continue
            text, where = str(text), pos.text_start(defs, name)
            lead = len(text) - len(text.lstrip())
            if text[lead] == "=":  # "=expr", as a computed value is written: a definition is always one
                text, where = text[lead + 1:], where.shifted(text, lead + 1)
            vocab.definitions[name] = Definition(name, text, len(vocab.definitions), where)
        _cycles(vocab, defs, pos, error)


def _cycles(vocab: Vocabulary, defs: Any, pos: Positions, error: Callable[[BatonError], None]) -> None:
    refs = {n: sorted(_names_in(d.text) & set(vocab.definitions)) for n, d in vocab.definitions.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in refs[n]:
            if state.get(m) == 1:
                cycle = path[path.index(m):]
                for c in cycle:
                    d = vocab.definitions[c]
                    if not d.broken:
                        d.broken = True
                        shown = " -> ".join([*cycle[cycle.index(c):], *cycle[:cycle.index(c)], c])
                        error(BatonError("cyclic_definition", f"definition '{c}' uses itself: {shown}",
                                         pos.key(defs, c), "a definition may use values and other definitions, "
                                         "never itself"))
            elif m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in vocab.definitions:
        if n not in state:
            visit(n)


def definition_values(vocab: Vocabulary, names: list[str], types: Mapping[str, FactType],
                      condition: Condition) -> tuple[tuple[str, Eval], ...]:
    """Evaluators of the definitions a rule's condition names, for the trace: each over the facts the rule
    matched (a definition that cannot be evaluated there on its own - one used only inside an aggregate's
    filter - is left out)."""
    out: list[tuple[str, Eval]] = []
    written: dict[str, str] = {}
    for name in dict.fromkeys(names):
        body = vocab.definitions[name].body
        if body is None:
            continue
        checker = Checker(types)
        checker.aliases = dict(condition.aliases)
        matched = {b for branch in condition.branches for b in branch.bindings}
        try:
            node = normalise(body)
            if not set(bindings_of(node, condition.aliases)) <= matched:
                continue  # it names facts the rule does not match (used only inside an aggregate's filter)
            checker.type_of(node)
            out.append((name, compile_expr(checker.lower(node), condition.aliases)))
        except ExprError:
            continue
        written[name] = render(node)
    condition.written = written or EMPTY
    condition.implied = tuple(_implied(branch.parts, written) or EMPTY for branch in condition.branches)
    return tuple(out)


def _implied(parts: Sequence[Node], written: Mapping[str, str]) -> dict[str, bool]:
    """The definitions whose value holds whenever this branch fires: each of its conjuncts is a part of the
    branch (true), or ``not (it)`` is (false)."""
    shown = {render(p) for p in parts}
    out: dict[str, bool] = {}
    for name, text in written.items():
        conjuncts = _conjuncts(text)
        if conjuncts and conjuncts <= shown:
            out[name] = True
        elif f"not ({text})" in shown or f"not {text}" in shown:
            out[name] = False
    return out


def _conjuncts(text: str) -> set[str]:
    """A definition's rendered conjuncts (the parts a branch holds it as)."""
    try:
        node = parse(text)
    except ExprError:
        return set()
    if isinstance(node, BoolOp) and node.op == "and":
        return {render(o) for o in node.operands}
    return {render(node)}
