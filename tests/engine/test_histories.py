"""Decisions stored by earlier Baton versions replay identically on this one (as Temporal replays recorded
histories): whatever the engine's insides became, an auditor's replay of an old decision must agree.

tests/histories/v-<commit>.jsonl were written by tests/histories/record.py running on that commit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from engine.documents import Document
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.replay import replay

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("v-*.jsonl"))
ENGINES: dict[str, Engine] = {}


def _entries() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in HISTORIES:
        source = ""
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            entry = json.loads(line)
            if "source" in entry:
                source = entry["source"]
                continue
            out.append((f"{path.stem}:{n + 1}", {**entry, "source": source}))
    return out


ENTRIES = _entries()


def test_there_are_histories_of_every_example_ruleset() -> None:
    files = {entry["file"] for _, entry in ENTRIES}
    assert len(HISTORIES) >= 1 and {"rulesets/claims-triage.yaml", "rulesets/claims-intake.yaml",
                                     "rulesets/credit-limit.yaml", "rulesets/payment-approval.yaml",
                                     "rulesets/customer-onboarding.yaml"} <= files
    outcomes = {entry["record"]["outcome"] for _, entry in ENTRIES}
    assert {"decided", "escalated"} <= outcomes


@pytest.mark.parametrize(("where", "entry"), ENTRIES, ids=[w for w, _ in ENTRIES])
def test_a_stored_decision_of_an_earlier_version_replays_identically(where: str, entry: dict[str, Any]) -> None:
    record = entry["record"]
    engine = ENGINES.get(entry["source"])
    if engine is None:
        engine = ENGINES[entry["source"]] = Engine(load_ruleset(entry["source"], entry["file"]))
    assert engine.ruleset.version == record["version"]  # the content hash did not change either
    documents = [Document.from_text(d["name"], "\f".join(d["pages"]), d["media_type"]) for d in entry["documents"]]
    documents = [Document(d.id, d.name, d.media_type, tuple(e["pages"])) for d, e in zip(documents,
                                                                                          entry["documents"],
                                                                                          strict=True)]
    result = asyncio.run(replay(engine, record, documents))
    assert result.identical, f"{where} ({entry['test']}): {result.divergence}"
