"""YAML with source positions (ruamel.yaml round-trip nodes), turned into plain data plus positions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from engine.errors import BatonError, Where

MAX_SOURCE = 2_000_000


def parse_yaml(text: str, file: str) -> Any:
    if len(text) > MAX_SOURCE:
        raise BatonError("too_large", f"ruleset file is larger than {MAX_SOURCE} characters", Where(file, 1, 1))
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    try:
        return yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise BatonError("yaml_syntax", f"YAML syntax: {problem}", Where(file, line, col),
                         "check indentation and quoting around this place") from None
    except YAMLError as e:
        raise BatonError("yaml_syntax", f"YAML syntax: {e}", Where(file, 1, 1)) from None


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
    """Source positions of keys, values and items of round-trip nodes in one file."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()

    def of(self, node: Any) -> Where:
        if isinstance(node, (CommentedMap, CommentedSeq)):
            return Where(self.file, node.lc.line + 1, node.lc.col + 1)
        return Where(self.file)

    def key(self, parent: Any, key: str) -> Where:
        if isinstance(parent, CommentedMap) and key in parent:
            line, col = parent.lc.key(key)
            return Where(self.file, line + 1, col + 1)
        return self.of(parent)

    def value(self, parent: Any, key: str | int) -> Where:
        try:
            if isinstance(parent, CommentedMap):
                line, col = parent.lc.value(key)
            elif isinstance(parent, CommentedSeq):
                assert isinstance(key, int)
                line, col = parent.lc.item(key)
            else:
                return self.of(parent)
        except (KeyError, IndexError, TypeError, AttributeError):
            return self.of(parent)
        return Where(self.file, line + 1, col + 1)

    def text_start(self, parent: Any, key: str | int) -> Where:
        """Where the characters of a scalar's text begin (after a quote, or on a block scalar's first line)."""
        where = self.value(parent, key)
        value = parent[key]
        if isinstance(value, (DoubleQuotedScalarString, SingleQuotedScalarString)):
            return Where(where.file, where.line, where.column + 1)
        if isinstance(value, (LiteralScalarString, FoldedScalarString)):
            line = where.line + 1
            raw = self.lines[line - 1] if line - 1 < len(self.lines) else ""
            return Where(where.file, line, len(raw) - len(raw.lstrip(" ")) + 1)
        return where
