"""Condition expressions: a tokenizer and a small Pratt parser. Never ``eval``.

Grammar (lowest binding first)::

    when     := expr ((',' | 'where') expr)*          -- commas and 'where' join like 'and'
    expr     := expr 'or' expr | expr 'and' expr | 'not' expr
              | sum (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in'
                      | 'contains' | 'matches') sum)?
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/') unary)*
    unary    := '-' unary | atom
    atom     := NUMBER | STRING | 'true' | 'false' | '[' (expr (',' expr)*)? ']' | '(' expr ')'
              | 'exists' TYPE | 'not' 'exists' TYPE | TYPE 'as' ALIAS | NAME '.' FIELD | NAME
              | NAME '(' (expr (',' expr)* ('where' expr)?)? ')'      -- a function or an aggregate
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import BatonError


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Lit(Node):
    value: str | float | int | bool


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """``binding.field``: binding is a fact type name or an alias."""

    binding: str
    field: str


@dataclass(frozen=True, slots=True)
class Exists(Node):
    type_name: str
    negated: bool


@dataclass(frozen=True, slots=True)
class Bind(Node):
    """``claim as a``: declares alias ``a`` for a fact of type ``claim``."""

    type_name: str
    alias: str


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class TypeName(Node):
    """A bare fact type as an aggregate's argument: ``count(loan)``."""

    name: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``name(arg, ...)``: a function (``len``, ``days``, ``date``, ...), or an aggregate over the facts of
    one type, ``sum(loan.amount where loan.status == "open")`` (``where`` holds the filter, or None)."""

    name: str
    args: tuple[Node, ...]
    where: Node | None = None


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
MEMBERSHIP = ("in", "not in", "contains", "matches")
ARITHMETIC = ("+", "-", "*", "/")
KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "exists", "as", "true", "false", "where"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number | string | name | op | end
    text: str
    pos: int
    value: object = None


class ExprError(BatonError):
    """An expression error whose position is an offset into the expression text."""

    def __init__(self, code: str, message: str, offset: int, hint: str = "") -> None:
        super().__init__(code, message, None, hint)
        self.offset = offset


def _unquote(text: str, pos: int) -> str:
    out: list[str] = []
    i = 1
    while i < len(text) - 1:
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1]
            # An unknown escape keeps its backslash, so regular expressions read naturally ("\d+").
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprError("syntax_error", f"unexpected character {text[pos]!r}", pos,
                            "conditions use names, numbers, quoted strings and operators")
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "number":
            tokens.append(Token("number", tok, pos, float(tok) if any(c in tok for c in ".eE") else int(tok)))
        elif kind == "string":
            tokens.append(Token("string", tok, pos, _unquote(tok, pos)))
        elif kind != "ws":
            tokens.append(Token(kind, tok, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


_INFIX_BP: dict[str, int] = {
    ",": 1, "where": 1, "or": 2, "and": 3,
    **{op: 5 for op in COMPARISONS}, "in": 5, "contains": 5, "matches": 5, "not": 5,
    "+": 6, "-": 6, "*": 7, "/": 7,
}


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> Token:
        tok = self.next()
        if tok.text != text or tok.kind == "string":
            raise ExprError("syntax_error", f"expected '{text}' but found {describe(tok)}", tok.pos)
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ExprError("syntax_error", "empty condition", 0, "write a condition such as: exists claim")
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError("syntax_error", f"unexpected {describe(tok)}", tok.pos,
                            "join conditions with 'and' or 'or'")
        return node

    def expr(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError("too_deep", "condition nested too deeply", self.peek().pos,
                            f"at most {MAX_DEPTH} levels of nesting")
        left = self.prefix()
        while True:
            tok = self.peek()
            op = tok.text if tok.kind in ("op", "name") else ""
            bp = _INFIX_BP.get(op, 0)
            if bp == 0 or bp <= min_bp:
                break
            self.next()
            if op == "not":
                self.expect("in")
                op = "not in"
            if op in (",", "where", "and", "or"):
                right = self.expr(bp)
                kind = "or" if op == "or" else "and"
                if isinstance(left, BoolOp) and left.op == kind:
                    left = BoolOp(left.pos, kind, (*left.operands, right))
                else:
                    left = BoolOp(tok.pos, kind, (left, right))
                continue
            right = self.expr(bp)
            if (op in COMPARISONS or op in MEMBERSHIP) and isinstance(left, Binary) and (
                    left.op in COMPARISONS or left.op in MEMBERSHIP):
                raise ExprError("syntax_error", f"comparisons cannot be chained ('{left.op}' then '{op}')",
                                tok.pos, "join two comparisons with 'and'")
            left = Binary(tok.pos, op, left, right)
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        tok = self.next()
        if tok.kind == "number":
            assert isinstance(tok.value, (int, float))
            return Lit(tok.pos, tok.value)
        if tok.kind == "string":
            assert isinstance(tok.value, str)
            return Lit(tok.pos, tok.value)
        if tok.kind == "op":
            if tok.text == "(":
                inner = self.expr(0)
                self.expect(")")
                return inner
            if tok.text == "[":
                items: list[Node] = []
                if self.peek().text != "]":
                    items.append(self.expr(1))
                    while self.peek().text == ",":
                        self.next()
                        items.append(self.expr(1))
                self.expect("]")
                return ListLit(tok.pos, tuple(items))
            if tok.text == "-":
                return Neg(tok.pos, self.expr(7))
            raise ExprError("syntax_error", f"unexpected {describe(tok)}", tok.pos)
        if tok.kind == "name":
            word = tok.text
            if word in ("true", "false"):
                return Lit(tok.pos, word == "true")
            if word == "not":
                if self.peek().text == "exists":
                    self.next()
                    return Exists(tok.pos, self.type_name(), True)
                return Not(tok.pos, self.expr(4))
            if word == "exists":
                return Exists(tok.pos, self.type_name(), False)
            if word in KEYWORDS:
                raise ExprError("syntax_error", f"unexpected '{word}'", tok.pos)
            if self.peek().text == "(" and self.peek().kind == "op":
                return self.call(tok)
            if self.peek().text == ".":
                self.next()
                fld = self.next()
                if fld.kind != "name":
                    raise ExprError("syntax_error", f"expected a field name after '{word}.'", fld.pos)
                return Ref(tok.pos, word, fld.text)
            if self.peek().text == "as":
                self.next()
                alias = self.next()
                if alias.kind != "name" or alias.text in KEYWORDS:
                    raise ExprError("syntax_error", f"expected an alias name after '{word} as'", alias.pos)
                return Bind(tok.pos, word, alias.text)
            raise ExprError("syntax_error", f"'{word}' needs a field, as in {word}.field", tok.pos,
                            f"write 'exists {word}' to test that a {word} fact exists")
        raise ExprError("syntax_error", "the condition ends too early", tok.pos)

    def call(self, name: Token) -> Call:
        self.expect("(")
        args: list[Node] = []
        where: Node | None = None
        if self.peek().text != ")":
            args.append(self.argument())
            while self.peek().text == "," and self.peek().kind == "op":
                self.next()
                args.append(self.argument())
            if self.peek().text == "where" and self.peek().kind == "name":
                self.next()
                where = self.expr(1)
        tok = self.peek()
        if tok.text != ")" or tok.kind != "op":
            raise ExprError("syntax_error", f"expected ')' to close {name.text}( but found {describe(tok)}", tok.pos,
                            "separate arguments with ',': min(a, b)")
        self.next()
        return Call(name.pos, name.text, tuple(args), where)

    def argument(self) -> Node:
        tok = self.peek()
        after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else tok
        if tok.kind == "name" and tok.text not in KEYWORDS and after.text in (")", "where", ",") \
                and after.kind in ("op", "name"):
            self.next()
            return TypeName(tok.pos, tok.text)
        return self.expr(1)

    def type_name(self) -> str:
        tok = self.next()
        if tok.kind != "name" or tok.text in KEYWORDS:
            raise ExprError("syntax_error", f"expected a fact type after 'exists' but found {describe(tok)}",
                            tok.pos)
        return tok.text


def describe(tok: Token) -> str:
    return "the end of the condition" if tok.kind == "end" else f"'{tok.text}'"


def parse(text: str) -> Node:
    return Parser(text).parse()


def render(node: Node) -> str:
    """A condition part as the analyst would write it."""
    if isinstance(node, Lit):
        return ("true" if node.value else "false") if isinstance(node.value, bool) else (
            f'"{node.value}"' if isinstance(node.value, str) else repr(node.value))
    if isinstance(node, ListLit):
        return "[" + ", ".join(render(i) for i in node.items) + "]"
    if isinstance(node, Ref):
        return f"{node.binding}.{node.field}"
    if isinstance(node, TypeName):
        return node.name
    if isinstance(node, Call):
        name = node.name.split(":")[0]
        if name == "$key":
            return render(node.args[0])
        where = f" where {render(node.where)}" if node.where is not None else ""
        return f"{name}({', '.join(render(a) for a in node.args)}{where})"
    if isinstance(node, Exists):
        return f"{'not ' if node.negated else ''}exists {node.type_name}"
    if isinstance(node, Bind):
        return f"{node.type_name} as {node.alias}"
    if isinstance(node, Not):
        return f"not {_paren(node.operand)}"
    if isinstance(node, Neg):
        return f"-{_paren(node.operand)}"
    if isinstance(node, BoolOp):
        return f" {node.op} ".join(_paren(o) for o in node.operands)
    assert isinstance(node, Binary)
    return f"{_paren(node.left)} {node.op} {_paren(node.right)}"


def _paren(node: Node) -> str:
    text = render(node)
    return f"({text})" if isinstance(node, (BoolOp, Binary)) else text
