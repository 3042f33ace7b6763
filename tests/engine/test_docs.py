"""Every complete ruleset in the documentation compiles, and its tests pass with every rule covered."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from engine.language.loader import load_ruleset
from engine.testing import run_suite

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```yaml\n(ruleset:.*?)^```", re.S | re.M)


def _examples() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[:m.start()].count("\n") + 2
            out.append((f"{path.name}:{line}", m.group(1)))
    return out


EXAMPLES = _examples()


def test_the_language_reference_has_runnable_examples() -> None:
    assert len([w for w, _ in EXAMPLES if w.startswith("language.md")]) >= 2


@pytest.mark.parametrize(("where", "text"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_a_documented_ruleset_passes_its_tests(where: str, text: str) -> None:
    rs = load_ruleset(text, where)
    assert rs.tests, f"{where}: a documented ruleset carries tests"
    suite = asyncio.run(run_suite(rs))
    failures = [(r.name, r.failures) for r in suite.results if not r.passed]
    assert not failures, f"{where}: {failures}"
    assert not suite.uncovered, f"{where}: rules no test fires: {suite.uncovered}"
