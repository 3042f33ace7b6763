"""`baton impact --jobs N` and `baton replay --all --jobs N` split a stored history across worker processes and
give what one process gives; `--part K/N` splits it into disjoint parts that cover it (one per machine)."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SqlStore
from adapters.usecases.impact import (
    CHUNK,
    Impact,
    impact_jobs,
    impact_steps,
    parse_part,
    part_of,
    replay_jobs,
    replay_many,
    start_method,
)
from engine.loop import Engine

ROOT = Path(__file__).resolve().parents[2]
N = 2 * CHUNK + 70  # three chunks: more than one process gets work


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("history")
    return make_history(str(tmp / "history.db"), tmp)


def make_history(db: str, tmp: Path) -> tuple[str, Path]:
    lines = [json.dumps({"claim": {"claim_ref": f"C-{i}", "amount": 1000 * (i % 97), "policy_ref": "P-1",
                                   "description": "whiplash", "customer_tier": "standard"}}) for i in range(N)]
    (tmp / "claims.jsonl").write_text("\n".join(lines) + "\n")
    done = CliRunner().invoke(app, ["decide", "claims-triage", "--batch", str(tmp / "claims.jsonl"), "--db", db,
                                    "--answers", str(ROOT / "rulesets/demo-answers.json"),
                                    "--rulesets", str(ROOT / "rulesets")])
    assert done.exit_code == 0, done.stderr
    candidate = tmp / "candidate.yaml"
    candidate.write_text((ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                                   "claim.amount > 70000"))
    return db, candidate


def impact(db: str, candidate: Path, *extra: str) -> dict[str, Any]:
    done = CliRunner().invoke(app, ["impact", str(candidate), "--db", db, "--json", *extra])
    assert done.exit_code == 0, done.output
    return dict(json.loads(done.stdout))


@pytest.mark.slow
def test_impact_in_three_processes_is_impact_in_one(history: tuple[str, Path]) -> None:
    db, candidate = history
    one = impact(db, candidate, "--jobs", "1")
    three = impact(db, candidate, "--jobs", "3")
    assert one == three
    assert one["decisions"] == N and 0 < one["changed"] < N  # amounts 50,001-70,000 move; the rest do not


@pytest.mark.slow
def test_parts_are_disjoint_and_cover_the_history(history: tuple[str, Path]) -> None:
    db, candidate = history
    whole = impact(db, candidate, "--jobs", "2")
    parts = [impact(db, candidate, "--part", f"{k}/3", "--jobs", "2") for k in (1, 2, 3)]
    assert sum(p["decisions"] for p in parts) == whole["decisions"] == N
    assert sum(p["changed"] for p in parts) == whole["changed"]
    examples = [e for p in parts for c in p["changes"] for e in c["examples"]]
    assert len(examples) == len(set(examples))
    ids = [f"01M{i:023d}" for i in range(1000)]
    split = [part_of(ids, k, 4) for k in (1, 2, 3, 4)]
    assert sorted(i for s in split for i in s) == ids and all(split)
    assert part_of(list(reversed(ids)), 2, 4) == list(reversed(split[1]))  # by the id alone, not its position
    with pytest.raises(ValueError, match="K must be from 1 to N"):
        parse_part("5/4")
    bad = CliRunner().invoke(app, ["impact", str(candidate), "--db", db, "--part", "two"])
    assert bad.exit_code == 2 and "give K/N" in bad.stderr


@pytest.mark.slow
def test_replay_all_in_two_processes_is_replay_all_in_one(history: tuple[str, Path]) -> None:
    db, _ = history
    runs = []
    for jobs in ("1", "2"):
        done = CliRunner().invoke(app, ["replay", "--all", "--db", db, "--json", "--jobs", jobs])
        assert done.exit_code == 0, done.output
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1] == {"replayed": N, "identical": N, "diverged": []}
    text = CliRunner().invoke(app, ["replay", "--all", "--db", db, "--name", "claims-triage", "--part", "1/2"])
    assert text.exit_code == 0 and "decisions replay identically" in text.stdout
    assert CliRunner().invoke(app, ["replay", "--db", db]).exit_code == 2  # neither an id nor --all


@pytest.mark.slow
def test_divergences_and_missing_decisions_come_back_from_the_workers_as_from_one_process(
        history: tuple[str, Path], tmp_path: Path) -> None:
    db, _ = history
    copy = tmp_path / "tampered.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    store = SqlStore(str(copy), migrate=False)
    try:
        ids = store.recent_ids("claims-triage", limit=N)
        tampered = [ids[3], ids[CHUNK + 7], ids[-1]]  # one in each worker's chunk
        with sqlite3.connect(copy) as conn:
            conn.executemany("UPDATE decisions SET head = replace(head, '\"outcome\":\"decided\"', "
                             "'\"outcome\":\"escalated\"') WHERE id = ?", [(i,) for i in tampered])
        ids.insert(CHUNK - 1, "01MNOTSTORED00000000000000")
        here = asyncio.run(replay_many(store, {}, ids))
        split = replay_jobs(store, ids, 2, lambda _: None)
        assert split == here
        wrong = {r.decision_id: r for r in split if not r.identical}
        assert sorted(wrong) == sorted([*tampered, "01MNOTSTORED00000000000000"])
        assert wrong["01MNOTSTORED00000000000000"].error == "not in the store"
        assert [getattr(wrong[i].divergence, "index", None) for i in tampered] == [-1] * 3  # the outcome differs
    finally:
        store.close()


@pytest.mark.slow
def test_on_postgresql_machines_parts_with_jobs_cover_what_one_process_finds(pg_url: str, tmp_path: Path) -> None:
    db, candidate = make_history(pg_url, tmp_path)
    one = impact(db, candidate, "--jobs", "1")
    parts = [impact(db, candidate, "--part", f"{k}/2", "--jobs", "2") for k in (1, 2)]
    assert one["decisions"] == sum(p["decisions"] for p in parts) == N
    assert one["changed"] == sum(p["changed"] for p in parts) > 0
    replayed = [json.loads(CliRunner().invoke(app, ["replay", "--all", "--db", db, "--json", "--part", f"{k}/2",
                                                    "--jobs", "2"]).stdout) for k in (1, 2)]
    assert sum(r["identical"] for r in replayed) == N and not any(r["diverged"] for r in replayed)


@pytest.mark.slow
@pytest.mark.skipif(start_method() != "fork", reason="workers are forked only where the platform can fork")
def test_forked_workers_share_the_compiled_candidate_and_leave_the_store_usable(history: tuple[str, Path]) -> None:
    db, candidate = history
    store = SqlStore(db, migrate=False)
    try:
        ids = store.recent_ids("claims-triage", limit=N)
        engine = Engine(load_file(candidate))
        here = Impact()

        async def in_process() -> None:
            async for _ in impact_steps(store, engine, ids, here, every=len(ids)):
                pass

        asyncio.run(in_process())
        done: list[int] = []
        # no file at the path: the workers can only have the candidate this process compiled
        split = impact_jobs(store, engine, candidate.with_name("absent.yaml"), ids, 2, done.append)
        assert [(w.decision_id, w.old, w.new, w.error) for w in split] == \
            [(w.decision_id, w.old, w.new, w.error) for w in here.results]
        assert done == [CHUNK, 2 * CHUNK, N]  # in order, one report per chunk
        assert store.get_many(ids[:1])[0] is not None  # this process's connections were closed, not broken
        assert gc.get_freeze_count() == 0  # the heap frozen for the fork is the collector's again
        gc.freeze()  # and a heap the caller froze stays frozen (if smaller: some of it was freed meanwhile)
        try:
            impact_jobs(store, engine, candidate, ids, 2, lambda _: None)
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()
    finally:
        store.close()
