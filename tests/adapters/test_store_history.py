"""A decision store written by an earlier Baton (tests/histories/store-v*.db, by record_store.py) opens on
this one: migrated in place, every decision reads back as stored, its chain verifies, each replays
identically on its own ruleset version, search finds it, and new decisions chain on after it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from adapters.infra.store.sql import SqlStore
from adapters.usecases.decisions import replay_stored
from adapters.usecases.registry import RulesetRegistry
from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers

STORES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("store-v*.db"))


@pytest.fixture(params=STORES, ids=[p.stem for p in STORES])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> SqlStore:
    copy = tmp_path / "baton.db"
    shutil.copy(request.param, copy)  # never the committed file itself
    return SqlStore(str(copy))


def test_there_is_a_store_of_an_earlier_version() -> None:
    assert STORES


@pytest.mark.slow
def test_an_earlier_store_verifies_and_replays_after_migration(old: SqlStore) -> None:
    checked, problem = old.verify()
    assert problem is None and checked == old.count() >= 80
    ids = [r["id"] for r in old.list_decisions(limit=1000)]
    records = old.get_many(ids)
    outcomes = set()
    engine_for = RulesetRegistry(old).engine_for  # each stored version, compiled from its stored source
    for record in records:
        assert record is not None and record["trace"]
        result = asyncio.run(replay_stored(old, engine_for, record))  # as every door replays
        assert result.identical, (record["decision_id"], result.divergence)
        outcomes.add(record["outcome"])
        assert old.verify_one(record["decision_id"]) is None
    assert {"decided", "escalated"} <= outcomes
    assert any(r is not None and r.get("documents") for r in records)


def test_new_decisions_chain_on_after_an_earlier_store(old: SqlStore) -> None:
    before = old.count()
    (last,) = old.list_decisions(ruleset="claims-triage", limit=1)
    found = old.ruleset_source(last["version"])
    assert found is not None
    rs = load_ruleset(found[1], found[0])
    engine = Engine(rs)
    test = rs.tests[0]
    answers = RecordedAnswers(test.answers)
    d = asyncio.run(engine.decide(test.given, answers, answers, FixedClock(1_800_000_000.0), SequentialIds("new-")))
    saved = old.save(d.to_dict())
    assert saved.chain_seq == before + 1
    assert old.verify() == (before + 1, None)
    stored = old.get(saved.decision_id)
    assert stored is not None and {k: v for k, v in stored.items() if k not in ("caller", "idempotency_key")} \
        == d.to_dict()
    assert old.get(last["id"]) is not None and old.verify_one(last["id"]) is None


def test_search_finds_decisions_of_an_earlier_store(old: SqlStore) -> None:
    hits = old.list_decisions(text="whiplash", limit=100)
    assert hits and {h["ruleset"] for h in hits} == {"claims-triage"}
