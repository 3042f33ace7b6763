"""Console output and error helpers shared by the CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from engine.errors import BatonError, CompileErrors

if TYPE_CHECKING:
    from adapters.infra.store.sql import SqlStore

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


# control characters and bidirectional overrides a ruleset's keys and names may carry into a message: shown
# as escapes, so a hostile file cannot clear the terminal, retitle it or reorder what a reviewer reads
_UNSEEN = {c: f"\\x{c:02x}" for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: "\\x7f"} | {
    c: f"\\u{c:04x}" for c in [*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def visible(text: str) -> str:
    """``text`` with its control characters and bidi overrides written as escapes (``\\x1b``)."""
    return text.translate(_UNSEEN)


def print_warnings(warnings: list[BatonError], as_errors: bool = False) -> None:
    colour, label = ("bold red", "error") if as_errors else ("bold yellow", "warning")
    for w in warnings:
        hint = f"\n    hint: {escape(visible(w.hint))}" if w.hint else ""
        err.print(f"{escape(visible(str(w.where)))}: [{colour}]{label} {w.code}[/]: {escape(visible(w.message))}{hint}",
                  markup=True)


def print_compile_errors(e: CompileErrors) -> None:
    for error in e.errors:
        where = visible(str(error.where))
        hint = f"\n    hint: {escape(visible(error.hint))}" if error.hint else ""
        err.print(f"{escape(where)}: [bold red]{error.code}[/]: {escape(visible(error.message))}{hint}", markup=True)


def unreachable(e: Exception) -> typer.Exit:
    """A bad URL or an unreachable server: one clear line, not a traceback."""
    return fail(f"cannot open the decision store: {type(e).__name__}: {str(e).splitlines()[0]}")


def open_store(db: str | None) -> SqlStore:
    """The decision store (imported here, when a command opens it: `baton check` never loads it)."""
    from adapters.infra.store.sql import SqlStore

    try:
        return SqlStore(db)
    except Exception as e:
        raise unreachable(e) from None
