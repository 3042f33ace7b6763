"""Commands whose modules are imported only when the command runs.

The store's, gRPC's and the console's commands pull in SQLAlchemy, Alembic, protobuf and the rest; an
analyst running `baton check` at every save should not wait for them. `baton --help` lists these commands
from their names and one-line help (kept equal to the commands' own by tests/adapters/test_cli_start.py);
running one, or asking for its own --help, imports its module and builds it as typer would have."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Lazy:
    """A command (a function) or a group of commands (a `typer.Typer`) named `attr` in `module`."""

    module: str
    attr: str
    help: str  # the first paragraph of the command's own help, as `baton --help` shows it
    group: bool = False  # `attr` is a `typer.Typer` of sub-commands


class LazyGroup(TyperGroup):
    """A typer group that also holds `lazy` commands, imported when resolved; subclassed with its table."""

    lazy: ClassVar[dict[str, Lazy]] = {}
    _listing = False  # True while the group's own help lists its commands: no import for a line of help

    def list_commands(self, ctx: Any) -> list[str]:
        # typer lists commands before groups; the lazy ones first within each, as they were registered first
        eager = super().list_commands(ctx)
        groups = {n for n in eager if isinstance(self.commands[n], TyperGroup)}
        lazy_groups = {n for n, spec in self.lazy.items() if spec.group}
        return ([n for n in self.lazy if n not in lazy_groups] + [n for n in eager if n not in groups]
                + [n for n in self.lazy if n in lazy_groups] + [n for n in eager if n in groups])

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        spec = self.lazy.get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            return TyperCommand(name=cmd_name, help=spec.help)
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load(cmd_name, spec)
        return self.commands[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load(name: str, spec: Lazy) -> Any:
    """Import the command's module and build its click command the way `app.add_typer`/`app.command` would."""
    target = getattr(importlib.import_module(spec.module), spec.attr)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


def lazy_group(commands: dict[str, Lazy]) -> type[LazyGroup]:
    """The `cls=` for `typer.Typer` that adds these commands to the ones registered on it."""
    return type("BatonGroup", (LazyGroup,), {"lazy": commands})
