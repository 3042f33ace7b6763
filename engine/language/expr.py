"""Condition expressions: a tokenizer and a small Pratt parser. Never ``eval``.

Grammar (lowest binding first)::

    when     := expr ((',' | 'where') expr)*          -- commas and 'where' join like 'and'
    expr     := expr 'or' expr | expr 'and' expr | 'not' expr
              | sum (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in'
                      | 'contains' | 'matches') sum)?
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/') unary)*
    unary    := '-' power | power                     -- '-' before an unbracketed power: ambiguous_power
    power    := atom ('**' unary)?                    -- right-associative, tighter than '*' and '/'
    atom     := NUMBER | STRING | 'true' | 'false' | '[' (expr (',' expr)*)? ']' | '(' expr ')'
              | 'exists' TYPE | 'not' 'exists' TYPE | TYPE 'as' ALIAS | NAME '.' FIELD | NAME
              | NAME '(' (expr (',' expr)* ('where' expr)?)? ')'      -- a function or an aggregate

A bare NAME is a named value or a definition (the ruleset's ``values:`` and ``define:``): while a
:func:`vocabulary` is in force, the parser puts the value, or the definition's parsed expression, in its
place - a use means exactly the definition written there in brackets.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
class Name(Node):
    """A bare name: a named value or a definition, replaced while parsing (see :func:`vocabulary`)."""

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
ARITHMETIC = ("+", "-", "*", "/", "**")
KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "exists", "as", "true", "false", "where"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*\*|\*|/|\(|\)|\[|\]|,|\.)
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


def tokenize(text: str, base: int = 0) -> list[Token]:
    """The tokens of ``text``; positions count from ``base`` (a definition's own region, see REGION)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprError("syntax_error", f"unexpected character {text[pos]!r}", base + pos,
                            "conditions use names, numbers, quoted strings and operators")
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "number":
            tokens.append(Token("number", tok, base + pos, float(tok) if any(c in tok for c in ".eE") else int(tok)))
        elif kind == "string":
            tokens.append(Token("string", tok, base + pos, _unquote(tok, pos)))
        elif kind == "name":  # the same few names recur in every rule: one string each (interned)
            tokens.append(Token(kind, sys.intern(tok), base + pos))
        elif kind != "ws":
            tokens.append(Token(kind, tok, base + pos))
        pos = m.end()
    tokens.append(Token("end", "", base + len(text)))
    return tokens


_INFIX_BP: dict[str, int] = {
    ",": 1, "where": 1, "or": 2, "and": 3,
    **{op: 5 for op in COMPARISONS}, "in": 5, "contains": 5, "matches": 5, "not": 5,
    "+": 6, "-": 6, "*": 7, "/": 7, "**": 8,
}
POWER_BP = 8
REGION = 10_000_000  # definition k's text has positions REGION * (k + 1) + offset (see engine/language/names.py)
Resolver = Callable[[str, int], "Node | None"]
# The names of the ruleset being loaded (values and definitions): NAME -> the node that stands for it, and
# every name known (for did-you-mean hints).
_VOCABULARY: ContextVar[tuple[Resolver, Callable[[], tuple[str, ...]]] | None] = ContextVar("baton_vocabulary",
                                                                                          default=None)


@contextmanager
def vocabulary(resolve: Resolver, names: Callable[[], tuple[str, ...]]) -> Iterator[None]:
    """While in force, a bare name parses as ``resolve(name, position)`` (None: not a known name)."""
    token = _VOCABULARY.set((resolve, names))
    try:
        yield
    finally:
        _VOCABULARY.reset(token)


def known_names() -> tuple[str, ...]:
    """The values and definitions of the ruleset being loaded."""
    current = _VOCABULARY.get()
    return current[1]() if current is not None else ()


def _resolve(word: str, pos: int) -> Node | None:
    current = _VOCABULARY.get()
    return current[0](word, pos) if current is not None else None


MAX_TREE = 200  # operations inside each other, after a chain such as a + b + c nests each + in the next


def _deepest(root: Node) -> Node | None:
    """The first node deeper than :data:`MAX_TREE` (None: none is). Iterative: it walks trees that every
    recursive pass after the parser would overflow on; the parser's own recursion is bounded by MAX_DEPTH,
    but a chain of 20,000 additions parses flat into a tree 20,000 deep."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE:
            return node
        for name in getattr(node, "__slots__", ()):
            value = getattr(node, name, None)
            if isinstance(value, Node):
                stack.append((value, depth + 1))
            elif isinstance(value, tuple):
                stack.extend((v, depth + 1) for v in value if isinstance(v, Node))
    return None


class Parser:
    def __init__(self, text: str, base: int = 0) -> None:
        self.text = text
        self.tokens = tokenize(text, base)
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
            raise ExprError("syntax_error", "empty condition", self.peek().pos,
                            "write a condition such as: exists claim")
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError("syntax_error", f"unexpected {describe(tok)}", tok.pos,
                            "join conditions with 'and' or 'or'")
        deepest = _deepest(node)
        if deepest is not None:
            raise ExprError("too_deep", f"expression more than {MAX_TREE} operations deep", deepest.pos,
                            "name parts of it in define:, or split it over several rules")
        return node

    def expr(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError("too_deep", "condition nested too deeply", self.peek().pos,
                            f"at most {MAX_DEPTH} levels of nesting")
        left = self.prefix()
        # a chain of one boolean operator (a and b and c ...) gathers its operands in a list, built into one
        # BoolOp when the chain ends: growing a tuple per operand made a long chain quadratic in its length
        chain: list[Node] | None = None
        chain_kind, chain_pos = "", 0
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
                if chain is not None and chain_kind == kind:
                    chain.append(right)
                    continue
                if chain is not None:
                    left, chain = BoolOp(chain_pos, chain_kind, tuple(chain)), None
                if isinstance(left, BoolOp) and left.op == kind:
                    chain, chain_pos = [*left.operands, right], left.pos
                else:
                    chain, chain_pos = [left, right], tok.pos
                chain_kind = kind
                continue
            if chain is not None:
                left, chain = BoolOp(chain_pos, chain_kind, tuple(chain)), None
            right = self.expr(bp - 1 if op == "**" else bp)  # a ** b ** c is a ** (b ** c)
            if (op in COMPARISONS or op in MEMBERSHIP) and isinstance(left, Binary) and (
                    left.op in COMPARISONS or left.op in MEMBERSHIP):
                raise ExprError("syntax_error", f"comparisons cannot be chained ('{left.op}' then '{op}')",
                                tok.pos, "join two comparisons with 'and'")
            left = Binary(tok.pos, op, left, right)
        if chain is not None:
            left = BoolOp(chain_pos, chain_kind, tuple(chain))
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
                operand = self.expr(POWER_BP)
                if self.peek().text == "**" and self.peek().kind == "op":
                    raise ExprError("ambiguous_power", "'-x ** n' can mean (-x) ** n or -(x ** n)", tok.pos,
                                    "write the brackets: -(x ** n) or (-x) ** n")
                return Neg(tok.pos, operand)
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
            return self.name(tok)
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
            named = _resolve(tok.text, tok.pos)
            return named if named is not None else TypeName(tok.pos, tok.text)
        return self.expr(1)

    def name(self, tok: Token) -> Node:
        """A bare name: the value or definition it names, else a Name the checker reports."""
        named = _resolve(tok.text, tok.pos)
        return named if named is not None else Name(tok.pos, tok.text)

    def type_name(self) -> str:
        tok = self.next()
        if tok.kind != "name" or tok.text in KEYWORDS:
            raise ExprError("syntax_error", f"expected a fact type after 'exists' but found {describe(tok)}",
                            tok.pos)
        return tok.text


def describe(tok: Token) -> str:
    return "the end of the condition" if tok.kind == "end" else f"'{tok.text}'"


def parse(text: str, base: int = 0) -> Node:
    return Parser(text, base).parse()


def render(node: Node) -> str:
    """A condition part as the analyst would write it."""
    if isinstance(node, Lit):
        return ("true" if node.value else "false") if isinstance(node.value, bool) else (
            f'"{node.value}"' if isinstance(node.value, str) else repr(node.value))
    if isinstance(node, ListLit):
        return "[" + ", ".join(render(i) for i in node.items) + "]"
    if isinstance(node, Ref):
        return f"{node.binding}.{node.field}"
    if isinstance(node, (TypeName, Name)):
        return node.name
    if isinstance(node, Call):
        name = node.name.split(":")[0]
        if name == "$key":
            return render(node.args[0])
        where = f" where {render(node.where)}" if node.where is not None else ""
        args = node.args[:1] if name == "list" else node.args  # list(T): the fields it keeps are not written
        return f"{name}({', '.join(render(a) for a in args)}{where})"
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
    left = f"({render(node.left)})" if node.op == "**" and isinstance(node.left, Neg) else _paren(node.left)
    return f"{left} {node.op} {_paren(node.right)}"


def _paren(node: Node) -> str:
    text = render(node)
    return f"({text})" if isinstance(node, (BoolOp, Binary)) else text
