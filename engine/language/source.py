"""YAML with source positions: plain containers that know where each key, value and item stands."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tag import Tag

from engine.errors import BatonError, Where

MAX_SOURCE = 2_000_000
MAX_DEPTH = 64  # mappings and sequences inside each other; a ruleset needs about ten
ALIAS_NODES = 10_000  # what aliases may add before the document's own size bounds them (see _guard)


@dataclass(frozen=True, slots=True)
class SourceLimits:
    """What one ruleset may hold, refused by name before anything is built from it (configurable in the
    service as ``limits.ruleset_*``)."""

    max_chars: int = MAX_SOURCE
    max_rules: int = 20_000
    max_table_rows: int = 20_000


DEFAULT_LIMITS = SourceLimits()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Building a large ruleset allocates millions of objects that all live on; the cyclic collector
    would walk them again and again meanwhile, a large share of a big ruleset's compile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_yaml(text: str, file: str, limits: SourceLimits = DEFAULT_LIMITS) -> Any:
    """The document as plain containers that know where each key, value and item stands in the file.

    libyaml (PyYAML's C parser) reads the structure, and each plain scalar is typed by ruamel.yaml's
    YAML 1.2 rules and constructor, so values - and so the content hash of a ruleset - are exactly what
    the round-trip parser gives (tests/engine/test_source.py compares them). A document using anchors,
    aliases, merge keys or explicit tags takes ruamel.yaml's round-trip parser, which is pure Python and
    much slower.
    Before anything is built, :func:`_guard` refuses alias expansion and nesting beyond their bounds."""
    _check_size(text, file, limits)
    try:
        if _guard(text, file):
            raise _Unusual
        return _Fast(text).document()
    except _Unusual:
        return _from_round_trip(_round_trip(text, file))
    except yaml.MarkedYAMLError as e:
        raise _syntax(e, file) from None
    except yaml.reader.ReaderError as e:  # a character YAML never allows (NUL, most control characters)
        raise _unreadable(e, text, file) from None
    except yaml.YAMLError as e:
        raise BatonError("yaml_syntax", f"YAML syntax: {e}", Where(file, 1, 1)) from None


def _unreadable(e: yaml.reader.ReaderError, text: str, file: str) -> BatonError:
    """At the character itself: the reader gives only its offset, in UTF-8 bytes from libyaml."""
    at = max(e.position, 0)
    if _LOADER is not yaml.SafeLoader:
        at = len(text.encode("utf-8", "surrogatepass")[:at].decode("utf-8", "ignore"))
    at = min(at, len(text))
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or " ")
    return BatonError("yaml_syntax", f"YAML syntax: the character U+{code:04X} is not allowed in YAML",
                      Where(file, line, column), "remove it, or write it as an escape inside double quotes (\\x00)")


def _check_size(text: str, file: str, limits: SourceLimits) -> None:
    if len(text) > limits.max_chars:
        raise BatonError("too_large", f"ruleset file is larger than {limits.max_chars:,} characters "
                         f"({len(text):,}; limits.ruleset_max_chars)", Where(file, 1, 1),
                         "split the ruleset, or raise the limit in the service's configuration")


def _syntax(e: Any, file: str) -> BatonError:
    """A YAML parser's error (PyYAML's or ruamel's) at its place. A flow mapping or list left open - a
    missing ``}`` or ``]`` - is found only where the parser meets what cannot go on: reported there, it
    points lines past the mistake, so it stands at the bracket left open instead."""
    mark, problem, context = e.problem_mark or e.context_mark, e.problem, e.context
    opened = e.context_mark
    if context and context.startswith("while parsing a flow") and opened is not None and mark is not None \
            and opened.line < mark.line:
        bracket = "{" if "mapping" in context else "["
        return BatonError("yaml_syntax", f"YAML syntax: this '{bracket}' is never closed (at line {mark.line + 1}: "
                          f"{(problem or 'invalid YAML').strip()})",
                          Where(file, opened.line + 1, opened.column + 1),
                          f"close it with '{'}' if bracket == '{' else ']'}' on this line, or write the value as a "
                          "block (one key per line)")
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = problem or context
    if problem and "maximum nesting depth" in problem:  # libyaml's own bound (1,000), met before MAX_DEPTH's
        return BatonError("yaml_nesting", f"mappings and lists nested more than {MAX_DEPTH} deep",
                          Where(file, line, col), "a ruleset needs far fewer levels")
    return BatonError("yaml_syntax", f"YAML syntax: {(problem or 'invalid YAML').strip()}", Where(file, line, col),
                      "check indentation and quoting around this place")


def _guard(text: str, file: str) -> bool:
    """Walk libyaml's events (a flat stream: nothing is built, nothing recurses) and refuse a document whose
    aliases would expand it - a "billion laughs" of nine aliases of nine aliases is 330 bytes and a billion
    nodes - or whose containers nest deeper than :data:`MAX_DEPTH`. Aliases may add up to
    :data:`ALIAS_NODES` nodes, and beyond that no more than the document itself holds so far; an alias to
    a container still open (a recursive document) is refused too. The error stands at the alias or the
    container that goes over. True when the document uses anchors, aliases, merge keys or explicit tags:
    what the fast path leaves to the round-trip parser."""
    open_: list[list[Any]] = []  # per open container: [nodes so far, its anchor]
    sizes: dict[str, int] = {}
    own = added = 0
    unusual = False
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.NodeEvent) and (event.anchor or getattr(event, "tag", None)):
            unusual = True
        if isinstance(event, yaml.ScalarEvent):
            if event.style is None and event.value == "<<":
                unusual = True
            own += 1
            if open_:
                open_[-1][0] += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            unusual = True
            if event.anchor not in sizes:
                refused = "refers to a mapping or list that contains it" if any(
                    anchor == event.anchor for _, anchor in open_) else "names no anchor before it"
                raise BatonError("yaml_aliases", f"alias *{event.anchor} {refused}",
                                 _at(event.start_mark, file), "write the value out instead of aliasing it")
            added += sizes[event.anchor]
            if added > ALIAS_NODES and added > own:
                raise BatonError("yaml_aliases", f"YAML aliases here would expand the document by {added:,} "
                                 f"values (at most {max(ALIAS_NODES, own):,})", _at(event.start_mark, file),
                                 "aliases that repeat aliases multiply; write the values out instead")
            if open_:
                open_[-1][0] += sizes[event.anchor]
        elif isinstance(event, yaml.CollectionStartEvent):
            own += 1
            open_.append([1, event.anchor])
            if len(open_) > MAX_DEPTH:
                raise BatonError("yaml_nesting", f"mappings and lists nested more than {MAX_DEPTH} deep",
                                 _at(event.start_mark, file), "a ruleset needs far fewer levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_.pop()
            if anchor:
                sizes[anchor] = size
            if open_:
                open_[-1][0] += size
    return unusual


def _at(mark: Any, file: str) -> Where:
    return Where(file, mark.line + 1, mark.column + 1)


class _TextTimestamps(RoundTripConstructor):
    """ruamel's round-trip constructor, except that a YAML timestamp stays its text: a date is read by the
    field that holds it (engine/language/dates.py), as the fast path does."""


_TextTimestamps.add_constructor("tag:yaml.org,2002:timestamp",
                                lambda self, node: str(self.construct_scalar(node)))


def parse_round_trip(text: str, file: str, limits: SourceLimits = DEFAULT_LIMITS) -> Any:
    """ruamel.yaml's round-trip parse (pure Python): the reference the fast path must agree with."""
    _check_size(text, file, limits)
    try:
        _guard(text, file)
    except yaml.MarkedYAMLError as e:
        raise _syntax(e, file) from None
    return _round_trip(text, file)


def _round_trip(text: str, file: str) -> Any:
    parser = YAML(typ="rt", pure=True)
    parser.Constructor = _TextTimestamps
    parser.preserve_quotes = True
    try:
        return parser.load(text)
    except yaml.MarkedYAMLError as e:
        raise _syntax(e, file) from None
    except MarkedYAMLError as e:
        raise _syntax(e, file) from None
    except (yaml.YAMLError, YAMLError, ValueError, IndexError) as e:  # ruamel's constructor on 2026-02-30 or 0b_
        raise BatonError("yaml_syntax", f"YAML syntax: {e}", Where(file, 1, 1)) from None


_LOW = (1 << 32) - 1  # a position packed into an int: 32 bits for each line and column


class _Marks:
    """Where a container, its keys and values (or items) start: 0-based (line, column), as ruamel's ``lc``.

    ``at`` is a mapping's key -> one int packing the key's line and column and the value's (32 bits each),
    or a list's items' (line, column) packed likewise: a 10,000-rule file's positions were two dictionaries
    and a list per container and a tuple per position, 60,000 dictionaries and 130,000 tuples that the
    load frees while the version's objects are made (bench/rules_scale.py --memory). A key whose value has
    no position (the round-trip parser's, should it happen) keeps its own as a tuple."""

    __slots__ = ("at", "col", "line")

    def __init__(self, line: int, col: int, at: Any) -> None:
        self.line, self.col = line, col
        self.at: Any = at  # dict[object, int | tuple[int, int]] for a mapping, list[int] for a list

    def key(self, key: object) -> tuple[int, int]:
        p = self.at[key]
        if type(p) is tuple:
            return p
        return p >> 96, (p >> 64) & _LOW

    def value(self, key: object) -> tuple[int, int]:
        p = self.at[key]
        if type(p) is tuple:
            raise KeyError(key)
        return (p >> 32) & _LOW, p & _LOW

    def item(self, index: int) -> tuple[int, int]:
        p = self.at[index]
        return p >> 32, p & _LOW


def _pack(line: int, col: int) -> int:
    return line << 32 | col


class Map(dict):  # type: ignore[type-arg]
    """A YAML mapping with the positions of its keys and values."""

    __slots__ = ("lc",)  # no __dict__ per mapping
    lc: _Marks


class Seq(list):  # type: ignore[type-arg]
    """A YAML sequence with the positions of its items."""

    __slots__ = ("lc",)
    lc: _Marks


class Quoted(str):
    """A quoted scalar: its text starts one column after the value's position."""

    __slots__ = ()


class Block(str):
    """A literal (|) or folded (>) scalar: its text starts on the next line."""

    __slots__ = ()


class _Unusual(Exception):
    """Anchors, aliases, merge keys or explicit tags: left to the round-trip parser."""


_IMPLICIT = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
             "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:map",
             "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}


_NO_KEY: Any = object()  # a mapping open with no key read yet: the next value is its key


class _Open:
    """A mapping or list being read: the key read and waiting for its value (mappings)."""

    __slots__ = ("container", "key", "key_mark", "mark")

    def __init__(self, container: Any, mark: Any) -> None:
        self.container, self.mark = container, mark
        self.key: Any = _NO_KEY
        self.key_mark: Any = None


def _place(top: _Open, value: Any, mark: Any) -> None:
    """A value read inside the innermost open container: a list's next item, or a mapping's key (checked: no
    container, no duplicate) or the value of the key before it, each with its position."""
    container = top.container
    if type(container) is Seq:
        container.lc.at.append(mark.line << 32 | mark.column)
        container.append(value)
    elif top.key is _NO_KEY:
        if type(value) is Map or type(value) is Seq:
            raise _Unusual  # a mapping or list as a key
        if value in container:
            raise yaml.constructor.ConstructorError("while constructing a mapping", top.mark,
                                                    f'found duplicate key "{value}"', mark)
        top.key, top.key_mark = value, mark
    else:
        key, key_mark = top.key, top.key_mark
        container.lc.at[key] = (key_mark.line << 32 | key_mark.column) << 64 | mark.line << 32 | mark.column
        container[key] = value
        top.key = _NO_KEY


class _Fast:
    def __init__(self, text: str) -> None:
        self.text = text
        self.rt = YAML(typ="rt", pure=True)
        table = self.rt.resolver.versioned_resolver  # first character -> [(tag, regexp)], YAML 1.2
        if table.get(None):
            raise _Unusual  # resolvers for any first character: not what this shortcut expects
        self.implicit: dict[str, list[tuple[str, Any]]] = table

    def document(self) -> Any:
        """The document built from libyaml's events as they come, one container open per level: no graph of
        libyaml's nodes (with two marks each) is composed first and then copied - at 10,000 rules that graph
        was twice the document and left the allocator's arenas with 50 MB of holes beside the objects a
        version keeps (bench/rules_scale.py --memory). :func:`_guard` already sent anything unusual to the
        round-trip parser; an alias, should one come, goes there too."""
        root: Any = None
        first: Any = None  # the document's start, for a second document's error (as libyaml's composer says it)
        stack: list[_Open] = []
        for event in yaml.parse(self.text, Loader=_LOADER):
            kind = type(event)
            if kind is yaml.ScalarEvent:
                value: Any = self.scalar(event)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if kind is yaml.MappingStartEvent:
                    value = Map()
                    value.lc = _Marks(event.start_mark.line, event.start_mark.column, {})
                else:
                    value = Seq()
                    value.lc = _Marks(event.start_mark.line, event.start_mark.column, [])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                stack.pop()
                continue
            elif kind is yaml.AliasEvent:
                raise _Unusual
            else:
                if kind is yaml.DocumentStartEvent:
                    if first is not None:
                        raise yaml.composer.ComposerError("expected a single document in the stream", first,
                                                          "but found another document", event.start_mark)
                    first = event.start_mark
                continue
            mark = event.start_mark
            if stack:
                _place(stack[-1], value, mark)
            else:
                root = value
            if kind is not yaml.ScalarEvent:
                stack.append(_Open(value, mark))
        return root

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        style = event.style
        if style in ('"', "'"):
            return Quoted(event.value)
        if style in ("|", ">"):
            return Block(event.value)
        value = event.value
        # what ruamel's resolver does for a plain scalar, without its per-call overhead
        tag = next((t for t, regexp in self.implicit.get(value[:1], ()) if regexp.match(value)), None)
        if tag is None:
            return value  # a plain string
        if tag not in _IMPLICIT:
            raise _Unusual
        if tag == "tag:yaml.org,2002:timestamp":
            return value  # a date stays its text: date and datetime fields read it (engine/language/dates.py)
        if tag == "tag:yaml.org,2002:int" and _PLAIN_INT.match(value):
            return int(value)  # what the constructor gives these (a plain int), at a fiftieth of its cost
        constructor = self.rt.constructor
        node = ScalarNode(Tag(suffix=tag), value)
        try:
            return constructor.construct_object(node)
        except (ValueError, IndexError) as e:  # looks like a value but is none (2026-02-30, 0b_)
            raise yaml.MarkedYAMLError(problem=f"{event.value!r} is not a valid value: {e}",
                                       problem_mark=event.start_mark) from None
        finally:  # the constructor keeps each node it built (with its tag) to the end of the parse, and past it:
            # its YAML object is a reference cycle, freed only by the collector, which a load pauses. Let go,
            # 10,000 priorities' nodes no longer pin the allocator's arenas (bench/rules_scale.py --memory)
            constructor.constructed_objects.pop(node, None)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# decimal integers without a leading zero or underscore: ruamel's constructor makes these a plain int (0, 007 and
# 1_000 become its ScalarInt, which keeps how they were written; they still go to it)
_PLAIN_INT = re.compile(r"[-+]?[1-9][0-9]*\Z")


def _from_round_trip(node: Any) -> Any:
    """ruamel's round-trip nodes as the same containers the fast path builds."""
    if isinstance(node, CommentedMap):
        out = Map()
        out.lc = marks = _Marks(node.lc.line, node.lc.col, {})
        for key, value in node.items():
            with contextlib.suppress(KeyError, TypeError, AttributeError):
                line, col = node.lc.key(key)
                marks.at[key] = (line, col)  # a key with no value position (never seen) stays so
                vline, vcol = node.lc.value(key)
                marks.at[key] = _pack(line, col) << 64 | _pack(vline, vcol)
            out[key] = _from_round_trip(value)
        return out
    if isinstance(node, CommentedSeq):
        seq = Seq()
        seq.lc = marks = _Marks(node.lc.line, node.lc.col, [])
        for i, item in enumerate(node):
            try:
                line, col = node.lc.item(i)
            except (KeyError, TypeError, AttributeError):
                line, col = node.lc.line, node.lc.col
            marks.at.append(_pack(line, col))
            seq.append(_from_round_trip(item))
        return seq
    if isinstance(node, (DoubleQuotedScalarString, SingleQuotedScalarString)):
        return Quoted(node)
    if isinstance(node, (LiteralScalarString, FoldedScalarString)):
        return Block(node)
    return node


def plain(node: Any) -> Any:
    """Round-trip nodes to plain dicts, lists and scalars."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def content_hash(data: Any) -> str:
    canonical = json.dumps(plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Positions:
    """Source positions of keys, values and items of parsed containers in one file."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()

    def forget_lines(self) -> None:
        """Let the file's lines go (a list of a string per line) once nothing is loaded from the file any more:
        a position read afterwards has its line and column, not the characters of a scalar's text."""
        self.lines = []

    def of(self, node: Any) -> Where:
        if isinstance(node, (Map, Seq)):
            return Where(self.file, node.lc.line + 1, node.lc.col + 1)
        return Where(self.file)

    def key(self, parent: Any, key: str) -> Where:
        if isinstance(parent, Map) and key in parent.lc.at:
            line, col = parent.lc.key(key)
            return Where(self.file, line + 1, col + 1)
        return self.of(parent)

    def value(self, parent: Any, key: str | int) -> Where:
        try:
            if isinstance(parent, Map):
                line, col = parent.lc.value(key)
            elif isinstance(parent, Seq):
                assert isinstance(key, int)
                line, col = parent.lc.item(key)
            else:
                return self.of(parent)
        except (KeyError, IndexError, TypeError, AttributeError):
            return self.of(parent)
        return Where(self.file, line + 1, col + 1)

    def text_start(self, parent: Any, key: str | int) -> Where:
        """Where the characters of a scalar's text begin (after a quote, or on a block scalar's first line).
        For a string, the position carries a :class:`ScalarText`, so that ``shifted`` finds a character of
        the text where it stands in the file, whatever the scalar's style (folded, literal, plain over
        several lines, quoted with escapes)."""
        where = self.value(parent, key)
        value = parent[key]
        scalar = ScalarText(self.lines, where.line - 1, where.column - 1, value) if isinstance(
            value, str) and where.line else None
        if isinstance(value, Quoted):
            return Where(where.file, where.line, where.column + 1, scalar=scalar)
        if isinstance(value, Block):
            line = where.line + 1
            raw = self.lines[line - 1] if line - 1 < len(self.lines) else ""
            return Where(where.file, line, len(raw) - len(raw.lstrip(" ")) + 1, scalar=scalar)
        return Where(where.file, where.line, where.column, where.path, scalar)


_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}
_HEX = {"x": 2, "u": 4, "U": 8}
_SPACE = " \t\n\r"


class ScalarText:
    """Where each character of one scalar's parsed text stands in the file.

    The file's characters from the scalar's start are read as YAML would read them for the scalar's style
    (the indicator line of a block scalar skipped, a quoted scalar's quotes ended and its escapes decoded,
    each to the position of its backslash), then aligned with the parsed text: a character that is not
    white space is the next such character of the file, and white space - what folding and indentation
    turn line breaks into, or drop - stands where the file's white space does. Worked out only when an
    error is located (:meth:`locate`); the map is shared by the positions :meth:`moved` derives."""

    __slots__ = ("base", "col", "line", "lines", "memo", "text")

    def __init__(self, lines: list[str], line: int, col: int, text: str, base: int = 0,
                 memo: list[list[tuple[int, int]] | None] | None = None) -> None:
        self.lines, self.line, self.col, self.text, self.base = lines, line, col, str(text), base
        self.memo = memo if memo is not None else []

    def moved(self, offset: int) -> ScalarText:
        return ScalarText(self.lines, self.line, self.col, self.text, self.base + offset, self.memo)

    def locate(self, offset: int) -> tuple[int, int] | None:
        if not self.memo:
            self.memo.append(self._spots())
        spots = self.memo[0]
        k = self.base + offset
        if spots is None or not 0 <= k < len(spots):
            return None
        return spots[k]

    def _source(self) -> Iterator[tuple[str, int, int, bool]]:
        """(character, line, column, decoded from an escape) of the scalar's source, 0-based."""
        lines, line, col = self.lines, self.line, self.col
        if line >= len(lines) or col >= len(lines[line]):
            return
        style = lines[line][col]
        if style in "|>":
            line, col = line + 1, 0
        elif style in "'\"":
            col += 1
        while line < len(lines):
            raw = lines[line]
            while col < len(raw):
                ch = raw[col]
                if style == "'" and ch == "'":
                    if raw[col + 1:col + 2] != "'":
                        return
                    yield "'", line, col, True
                    col += 2
                    continue
                if style == '"' and ch == '"':
                    return
                if style == '"' and ch == "\\":
                    code = raw[col + 1:col + 2]
                    if not code:  # an escaped line break: the lines join with nothing between
                        col = len(raw) + 1
                        break
                    if code in _HEX:
                        digits = raw[col + 2:col + 2 + _HEX[code]]
                        try:
                            decoded = chr(int(digits, 16))
                        except ValueError:
                            return
                        yield decoded, line, col, True
                        col += 2 + _HEX[code]
                        continue
                    if code not in _ESCAPES:
                        return
                    yield _ESCAPES[code], line, col, True
                    col += 2
                    continue
                yield ch, line, col, False
                col += 1
            if col == len(raw):
                yield "\n", line, col, False
            line, col = line + 1, 0

    def _spots(self) -> list[tuple[int, int]] | None:
        """1-based (line, column) of each character of the text, and of the place just after it."""
        source = self._source()
        out: list[tuple[int, int]] = []
        cur = next(source, None)
        last = (self.line + 1, self.col + 1)
        for ch in self.text:
            if ch in _SPACE:
                if cur is None:
                    out.append(last)
                    continue
                out.append((cur[1] + 1, cur[2] + 1))
                if (not cur[3] and cur[0] in _SPACE) or (cur[3] and cur[0] == ch):
                    last = (cur[1] + 1, cur[2] + 2)
                    cur = next(source, None)
                continue
            while cur is not None and cur[0] in _SPACE:
                cur = next(source, None)
            if cur is None or cur[0] != ch:
                return None
            out.append((cur[1] + 1, cur[2] + 1))
            last = (cur[1] + 1, cur[2] + 2)
            cur = next(source, None)
        out.append((cur[1] + 1, cur[2] + 1) if cur is not None else last)
        return out
