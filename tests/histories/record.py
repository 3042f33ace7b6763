"""Record decision histories with whichever Baton is on the path (run from an earlier checkout), so the test
suite can replay them on every later version: ``PYTHONPATH=<old checkout> python tests/histories/record.py OUT``.

Each line of OUT is a ruleset (its file name, version and source text) or one decision of the ruleset
before it (the record as that Baton stored it). The example rulesets' own tests are the inputs (with
their recorded answers and reviewers)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Engine, HumanInput, Limits
from engine.recorded import RecordedAnswers


async def main(root: Path, out: Path) -> None:
    lines = []
    for path in sorted((root / "rulesets").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        rs = load_ruleset(text, f"rulesets/{path.name}")
        engine = Engine(rs)
        lines.append(json.dumps({"file": f"rulesets/{path.name}", "version": rs.version, "source": text}))
        for n, test in enumerate(rs.tests):
            answers = RecordedAnswers(test.answers)
            human = [HumanInput(t, rs.types[t].validate(v, t), "reviewer") for t, v in test.human.items()]
            validated = engine.validate_input(test.given, allow_empty=bool(test.documents))
            d = await engine.run(validated, answers, answers, FixedClock(1_764_000_000.0 + n), SequentialIds("h-"),
                                 Limits(), human, documents=test.documents)
            lines.append(json.dumps({"file": f"rulesets/{path.name}", "test": test.name,
                                     "documents": [{"name": doc.name, "media_type": doc.media_type,
                                                    "pages": list(doc.pages)} for doc in test.documents],
                                     "record": d.to_dict()}, sort_keys=True))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")




async def scale(out: Path, rules: int = 300, rows: int = 200, count: int = 40) -> None:
    """Decisions of a generated ruleset large enough for the indexed engine (tests/scale.py)."""
    from tests.scale import inputs, ruleset_text

    text = ruleset_text(rules, rows)
    rs = load_ruleset(text, "scale.yaml")
    engine = Engine(rs)
    lines = [json.dumps({"file": "scale.yaml", "version": rs.version, "source": text})]
    for n, facts in enumerate(inputs(rules, count)):
        answers = RecordedAnswers({})
        d = await engine.decide(facts, answers, answers, FixedClock(1_764_000_000.0 + n), SequentialIds("s-"))
        lines.append(json.dumps({"file": "scale.yaml", "test": f"scale {n}", "documents": [],
                                 "record": d.to_dict()}, sort_keys=True))
    with out.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path.cwd(), Path(sys.argv[1])))
    asyncio.run(scale(Path(sys.argv[1])))
