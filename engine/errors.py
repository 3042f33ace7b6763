"""Baton errors: one exception type with a stable code, a message, a source position and a hint."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol


class ScalarSource(Protocol):
    """Where each character of a YAML scalar's parsed text stands in the file (engine/language/source.py):
    folding, quoting and escapes mean the parsed text and the source lines do not line up."""

    def locate(self, offset: int) -> tuple[int, int] | None:
        """The 1-based (line, column) of the character ``offset`` characters into the text this source
        starts at (None: unknown, e.g. the text does not match the file)."""

    def moved(self, offset: int) -> ScalarSource:
        """The same scalar, starting ``offset`` characters further in."""


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a ruleset file (1-based line and column) or a field path in a request. ``scalar`` (set
    where a scalar's text starts) maps offsets into that text back to the file; it takes no part in equality
    and is dropped when the position is put in an error."""

    file: str = ""
    line: int = 0
    column: int = 0
    path: str = ""
    scalar: ScalarSource | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if self.line:
            return f"{self.file or '<ruleset>'}:{self.line}:{self.column}"
        if self.path:
            return self.path
        return self.file

    def shifted(self, text: str, offset: int) -> Where:
        """The position ``offset`` characters into ``text``, which starts at this position."""
        if self.scalar is not None:
            spot = self.scalar.locate(offset)
            if spot is not None:
                return Where(self.file, spot[0], spot[1], self.path, self.scalar.moved(offset))
        before = text[:offset]
        newlines = before.count("\n")
        if newlines == 0:
            return Where(self.file, self.line, self.column + offset, self.path)
        # later lines of a block scalar share the first line's indentation
        return Where(self.file, self.line + newlines, self.column + offset - before.rfind("\n") - 1, self.path)


class BatonError(Exception):
    """An error with a stable ``code`` (for machines), a message and hint (for people), and a place."""

    def __init__(self, code: str, message: str, where: Where | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.where = (replace(where, scalar=None) if where.scalar is not None else where) if where else Where()
        self.hint = hint

    def __str__(self) -> str:
        place, message = str(self.where), self.message
        if place and message.startswith(place + ": "):  # a request's errors name their field in the message too
            message = message[len(place) + 2:]  # (a gRPC status carries the message alone): said once here
        text = f"{place}: {self.code}: {message}" if place else f"{self.code}: {message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.where.file,
            "line": self.where.line,
            "column": self.where.column,
            "path": self.where.path,
            "hint": self.hint,
        }


class CompileErrors(BatonError):
    """Every error found while loading one ruleset, reported together."""

    def __init__(self, errors: list[BatonError]) -> None:
        first = errors[0]
        super().__init__(first.code, first.message, first.where, first.hint)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class InvalidInput(BatonError):
    """A request's facts or answers do not fit the ruleset's declared types (nothing is decided)."""


class EngineFailure(BatonError):
    """durable-rules reported an error it should never report for validated input."""


class Overloaded(BatonError):
    """Too many decisions in flight; the caller should retry later."""
