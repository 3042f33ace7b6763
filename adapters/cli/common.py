"""Console output and error helpers shared by the CLI commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from engine.errors import BatonError, CompileErrors

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


def print_warnings(warnings: list[BatonError], as_errors: bool = False) -> None:
    colour, label = ("bold red", "error") if as_errors else ("bold yellow", "warning")
    for w in warnings:
        hint = f"\n    hint: {escape(w.hint)}" if w.hint else ""
        err.print(f"{w.where}: [{colour}]{label} {w.code}[/]: {escape(w.message)}{hint}", markup=True)


def print_compile_errors(e: CompileErrors) -> None:
    for error in e.errors:
        where = str(error.where)
        hint = f"\n    hint: {escape(error.hint)}" if error.hint else ""
        err.print(f"{escape(where)}: [bold red]{error.code}[/]: {escape(error.message)}{hint}", markup=True)
