"""Console output and error helpers shared by the CLI commands."""

from __future__ import annotations

import typer
from rich.console import Console

from engine.errors import CompileErrors

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


def print_compile_errors(e: CompileErrors) -> None:
    for error in e.errors:
        where = str(error.where)
        hint = f"\n    hint: {error.hint}" if error.hint else ""
        err.print(f"{where}: [bold red]{error.code}[/]: {error.message}{hint}", markup=True)
