"""Finding and loading ruleset files from disk, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from engine.errors import BatonError, CompileErrors, Where
from engine.language.loader import load_ruleset
from engine.model import Ruleset

SUFFIXES = (".yaml", ".yml")


def ruleset_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file()
                              and not any(part.startswith(".") for part in f.parts)))
        else:
            out.append(p)
    return out


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_file(path: Path) -> Ruleset:
    name = display(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CompileErrors([BatonError("unreadable", f"cannot read: {e.strerror}", Where(name))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CompileErrors([BatonError("bad_encoding", "the file is not UTF-8", Where(name, line, 1))]) from None
    try:
        return load_ruleset(text, name)
    except CompileErrors:
        raise
    except BatonError as e:
        raise CompileErrors([e]) from None


def find_ruleset(name_or_path: str, directory: Path) -> Path:
    """A ruleset by path, or by its name in ``directory`` (file stem or the ``ruleset:`` name)."""
    path = Path(name_or_path)
    if path.suffix in SUFFIXES and path.exists():
        return path
    for f in ruleset_files([directory]) if directory.is_dir() else []:
        if f.stem == name_or_path:
            return f
    for f in ruleset_files([directory]) if directory.is_dir() else []:
        try:
            if load_file(f).name == name_or_path:
                return f
        except CompileErrors:
            continue
    raise BatonError("unknown_ruleset", f"no ruleset named {name_or_path!r} in {directory}",
                     hint="give a path to a .yaml file or --rulesets DIR")
