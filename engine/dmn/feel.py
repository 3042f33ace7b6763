"""The part of FEEL (DMN 1.5, chapter 10) that Baton's expression language can express, parsed and written
out as Baton expressions and table cells.

``parse_expression`` and ``parse_unary_tests`` build a small tree; ``Translator`` writes it in Baton's
language, resolving FEEL names (which may contain spaces: ``Monthly Salary``) through a scope the importer
gives. Anything outside the subset raises ``Unsupported`` naming the construct, so an import never yields a
silently different ruleset: ``for``, ``some``, ``every``, contexts, filters, ``instance of``, functions
Baton lacks, ``null`` tests, and ``if`` outside a boolean decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.regex import compile_regex


class Unsupported(Exception):
    """A FEEL construct Baton cannot express."""

    def __init__(self, construct: str, detail: str = "") -> None:
        super().__init__(f"{construct}{': ' + detail if detail else ''}")
        self.construct = construct
        self.detail = detail


class FeelSyntax(Unsupported):
    """Text that is not FEEL this parser reads."""

    def __init__(self, detail: str) -> None:
        super().__init__("FEEL syntax", detail)


# -- tree ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node:
    kind: str  # num str bool null name path call bin neg and or not cmp list if between in range
    value: object = None  # num: the number text; str: the text; bool; name: the name; op for bin/cmp
    args: tuple[Node, ...] = ()
    extra: tuple[object, ...] = ()  # range: (lo_closed, hi_closed)


KEYWORDS = {"and", "or", "not", "if", "then", "else", "for", "some", "every", "in", "return", "satisfies",
            "between", "instance", "of", "function", "true", "false", "null"}
# FEEL's built-in functions whose names contain spaces, read as one name
MULTI_WORD_FUNCTIONS = ("date and time", "string length", "upper case", "lower case", "substring before",
                        "substring after", "starts with", "ends with", "list contains", "years and months duration",
                        "day of week", "day of year", "month of year", "week of year", "get value", "get entries",
                        "insert before", "index of", "distinct values", "string join", "is defined",
                        "round half even", "round half up", "round half down", "round up", "round down")

_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_WORD = re.compile(r"[A-Za-z_\u00C0-\uFFFF?][A-Za-z0-9_\u00C0-\uFFFF?']*")
_OPS = ("**", "<=", ">=", "!=", "..", "=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", ".", "{", "}", ":")


@dataclass(slots=True)
class Token:
    kind: str  # num str name op end
    text: str
    pos: int


def tokenize(text: str, names: Sequence[str] = ()) -> list[Token]:
    """FEEL tokens; a name with spaces (or other characters FEEL allows in names) is one token when it is
    one of ``names`` (the longest that fits wins)."""
    known = sorted({*names, *MULTI_WORD_FUNCTIONS}, key=len, reverse=True)
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    esc = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}.get(esc, "\\" + esc))
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise FeelSyntax(f"unterminated string at {i + 1}")
            out.append(Token("str", "".join(buf), i))
            i = j + 1
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            out.append(Token("num", m.group(), i))
            i = m.end()
            continue
        if _WORD.match(text, i):
            hit = ""
            for name in known:
                end = i + len(name)
                if text.startswith(name, i) and (end >= n or not (text[end].isalnum() or text[end] in "_?'")):
                    hit = name
                    break
            if not hit:
                m = _WORD.match(text, i)
                assert m is not None
                hit = m.group()
            out.append(Token("name", hit, i))
            i += len(hit)
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is None:
            raise FeelSyntax(f"unexpected {ch!r} at {i + 1}")
        out.append(Token("op", op, i))
        i += len(op)
    out.append(Token("end", "", n))
    return out


class _Parser:
    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text
        self.tokens = tokenize(text, names)
        self.i = 0
        self.bound = False  # parsing an interval's bound: a '[' after it closes the interval (]a..b[)

    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def at(self, text: str, kind: str = "") -> bool:
        tok = self.peek()
        return tok.text == text and (not kind or tok.kind == kind) and tok.kind in ("op", "name")

    def expect(self, text: str) -> None:
        if not self.at(text):
            tok = self.peek()
            raise FeelSyntax(f"expected {text!r} at {tok.pos + 1}, found {tok.text or 'the end'!r}")
        self.next()

    def done(self) -> None:
        if self.peek().kind != "end":
            tok = self.peek()
            raise FeelSyntax(f"unexpected {tok.text!r} at {tok.pos + 1}")

    # expressions -----------------------------------------------------------------------------------
    def expression(self) -> Node:
        tok = self.peek()
        if tok.kind == "name" and tok.text in ("for", "some", "every") and self.peek(1).kind == "name":
            raise Unsupported(f"FEEL '{tok.text}' expression", "iteration and quantifiers")
        if tok.kind == "name" and tok.text == "function":
            raise Unsupported("FEEL function definition")
        if tok.kind == "name" and tok.text == "if":
            self.next()
            cond = self.expression()
            self.expect("then")
            then = self.expression()
            self.expect("else")
            other = self.expression()
            return Node("if", args=(cond, then, other))
        return self.disjunction()

    def disjunction(self) -> Node:
        left = self.conjunction()
        while self.at("or", "name"):
            self.next()
            left = Node("or", args=(left, self.conjunction()))
        return left

    def conjunction(self) -> Node:
        left = self.comparison()
        while self.at("and", "name"):
            self.next()
            left = Node("and", args=(left, self.comparison()))
        return left

    def comparison(self) -> Node:
        left = self.additive()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "!=", "<", "<=", ">", ">="):
            self.next()
            return Node("cmp", tok.text, (left, self.additive()))
        if tok.kind == "name" and tok.text == "between":
            self.next()
            lo = self.additive()
            self.expect("and")
            return Node("between", args=(left, lo, self.additive()))
        if tok.kind == "name" and tok.text == "in":
            self.next()
            if self.at("(") and not self._interval_ahead_from(self.i + 1):  # (1..5] is an interval
                self.next()
                tests = self.positive_tests()
                self.expect(")")
                return Node("in", args=(left, *tests))
            return Node("in", args=(left, self.positive_test()))
        if tok.kind == "name" and tok.text == "instance":
            raise Unsupported("FEEL 'instance of'")
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.next().text
            left = Node("bin", op, (left, self.multiplicative()))
        return left

    def multiplicative(self) -> Node:
        left = self.power()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.next().text
            left = Node("bin", op, (left, self.power()))
        return left

    def power(self) -> Node:
        left = self.unary()
        while self.at("**", "op"):
            self.next()
            left = Node("bin", "**", (left, self.unary()))
        return left

    def unary(self) -> Node:
        if self.at("-", "op"):
            self.next()
            operand = self.unary()
            if operand.kind == "num":
                return Node("num", "-" + str(operand.value))
            return Node("neg", args=(operand,))
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            if self.at(".", "op"):
                self.next()
                tok = self.next()
                if tok.kind != "name":
                    raise FeelSyntax(f"expected a name after '.' at {tok.pos + 1}")
                node = Node("path", tok.text, (node,))
            elif self.at("(", "op"):
                self.next()
                args: list[Node] = []
                named: list[str] = []
                while not self.at(")", "op"):
                    if self.peek().kind == "name" and self.peek(1).text == ":" and self.peek(1).kind == "op":
                        named.append(self.next().text)
                        self.next()
                    args.append(self.expression())
                    if not self.at(","):
                        break
                    self.next()
                self.expect(")")
                if named:
                    raise Unsupported("FEEL named arguments", ", ".join(named))
                node = Node("call", node.value if node.kind == "name" else None, tuple(args), (node,))
            elif self.at("[", "op"):
                if self.bound:
                    return node
                raise Unsupported("FEEL filter expression", "list[condition]")
            else:
                return node

    def primary(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Node("num", tok.text)
        if tok.kind == "str":
            return Node("str", tok.text)
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return Node("bool", tok.text == "true")
            if tok.text == "null":
                return Node("null")
            if tok.text in KEYWORDS and tok.text not in ("not",):
                raise FeelSyntax(f"unexpected {tok.text!r} at {tok.pos + 1}")
            return Node("name", tok.text)
        if tok.kind == "op" and tok.text == "(":
            if self._interval_ahead():
                self.i -= 1
                return self.interval()
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind == "op" and tok.text == "[":
            if self._interval_ahead():
                self.i -= 1
                return self.interval()
            items: list[Node] = []
            while not self.at("]", "op"):
                items.append(self.expression())
                if not self.at(","):
                    break
                self.next()
            self.expect("]")
            return Node("list", args=tuple(items))
        if tok.kind == "op" and tok.text == "{":
            raise Unsupported("FEEL context", "{key: value, ...}")
        if tok.kind == "op" and tok.text == "]":
            self.i -= 1
            return self.interval()
        raise FeelSyntax(f"unexpected {tok.text or 'end'!r} at {tok.pos + 1}")

    def _interval_ahead(self) -> bool:
        """After an opening bracket: is there a '..' before the matching close?"""
        depth = 0
        for tok in self.tokens[self.i:]:
            if tok.kind == "op" and tok.text in ("(", "[", "{"):
                depth += 1
            elif tok.kind == "op" and tok.text in (")", "]", "}"):
                if depth == 0:
                    return False
                depth -= 1
            elif tok.kind == "op" and tok.text == ".." and depth == 0:
                return True
            elif tok.kind == "end":
                return False
        return False

    def interval(self) -> Node:
        open_tok = self.next()
        lo_closed = open_tok.text == "["
        self.bound = True
        try:
            lo = self.additive()
            self.expect("..")
            hi = self.additive()
        finally:
            self.bound = False
        close = self.next()
        if close.kind != "op" or close.text not in ("]", ")", "["):
            raise FeelSyntax(f"an interval ends with ], ) or [ (at {close.pos + 1})")
        return Node("range", args=(lo, hi), extra=(lo_closed, close.text == "]"))

    # unary tests -----------------------------------------------------------------------------------
    def positive_test(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("<", "<=", ">", ">=", "=", "!="):
            self.next()
            return Node("cmp", tok.text, (self.additive(),))
        if tok.kind == "op" and tok.text in ("[", "(", "]") and self._interval_ahead_from(self.i + 1):
            return self.interval()
        return Node("eq", args=(self.expression(),))

    def _interval_ahead_from(self, i: int) -> bool:
        saved = self.i
        self.i = i
        try:
            return self._interval_ahead()
        finally:
            self.i = saved

    def positive_tests(self) -> list[Node]:
        tests = [self.positive_test()]
        while self.at(",", "op"):
            self.next()
            tests.append(self.positive_test())
        return tests


def parse_expression(text: str, names: Sequence[str] = ()) -> Node:
    p = _Parser(text, names)
    node = p.expression()
    p.done()
    return node


@dataclass(frozen=True, slots=True)
class UnaryTests:
    """A table cell: ``any`` (``-``), or tests (cmp/range/eq nodes), negated for ``not(...)``."""

    tests: tuple[Node, ...] = ()
    negated: bool = False

    @property
    def any(self) -> bool:
        return not self.tests


def parse_unary_tests(text: str, names: Sequence[str] = ()) -> UnaryTests:
    body = text.strip()
    if body in ("-", ""):
        return UnaryTests()
    p = _Parser(body, names)
    negated = False
    if p.at("not", "name") and p.peek(1).text == "(" and p.peek(1).kind == "op":
        # not(...) around the whole cell; not(x) inside a longer expression is FEEL's function
        p.next()
        p.next()
        tests = p.positive_tests()
        p.expect(")")
        if p.peek().kind == "end":
            negated = True
            return UnaryTests(tuple(tests), negated)
        p = _Parser(body, names)
    tests = p.positive_tests()
    p.done()
    return UnaryTests(tuple(tests), negated)


# -- to Baton --------------------------------------------------------------------------------------

@dataclass(slots=True)
class Binding:
    """What a FEEL name stands for in Baton: a field path (``input.age``), a fact type whose fields are the
    name's components (``loan``), or a business knowledge model (its parameters and body)."""

    ref: str = ""  # input.age / loan / approval.value
    kind: str = ""  # str number bool date datetime list record any
    components: dict[str, tuple[str, str]] = field(default_factory=dict)  # FEEL component -> (field, kind)
    params: tuple[str, ...] = ()  # a BKM
    body: Node | None = None
    item: str = ""  # a list's item kind
    dropped: dict[str, str] = field(default_factory=dict)  # components left out: component -> construct


FUNCTIONS_1 = {"abs": "abs", "string length": "len", "upper case": "upper", "lower case": "lower", "string": "text",
               "count": "len"}


@dataclass(slots=True)
class Translator:
    """FEEL trees to Baton text over a scope of names; ``kind_of`` gives the inferred kind of what it wrote."""

    scope: Mapping[str, Binding]
    params: dict[str, tuple[str, str]] = field(default_factory=dict)  # a BKM's parameters while inlined
    depth: int = 0
    on_name: Callable[[str], None] | None = None  # told of each scope name used (the decision's requirements)
    divisors: list[str] = field(default_factory=list)  # every divisor written: FEEL's x / 0 is null

    def kind_of(self, node: Node) -> str:
        return self._write(node)[1]

    def write(self, node: Node) -> str:
        return self._write(node)[0]

    def _resolve(self, name: str) -> tuple[str, str, Binding | None]:
        if name in self.params:
            text, kind = self.params[name]
            return text, kind, None
        b = self.scope.get(name)
        if b is None:
            raise Unsupported("unknown FEEL name", name)
        if b.kind == "dropped":
            raise Unsupported(b.ref, f"{name} has a type Baton lacks")
        if self.on_name is not None:
            self.on_name(name)
        return b.ref, b.kind, b

    def _write(self, node: Node) -> tuple[str, str]:
        k = node.kind
        if k == "num":
            return _number_text(str(node.value)), "number"
        if k == "str":
            return json.dumps(node.value, ensure_ascii=False), "str"
        if k == "bool":
            return ("true" if node.value else "false"), "bool"
        if k == "null":
            raise Unsupported("FEEL null", "a null literal in an expression")
        if k == "name":
            text, kind, b = self._resolve(str(node.value))
            if b is not None and b.params:
                raise Unsupported("business knowledge model used as a value", str(node.value))
            return text, kind
        if k == "path":
            return self._path(node)
        if k == "neg":
            text, kind = self._write(node.args[0])
            return f"-({text})", "number"
        if k == "bin":
            return self._binary(node)
        if k == "cmp":
            return self._comparison(node)
        if k in ("and", "or"):
            left, _ = self._write(node.args[0])
            right, _ = self._write(node.args[1])
            return f"({left} {k} {right})", "bool"
        if k == "between":
            x, _ = self._write(node.args[0])
            lo, _ = self._write(node.args[1])
            hi, _ = self._write(node.args[2])
            return f"({_wrap(x)} >= {_wrap(lo)} and {_wrap(x)} <= {_wrap(hi)})", "bool"
        if k == "list":
            items = [self._write(a) for a in node.args]
            return "[" + ", ".join(t for t, _ in items) + "]", "list"
        if k == "if":
            raise Unsupported("FEEL if-then-else", "Baton has no conditional value; write it as rules")
        if k == "in":
            return self._write(expand_in(node))
        if k == "range":
            raise Unsupported("FEEL range value", "an interval used as a value")
        if k == "call":
            return self._call(node)
        raise Unsupported(f"FEEL {k}")

    def _path(self, node: Node) -> tuple[str, str]:
        """base.component: a record's field, or the years of a years-and-months duration between two dates."""
        base = node.args[0]
        comp = str(node.value)
        if base.kind == "name":
            _, _, b = self._resolve(str(base.value))
            if b is not None and comp in b.components:
                fname, kind = b.components[comp]
                return f"{b.ref}.{fname}", kind
            if b is not None and comp in b.dropped:
                raise Unsupported(b.dropped[comp], f"{base.value}.{comp} has a type Baton lacks")
            raise Unsupported("FEEL path", f"{base.value}.{comp} (no such component)")
        if base.kind == "call" and base.value == "years and months duration" and comp == "years" and \
                len(base.args) == 2:
            # the whole years of the duration between two dates: Baton's years(a, b) counts them as the
            # duration's years do (the months difference, one less when the end's day is before the start's)
            (start, ka), (end, kb) = self._write(base.args[0]), self._write(base.args[1])
            if ka != "date" or kb != "date":
                raise Unsupported("FEEL years and months duration", "between values that are not both dates")
            return f"years({start}, {end})", "number"
        if base.kind == "call" and comp in ("year", "month", "day"):
            raise Unsupported("FEEL date component", comp)
        raise Unsupported("FEEL path", f".{comp} on an expression")

    def _binary(self, node: Node) -> tuple[str, str]:
        """An arithmetic operator, or + joining strings."""
        op = str(node.value)
        left, ka = self._write(node.args[0])
        right, kb = self._write(node.args[1])
        if op == "+" and "str" in (ka, kb):
            return f"{_wrap(left)} + {_wrap(right)}", "str"
        if op in ("+", "-") and {ka, kb} & {"date", "datetime"}:
            raise Unsupported("FEEL date arithmetic", "dates and durations")
        if op == "/" and right not in self.divisors:
            self.divisors.append(right)
        return f"{_wrap(left)} {op} {_wrap(right)}", "number"

    def _comparison(self, node: Node) -> tuple[str, str]:
        """= != < <= > >=, and = null / != null of a name or path (is the field present)."""
        op = {"=": "==", "!=": "!="}.get(str(node.value), str(node.value))
        if any(a.kind == "null" for a in node.args):
            # x = null of a name or path: Baton's x == x holds exactly where the field is present
            other = [a for a in node.args if a.kind != "null"]
            if str(node.value) not in ("=", "!=") or not other or other[0].kind not in ("name", "path"):
                raise Unsupported("FEEL null comparison", "x = null of an expression, or null < x")
            text = _wrap(self.write(other[0]))
            present = f"{text} == {text}"
            return (present if node.value == "!=" else f"not ({present})"), "bool"
        left, _ = self._write(node.args[0])
        right, _ = self._write(node.args[1])
        if op in ("==", "!="):
            return _equality(_wrap(left), _wrap(right), op == "!=", *(not _always(a) for a in node.args)), "bool"
        return f"{_wrap(left)} {op} {_wrap(right)}", "bool"

    def _call(self, node: Node) -> tuple[str, str]:
        name = node.value
        if not isinstance(name, str):
            raise Unsupported("FEEL call of an expression")
        args = node.args
        if name in self.scope and self.scope[name].params:
            return self._invoke(self.scope[name], name, args)
        if name == "not" and len(args) == 1:
            # FEEL's not(null) is null, Baton's not of a condition over an absent field is true: not() is
            # imported only where a boolean decision is split into true-when / false-when rules
            raise Unsupported("FEEL not() as a value", "true in Baton where its operand is null (null in FEEL); "
                              "only a boolean decision's not() is imported")
        if name in FUNCTIONS_1 and len(args) == 1:
            text, kind = self._write(args[0])
            if name == "count" and kind != "list":
                raise Unsupported("FEEL function", "count of a value that is not a list")
            return f"{FUNCTIONS_1[name]}({text})", "number" if name in ("abs", "string length", "count") else "str"
        found = self._aggregate_call(name, args) or self._string_call(name, args)
        if found is not None:
            return found
        if name in ("decimal", "round half even") and len(args) == 2:  # both round half to even
            return f"round({self.write(args[0])}, {self.write(args[1])})", "number"
        if name in ("date", "date and time") and len(args) == 1 and args[0].kind == "str":
            fn = "date" if name == "date" else "datetime"
            return f"{fn}({json.dumps(args[0].value)})", fn
        if name == "list contains" and len(args) == 2:
            return f"{_wrap(self.write(args[0]))} contains {_wrap(self.write(args[1]))}", "bool"
        if name == "contains" and len(args) == 2:
            return f"{_wrap(self.write(args[0]))} contains {_wrap(self.write(args[1]))}", "bool"
        if name == "number" and len(args) == 1 and args[0].kind == "str":
            return _number_text(str(args[0].value)), "number"
        raise Unsupported("FEEL function Baton lacks", f"{name}({len(args)} argument{'s' if len(args) != 1 else ''})")

    def _aggregate_call(self, name: str, args: Sequence[Node]) -> tuple[str, str] | None:
        """min, max and sum: of a list value, or of values listed (None: not one of these)."""
        if name in ("min", "max") and args:
            items = list(args[0].args) if len(args) == 1 and args[0].kind == "list" else list(args)
            if len(args) == 1 and args[0].kind != "list":  # of a list value: Baton's function of a list
                text, kind = self._write(args[0])
                if kind != "list":
                    raise Unsupported("FEEL function", f"{name} of a value that is not a list")
                return f"{name}({_as_list_value(text)})", "number"
            if len(items) == 1:
                return self._write(items[0])
            written = [self._write(a) for a in items]
            return f"{name}({', '.join(t for t, _ in written)})", written[0][1]
        if name == "sum" and len(args) == 1 and args[0].kind != "list":
            text, kind = self._write(args[0])
            if kind != "list":
                raise Unsupported("FEEL function", "sum of a value that is not a list")
            return f"sum({_as_list_value(text)})", "number"
        if name == "sum" and len(args) == 1 and args[0].kind == "list":
            terms = [self._write(a)[0] for a in args[0].args]
            return ("(" + " + ".join(_wrap(t) for t in terms) + ")") if terms else "0", "number"
        return None

    def _string_call(self, name: str, args: Sequence[Node]) -> tuple[str, str] | None:
        """starts with, ends with, matches and string join (None: not one of these)."""
        if name in ("starts with", "ends with") and len(args) == 2:
            if args[1].kind != "str":
                raise Unsupported(f"FEEL {name}", "a match string that is not a literal")
            text, kind = self._write(args[0])
            if kind not in ("str", "any"):
                raise Unsupported(f"FEEL {name}", "of a value that is not a string")
            body = _re2_literal(str(args[1].value))
            pattern = "^" + body if name == "starts with" else body + "$"
            return f"{_wrap(text)} matches {json.dumps(pattern, ensure_ascii=False)}", "bool"
        if name == "matches" and len(args) in (2, 3):
            if len(args) == 3:
                raise Unsupported("FEEL matches with flags", "matches(input, pattern, flags)")
            if args[1].kind != "str":
                raise Unsupported("FEEL matches", "a pattern that is not a literal")
            text, kind = self._write(args[0])
            if kind not in ("str", "any"):
                raise Unsupported("FEEL matches", "of a value that is not a string")
            return f"{_wrap(text)} matches {json.dumps(xsd_regex(str(args[1].value)), ensure_ascii=False)}", "bool"
        if name == "string join" and len(args) in (1, 2):
            text, kind = self._write(args[0])
            if kind != "list":
                raise Unsupported("FEEL string join", "of a value that is not a list")
            sep = self.write(args[1]) if len(args) == 2 else '""'
            if len(args) == 2 and args[1].kind != "str":
                raise Unsupported("FEEL string join", "a delimiter that is not a literal")
            return f"join({_as_list_value(text)}, {sep})", "str"
        return None

    def _invoke(self, bkm: Binding, name: str, args: Sequence[Node]) -> tuple[str, str]:
        if len(args) != len(bkm.params):
            raise Unsupported("business knowledge model invocation", f"{name} takes {len(bkm.params)} arguments")
        if bkm.body is None:
            raise Unsupported("business knowledge model", f"{name}: only a literal expression body is imported")
        if self.depth > 16:
            raise Unsupported("recursive business knowledge model", name)
        bound = {p: (f"({self.write(a)})", self.kind_of(a)) for p, a in zip(bkm.params, args, strict=True)}
        inner = Translator(self.scope, bound, self.depth + 1, self.on_name, self.divisors)
        text, kind = inner._write(bkm.body)
        return f"({text})", kind


PREDICATES = ("starts with", "ends with", "matches", "contains", "list contains")


def _re2_literal(text: str) -> str:
    """A literal string as an RE2 pattern matching exactly it."""
    return "".join("\\" + ch if ch in "\\.+*?()|[]{}^$" else ch for ch in text)


def xsd_regex(pattern: str) -> str:
    """A FEEL (XML Schema / XPath) regular expression as RE2, where both mean the same; else Unsupported.
    ``\\d`` is any Unicode digit in XPath (``\\p{Nd}`` in RE2); ``\\w``, ``\\s``, ``\\i``, ``\\c``, back-references,
    character class subtraction and Unicode block names (``\\p{IsBasicLatin}``) differ or are missing: refused."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "dD" and not in_class:
                out.append("\\p{Nd}" if nxt == "d" else "\\P{Nd}")
            elif nxt in "pP" and pattern.startswith("{Is", i + 2):
                block = pattern[i:pattern.find("}", i) + 1]
                raise Unsupported("FEEL matches", f"Unicode block {block} (RE2 lacks blocks)")
            elif nxt.isalnum() and nxt not in "nrtpP":
                raise Unsupported("FEEL matches", f"the escape \\{nxt} (XPath and RE2 read it differently)")
            else:
                out.append(ch + nxt)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        elif ch == "-" and in_class and pattern.startswith("[", i + 1):
            raise Unsupported("FEEL matches", "character class subtraction [a-z-[aeiou]]")
        out.append(ch)
        i += 1
    text = "".join(out)
    try:
        compile_regex(text)
    except Exception as e:  # any refusal of the pattern
        raise Unsupported("FEEL matches", f"a pattern Baton's RE2 refuses: {e}") from None
    return text


def expand_in(node: Node) -> Node:
    """``x in tests`` as comparisons: ``x in [a..b]`` is ``x >= a and x <= b``, ``x in (< 5, 7)`` is
    ``x < 5 or x = 7``. A null ``x`` makes every comparison null, as FEEL's ``in`` gives. A list literal is
    refused: FEEL's list membership of null is not a comparison."""
    x, *tests = node.args
    parts: list[Node] = []
    for t in tests:
        if t.kind == "cmp":
            parts.append(Node("cmp", t.value, (x, t.args[0])))
            continue
        value = t if t.kind == "range" else t.args[0]
        if value.kind == "range":
            lo, hi = value.args
            lo_closed, hi_closed = value.extra
            parts.append(Node("and", args=(Node("cmp", ">=" if lo_closed else ">", (x, lo)),
                                           Node("cmp", "<=" if hi_closed else "<", (x, hi)))))
        elif value.kind in ("list", "null"):
            raise Unsupported("FEEL 'in' expression", "x in a list or null outside a table cell")
        else:
            parts.append(Node("cmp", "=", (x, value)))
    out = parts[0]
    for p in parts[1:]:
        out = Node("or", args=(out, p))
    return out


def desugar(node: Node) -> Node:
    """``floor(x)`` and ``ceiling(x)`` as conditionals over Baton's ``round`` (the nearest whole number):
    ``floor(x)`` is ``round(x)`` where that is not above ``x``, else one less. Only where conditionals
    become rules (a literal expression decision)."""
    args = tuple(desugar(a) for a in node.args)
    if node.kind == "call" and node.value in ("floor", "ceiling") and len(args) == 1:
        r = Node("call", "decimal", (args[0], Node("num", "0")), ("decimal",))
        if node.value == "floor":
            return Node("if", args=(Node("cmp", "<=", (r, args[0])), r, Node("bin", "-", (r, Node("num", "1")))))
        return Node("if", args=(Node("cmp", ">=", (r, args[0])), r, Node("bin", "+", (r, Node("num", "1")))))
    return Node(node.kind, node.value, args, node.extra) if args != node.args else node


def split_if(node: Node) -> tuple[Node, Node, Node] | None:
    """The first ``if`` inside an expression (not at its top): (condition, the expression with the then
    branch in its place, with the else branch). FEEL expressions have no side effects, so
    ``f(if c then a else b)`` is ``if c then f(a) else f(b)``."""
    for i, a in enumerate(node.args):
        if a.kind == "if":
            cond, then, other = a.args
            return (cond, Node(node.kind, node.value, (*node.args[:i], then, *node.args[i + 1:]), node.extra),
                    Node(node.kind, node.value, (*node.args[:i], other, *node.args[i + 1:]), node.extra))
        inner = split_if(a)
        if inner is not None:
            cond, t, e = inner
            return (cond, Node(node.kind, node.value, (*node.args[:i], t, *node.args[i + 1:]), node.extra),
                    Node(node.kind, node.value, (*node.args[:i], e, *node.args[i + 1:]), node.extra))
    return None


def _always(node: Node) -> bool:
    """Is this expression never null (a literal)?"""
    if node.kind in ("num", "str", "bool"):
        return True
    if node.kind == "list":
        return all(_always(a) for a in node.args)
    return node.kind == "call" and node.value in ("date", "date and time") and len(node.args) == 1 and \
        node.args[0].kind == "str"


def _equality(left: str, right: str, negate: bool, left_null: bool, right_null: bool) -> str:
    """FEEL's ``=`` and ``!=``, which are never null: ``null = null`` is true, ``x = null`` false for any other
    ``x`` (so ``x != "a"`` is true where x is null). Baton's comparison with an absent value is false, so
    where an operand may be absent its presence (``x == x``) is tested too."""
    lp, rp = f"{left} == {left}", f"{right} == {right}"
    if not negate:
        if left_null and right_null:
            return f"({left} == {right} or (not ({lp}) and not ({rp})))"
        return f"{left} == {right}"
    parts = [f"{left} != {right}"]
    if left_null and right_null:
        parts += [f"(not ({lp}) and {rp})", f"({lp} and not ({rp}))"]
    elif left_null:
        parts.append(f"not ({lp})")
    elif right_null:
        parts.append(f"not ({rp})")
    return f"({' or '.join(parts)})" if len(parts) > 1 else parts[0]


def _as_list_value(text: str) -> str:
    """A list field as a list value: Baton reads ``sum(fact.field)`` as an aggregate over facts, so a field
    path is passed through ``sort`` (the same numbers) to be the function of its list."""
    return f"sort({text})" if re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", text) else text


def is_null(node: Node) -> bool:
    """Is this expression null whatever the inputs (null, or arithmetic and comparisons on a null literal)?"""
    if node.kind == "null":
        return True
    if node.kind in ("bin", "neg") or (node.kind == "cmp" and node.value not in ("=", "!=")):  # x = null: a test
        return any(is_null(a) for a in node.args)
    return False


def _wrap(text: str) -> str:
    """Brackets around a written operand unless it is atomic."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*|-?\d+(\.\d+)?|\"(?:[^\"\\]|\\.)*\"|\(.*\)", text) and _balanced(text):
        return text
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\(.*\)", text) and _balanced(text):
        return text
    return f"({text})"


def _balanced(text: str) -> bool:
    depth, quote = 0, False
    for i, ch in enumerate(text):
        if quote:
            if ch == '"' and text[i - 1] != "\\":
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(text) - 1 and text[0] == "(":
                return False  # "(a) + (b)" is not one bracketed group
    return depth == 0


def _number_text(text: str) -> str:
    neg = text.startswith("-")
    body = text[1:] if neg else text
    if body.startswith("."):
        body = "0" + body
    return ("-" if neg else "") + body


# -- cells -----------------------------------------------------------------------------------------

def cell_text(tests: UnaryTests, tr: Translator, column_kind: str) -> str:
    """A table cell in Baton's unary-test syntax."""
    if tests.any:
        return "-"
    parts = [_test_text(t, tr, column_kind) for t in tests.tests]
    body = ", ".join(parts)
    return f"not({body})" if tests.negated else body


def _test_text(test: Node, tr: Translator, column_kind: str) -> str:
    if test.kind == "cmp":
        (bound,) = test.args
        if bound.kind == "null":
            raise Unsupported("FEEL null test", "a cell comparing with null")
        op = {"=": "=="}.get(str(test.value), str(test.value))
        return f"{op} {_bound(bound, tr)}"
    if test.kind == "range":
        lo, hi = test.args
        lo_closed, hi_closed = test.extra
        return f"{'[' if lo_closed else '('}{_bound(lo, tr)}..{_bound(hi, tr)}{']' if hi_closed else ')'}"
    (value,) = test.args
    if value.kind == "null":
        raise Unsupported("FEEL null test", "a cell testing for null")
    if value.kind == "bool":
        return "true" if value.value else "false"
    if value.kind == "range":
        return _test_text(value, tr, column_kind)
    text, kind = tr._write(value)
    if kind == "list" and column_kind != "list":
        return f"in {text}"
    if kind == "bool" and column_kind != "bool" and value.kind not in ("name", "path"):
        raise Unsupported("FEEL boolean unary test", "a cell that is a condition rather than a value")
    return text


def _bound(node: Node, tr: Translator) -> str:
    return tr.write(node)


__all__ = ["Binding", "FeelSyntax", "Node", "Translator", "UnaryTests", "Unsupported", "cell_text",
           "parse_expression", "parse_unary_tests", "tokenize"]
