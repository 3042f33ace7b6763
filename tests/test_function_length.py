"""No function in engine/ or adapters/ runs over 60 lines (issue 35: a reader should see a function whole).
Every one that did is split into named helpers now, so there is no list of exceptions left."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60  # lines from the def line to the last line, decorators not counted


def _lengths() -> dict[str, int]:
    out: dict[str, int] = {}
    for folder in ("engine", "adapters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "gen" in rel.parts:  # protoc's output
                continue
            _walk(ast.parse(path.read_text(encoding="utf-8")), f"{rel.as_posix()}::", out)
    return out


def _walk(node: ast.AST, prefix: str, out: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + child.name
            if not isinstance(child, ast.ClassDef):
                out[name] = (child.end_lineno or child.lineno) - child.lineno + 1
            _walk(child, name + ".", out)
        else:
            _walk(child, prefix, out)


def test_no_function_over_60_lines() -> None:
    over = {name: n for name, n in _lengths().items() if n > LIMIT}
    assert over == {}, f"functions over {LIMIT} lines (split them into named helpers): {over}"
