"""Baton errors: one exception type with a stable code, a message, a source position and a hint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a ruleset file (1-based line and column) or a field path in a request."""

    file: str = ""
    line: int = 0
    column: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.line:
            return f"{self.file or '<ruleset>'}:{self.line}:{self.column}"
        if self.path:
            return self.path
        return self.file

    def shifted(self, text: str, offset: int) -> Where:
        """The position ``offset`` characters into ``text``, which starts at this position."""
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
        self.where = where or Where()
        self.hint = hint

    def __str__(self) -> str:
        place = str(self.where)
        text = f"{place}: {self.code}: {self.message}" if place else f"{self.code}: {self.message}"
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
