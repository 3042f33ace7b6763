"""engine/codes.py is the one table of error codes: every code a raise site in engine/ or adapters/ names is in it
(a new code must be registered, a misspelt one fails here), every entry is still raised somewhere, and
docs/language.md's table is the one the enumeration prints."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from engine import codes
from engine.codes import CODES, Category, Code, Status
from engine.errors import BatonError, InvalidInput

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("engine", "adapters") for p in sorted((ROOT / d).rglob("*.py"))
           if "gen" not in p.relative_to(ROOT).parts and p.name != "codes.py"]
DOCS = ROOT / "docs" / "language.md"
START, END = "<!-- codes:start -->", "<!-- codes:end -->"
REGENERATE = ("docs/language.md's table of error codes differs from engine/codes.py: regenerate it with "
              "`python -m engine.codes --markdown` and paste the output between the two codes: marker comments")

# callables that take a code, and where: (position, keyword)
CODE_TAKERS = {
    "BatonError": (0, "code"), "InvalidInput": (0, "code"), "ExprError": (0, "code"),
    "GovernanceError": (0, "code"), "EngineFailure": (0, "code"), "Overloaded": (0, "code"),
    "NotOpen": (0, "code"), "AuthError": (0, "code"),
    "_fail": (2, "code"),  # engine/language/types.py: _fail(path, message, code)
    "_bad": (1, "code"),  # adapters/infra/documents.py: _bad(path, code, message)
}
# classes whose super().__init__(code, ...) names a code
CODE_CLASSES = {"BatonError", "InvalidInput", "ExprError", "GovernanceError", "EngineFailure", "Overloaded",
                "NotOpen", "CompileErrors"}


def _strings(node: ast.expr, constants: dict[str, str]) -> list[str]:
    """The code strings an argument can be: a literal, either branch of ``a if c else b``, or a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body, constants) + _strings(node.orelse, constants)
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    return []  # a variable: the code passes through from a raise site this scan sees


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == keyword:
            return k.value
    return call.args[position] if len(call.args) > position else None


def raised_codes() -> dict[str, list[str]]:
    """Every code literal given to a code-taking call in engine/ and adapters/: code -> ["file:line", ...]."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}
        code_classes = {n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                        and any(isinstance(b, ast.Name) and b.id in CODE_CLASSES for b in n.bases)}
        supers = {id(c) for cls in code_classes for c in ast.walk(cls) if isinstance(c, ast.Call)
                  and isinstance(c.func, ast.Attribute) and c.func.attr == "__init__"
                  and isinstance(c.func.value, ast.Call) and isinstance(c.func.value.func, ast.Name)
                  and c.func.value.func.id == "super"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            argument: ast.expr | None = None
            if id(node) in supers:
                argument = _argument(node, 0, "code")
            elif isinstance(func, ast.Name) and func.id in CODE_TAKERS:
                argument = _argument(node, *CODE_TAKERS[func.id])
            elif isinstance(func, ast.Attribute) and func.attr in CODE_TAKERS:
                argument = _argument(node, *CODE_TAKERS[func.attr])
            elif (isinstance(func, ast.Attribute) and func.attr == "error" and isinstance(func.value, ast.Name)
                  and func.value.id == "self"):  # the loader's self.error(code, message, where, hint)
                argument = _argument(node, 0, "code")
            for code in _strings(argument, constants) if argument is not None else []:
                found.setdefault(code, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _string_collections(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level names bound to a set, frozenset, tuple or list of string literals."""
    found: dict[str, list[str]] = {}
    for n in tree.body:
        value = n.value if isinstance(n, (ast.Assign, ast.AnnAssign)) else None
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
        if isinstance(value, (ast.Set, ast.Tuple, ast.List)):
            strings = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            for t in targets:
                if isinstance(t, ast.Name) and strings:
                    found[t.id] = strings
    return found


def compared_codes() -> dict[str, list[str]]:
    """Every code a mapping compares with: ``x.code == "c"``, ``x.code in ("a", "b")`` or ``x.code in NAMES``
    (NAMES a module-level collection of literals) -> ["file:line", ...]."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        collections = _string_collections(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                    and node.left.attr == "code"):
                continue
            for right in node.comparators:
                if isinstance(right, ast.Constant) and isinstance(right.value, str):
                    strings = [right.value]
                elif isinstance(right, (ast.Set, ast.Tuple, ast.List)):
                    strings = [e.value for e in right.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                elif isinstance(right, ast.Name):
                    strings = collections.get(right.id, [])
                else:
                    strings = []
                for code in strings:
                    found.setdefault(code, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_compared_code_is_registered() -> None:
    """A mapping or a filter that matches codes by string matches registered ones (a typo there fails silently
    otherwise: the branch is never taken)."""
    found = compared_codes()
    assert {"table_gap", "unknown_fact_type", "stale_version"} <= set(found)  # the scan sees the comparisons
    unknown = {code: sites for code, sites in found.items() if codes.lookup(code) is None}
    assert not unknown, f"codes compared with but not in engine/codes.py: {unknown}"


def test_every_raised_code_is_registered() -> None:
    found = raised_codes()
    assert len(found) > 80  # the scan sees the raise sites (a scan that finds nothing passes nothing)
    unknown = {code: sites for code, sites in found.items() if codes.lookup(code) is None}
    assert not unknown, ("codes raised but not in engine/codes.py (register each, with its category, meaning and "
                         f"status, or fix the spelling): {unknown}")


def test_every_registered_code_is_raised_somewhere() -> None:
    """A code no longer raised is a stale entry (and a stale line in the docs). Codes that reach their
    raise site through a variable (check_field's default, a helper's parameter) are found as literals."""
    nodes = [n for p in SOURCES for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))]
    literals = {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    # or named through the enumeration (``Refused(Code.IDEMPOTENCY_CONFLICT, ...)``), outside engine/codes.py
    literals |= {Code[n.attr].value for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                 and n.value.id == "Code" and n.attr in Code.__members__}
    assert not [c.value for c in Code if c.value not in literals]


def test_the_scan_catches_an_unregistered_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raises, compares = tmp_path / "raises.py", tmp_path / "compares.py"
    raises.write_text("def f(flag):\n    raise BatonError('bad_shape' if flag else 'bad_shpae', 'x')\n"
                      "def g(self):\n    self.error('no_such_code', 'x', None)\n"
                      "class E(BatonError):\n    def __init__(self):\n        super().__init__('made_up', 'x')\n")
    compares.write_text("SKIP = {'bad_shape', 'unknwon_field'}\n"
                        "def f(e):\n    return e.code in SKIP or e.code == 'tpye'\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", [raises, compares])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(raised_codes()) == ["bad_shape", "bad_shpae", "made_up", "no_such_code"]
    assert sorted(c for c in raised_codes() if codes.lookup(c) is None) == ["bad_shpae", "made_up", "no_such_code"]
    assert sorted(compared_codes()) == ["bad_shape", "tpye", "unknwon_field"]


def test_an_unregistered_code_is_still_raised_as_written() -> None:
    """The runtime is lenient: the test above guards the table, a request never fails for it."""
    e = InvalidInput("not_registered_anywhere", "m")
    assert (e.code, str(e)) == ("not_registered_anywhere", "not_registered_anywhere: m")
    assert codes.lookup("not_registered_anywhere") is None and codes.status_of("not_registered_anywhere") is None
    assert BatonError(Code.BAD_SHAPE, "m").as_dict()["code"] == "bad_shape"


def test_every_code_has_a_category_and_a_meaning() -> None:
    for code, info in CODES.items():
        assert info.categories and info.meaning and "|" not in info.meaning + info.hint, code
    # request errors are answered INVALID_ARGUMENT (InvalidInput's status at the gRPC door)
    assert all(CODES[Code(c)].status is Status.INVALID_ARGUMENT for c in codes.in_category(Category.REQUEST))
    assert codes.with_status(Status.NOT_FOUND) == {"unknown_ruleset", "unknown_version", "unknown_decision",
                                                   "unknown_rule", "unknown_escalation", "unknown_publication"}


def test_docs_table_is_generated_from_the_enumeration() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"docs/language.md needs {START} and {END}"
    between = text.split(START)[1].split(END)[0].strip("\n") + "\n"
    assert between == codes.markdown(), REGENERATE


def test_the_module_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "engine.codes", "--markdown"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out == codes.markdown()
    assert "| `four_eyes` | the author of a publication approving it |  | `PERMISSION_DENIED` |" in out
    assert "| `table_overlap` | two rows of a `unique` table overlap | narrow one of them, or use `hit: first` |" in out
