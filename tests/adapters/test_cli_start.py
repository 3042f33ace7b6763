"""The CLI imports only what a command needs: --help, check and test load no store, gRPC, model client or console.

Each command runs in a fresh interpreter through the `baton` entry point, which writes the names of every
module it loaded to a file as it exits; the speed this buys is measured by bench/cli_start.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from typer.core import TyperGroup
from typer.testing import CliRunner

from adapters.doors.cli.lazy import load
from adapters.doors.cli.main import LAZY, app

ROOT = Path(__file__).resolve().parents[2]
SMALL = "rulesets/claims-triage.yaml"
# the store and its SQL stack, the service's doors, the model client and the web server
HEAVY = ("adapters.infra.store", "sqlalchemy", "sqlmodel", "alembic", "grpc", "adapters.doors.grpc", "google.protobuf",
         "litellm", "uvicorn", "starlette", "adapters.doors.console")

RUN = """import atexit, sys
out, *args = sys.argv[1:]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["baton", *args]
from adapters.doors.cli.main import main
main()
"""


def modules_loaded(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.txt"
    done = subprocess.run([sys.executable, "-c", RUN, str(out), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return set(out.read_text().split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [("--help",), ("check", SMALL), ("test", SMALL)], ids=["help", "check", "test"])
def test_command_loads_no_store_grpc_models_or_console(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules = modules_loaded(tmp_path, *args)
    assert "adapters.doors.cli.main" in modules
    assert heavy(modules) == []


def test_help_loads_no_ruleset_language(tmp_path: Path) -> None:
    modules = modules_loaded(tmp_path, "--help")
    assert not {"engine.language.loader", "ruamel.yaml", "jinja2", "adapters.doors.cli.store_cmds"} & modules


def test_a_store_command_does_load_the_store(tmp_path: Path) -> None:
    # the check above can fail: a command that needs the store loads it (here only for its --help)
    modules = modules_loaded(tmp_path, "log", "--help")
    assert "adapters.infra.store.sql" in modules and "sqlalchemy" in modules


@pytest.mark.parametrize("name", sorted(LAZY))
def test_lazy_command_help_is_its_own(name: str) -> None:
    spec = LAZY[name]
    command = load(name, spec)
    assert command.name == name
    assert isinstance(command, TyperGroup) == spec.group
    assert inspect.cleandoc(command.help or "").split("\n\n")[0] == spec.help


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and "  " in line[2:]]
    for name in [*LAZY, "check", "schema", "test", "decide", "serve", "consume", "config"]:
        assert name in listed, name
    # commands before groups, as typer lists them when every command is registered up front
    assert listed.index("bench") < listed.index("check") < listed.index("log") < listed.index("config")
