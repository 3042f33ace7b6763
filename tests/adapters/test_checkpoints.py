"""Signed checkpoints against an insider: a history rewritten and re-hashed with engine.audit (as anyone who can
write to the database can) passes the chain check but is named by the first checkpoint it contradicts; a
forged checkpoint, one of another log and one of an unknown key are reported; rotated keys keep old
checkpoints valid; a decision's proof round-trips through the CLI and is checked with no database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from adapters.infra.checkpoints import (
    Verifier,
    audit_log,
    generate_keys,
    keep_in,
    load_private_key,
    read_checkpoints,
    read_public_keys,
    sign,
    write_checkpoint,
)
from adapters.infra.store.sql import Pending, SqlStore
from engine import merkle
from engine.audit import chain_hash, tree_leaf
from tests.adapters.test_tree_store import HISTORIES, records

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Any, Path]:
    private, public = generate_keys(tmp_path / "keys")
    return load_private_key(private.read_text(), str(private)), public


def checkpoint_now(store: SqlStore, key: Any, folder: Path, origin: str | None = None) -> Path:
    size, root = store.tree_head()
    cp = sign(key, origin or f"baton/{store.log_id()}", size, root)
    keep_in(store, cp)
    return write_checkpoint(folder, cp)


def rewrite(store: SqlStore, position: int, outcome: str) -> None:
    """What an insider with write access does: change one decision's outcome, recompute its chain hash and
    every later one with engine.audit, move the chain head, and rebuild the store's tree to match."""
    with store.writer.begin() as conn:
        rows = conn.execute(sa.text("SELECT id, chain_seq, head, trace, prev_hash FROM decisions "
                                    "WHERE chain_seq >= :p ORDER BY chain_seq"), {"p": position}).all()
        prev = rows[0].prev_hash
        for row in rows:
            head = row.head
            if row.chain_seq == position:
                record = json.loads(head)
                record["outcome"] = outcome
                head = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = chain_hash(prev, row.chain_seq, head, row.trace.split("\n") if row.trace else [])
            conn.execute(sa.text("UPDATE decisions SET head = :h, outcome = CASE WHEN chain_seq = :p THEN :o "
                                 "ELSE outcome END, prev_hash = :prev, hash = :d WHERE id = :id"),
                         {"h": head, "p": position, "o": outcome, "prev": prev, "d": digest, "id": row.id})
            prev = digest
        frontier = merkle.Frontier()
        conn.execute(sa.text("DELETE FROM merkle_nodes"))
        for (digest,) in conn.execute(sa.text("SELECT hash FROM decisions ORDER BY chain_seq")).all():
            for level, idx, h in frontier.append(tree_leaf(digest)):
                if level >= 6:
                    conn.execute(sa.text("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                                 {"l": level, "i": idx, "h": h.hex()})
        conn.execute(sa.text("UPDATE chain_head SET hash = :h, frontier = :f"), {"h": prev, "f": frontier.to_hex()})


def save(store: SqlStore, n: int, prefix: str) -> None:
    store.save_batch([Pending(r) for r in records(n, prefix)])


def test_an_insider_rewrite_passes_the_chain_and_is_named_by_the_first_checkpoint_it_contradicts(
        db_url: str, keys: tuple[Any, Path], tmp_path: Path) -> None:
    key, public = keys
    store = SqlStore(db_url)
    witness = tmp_path / "witness"
    save(store, 30, "a")
    first = checkpoint_now(store, key, witness)
    save(store, 50, "b")
    second = checkpoint_now(store, key, witness)
    save(store, 20, "c")
    third = checkpoint_now(store, key, witness)
    args = ["log", "verify", "--db", db_url, "--checkpoints", str(witness), "--public-key", str(public)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ok: 3 signed checkpoints" in result.output

    origin = f"baton/{store.log_id()}"
    rewrite(store, 42, "declined")  # after the first checkpoint, before the second
    assert store.verify() == (100, None)  # the chain alone no longer sees it
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"the stored log contradicts {second}, the first of 2" in result.output
    assert "after position 30 up to position 80 was rewritten" in result.output
    assert str(first) not in result.output and str(third) in result.output

    with store.writer.begin() as conn:  # the insider also gives the store another log id
        conn.execute(sa.text("UPDATE chain_head SET log_id = 'forged'"))
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "the store's log id was changed" in result.output
    assert result.output.count("it is a checkpoint of another log") == 3
    result = runner.invoke(app, [*args, "--origin", origin])
    assert result.exit_code == 1 and f"the stored log contradicts {second}" in result.output


def test_decisions_deleted_from_the_end_and_rehashed_head_contradict_the_checkpoint(
        db_url: str, keys: tuple[Any, Path], tmp_path: Path) -> None:
    key, public = keys
    store = SqlStore(db_url)
    save(store, 10, "a")
    cp = checkpoint_now(store, key, tmp_path / "w")
    with store.writer.begin() as conn:
        last = conn.execute(sa.text("SELECT id, prev_hash FROM decisions WHERE chain_seq = 10")).one()
        conn.execute(sa.text("DELETE FROM decision_search WHERE decision_id = :i"), {"i": last.id})
        conn.execute(sa.text("DELETE FROM escalations WHERE id = :i"), {"i": last.id})
        conn.execute(sa.text("DELETE FROM calls WHERE decision_id = :i"), {"i": last.id})
        conn.execute(sa.text("DELETE FROM outbox WHERE decision_id = :i"), {"i": last.id})
        conn.execute(sa.text("DELETE FROM decisions WHERE id = :i"), {"i": last.id})
        conn.execute(sa.text("UPDATE chain_head SET seq = 9, hash = :h"), {"h": last.prev_hash})
    assert store.verify() == (9, None)
    result = runner.invoke(app, ["log", "verify", "--db", db_url, "--checkpoints", str(tmp_path / "w"),
                                 "--public-key", str(public)])
    assert result.exit_code == 1
    assert f"{cp} (checkpoint of 10 decisions" in result.output and "holds only 9 decisions" in result.output


def test_forged_foreign_and_unknown_key_checkpoints_are_reported(keys: tuple[Any, Path], tmp_path: Path) -> None:
    key, public = keys
    other_key, _ = generate_keys(tmp_path / "other")
    store = SqlStore(str(tmp_path / "baton.db"))
    save(store, 5, "a")
    origin = f"baton/{store.log_id()}"
    size, root = store.tree_head()
    good = sign(key, origin, size, root)
    verifier = Verifier(read_public_keys([public]), origin)
    assert verifier.problem(good) is None
    forged = replace(good, root=merkle.node_hash(root, root))  # same signature, another tree
    assert "forged or altered" in str(verifier.problem(forged))
    assert "forged or altered" in str(verifier.problem(replace(good, size=4)))
    foreign = sign(key, "baton/another-log", size, root)
    assert "another log ('baton/another-log'" in str(verifier.problem(foreign))
    stranger = sign(load_private_key(other_key.read_text(), "k"), origin, size, root)
    assert "not among the public keys given" in str(verifier.problem(stranger))

    witness = tmp_path / "w"
    for cp in (good, forged, foreign):
        write_checkpoint(witness, cp)
    audit = audit_log(store.chain_hashes(), [(str(p), cp) for p, cp in read_checkpoints(witness)], verifier)
    assert len(audit.verified) == 1 and len(audit.problems) == 2
    assert any("forged" in p for p in audit.problems) and any("another log" in p for p in audit.problems)


def test_rotated_keys_keep_old_checkpoints_verifiable(keys: tuple[Any, Path], tmp_path: Path) -> None:
    old_key, old_public = keys
    new_private, new_public = generate_keys(tmp_path / "new")
    new_key = load_private_key(new_private.read_text(), "new")
    db = str(tmp_path / "baton.db")
    store = SqlStore(db)
    save(store, 3, "a")
    checkpoint_now(store, old_key, tmp_path / "w")
    save(store, 3, "b")
    checkpoint_now(store, new_key, tmp_path / "w")
    both = ["--public-key", str(old_public), "--public-key", str(new_public)]
    result = runner.invoke(app, ["log", "verify", "--db", db, "--checkpoints", str(tmp_path / "w"), *both])
    assert result.exit_code == 0 and "ok: 2 signed checkpoints" in result.output, result.output
    result = runner.invoke(app, ["log", "verify", "--db", db, "--checkpoints", str(tmp_path / "w"),
                                 "--public-key", str(new_public)])
    assert result.exit_code == 1 and "not among the public keys given" in result.output


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    assert runner.invoke(app, ["log", "keygen", "--out", str(tmp_path)]).exit_code == 0
    assert oct((tmp_path / "checkpoint.key").stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(app, ["log", "keygen", "--out", str(tmp_path)])
    assert again.exit_code == 2 and "never overwritten" in again.output


def baton(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, check=False, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("path", HISTORIES[:1], ids=[p.stem for p in HISTORIES[:1]])
@pytest.mark.slow
def test_a_proof_round_trips_through_the_cli_and_is_checked_without_the_store(path: Path, tmp_path: Path) -> None:
    db = tmp_path / "baton.db"
    shutil.copy(path, db)  # the oldest store kept: written before revision 0009, its traces are trace_events rows
    keydir, witness = tmp_path / "keys", tmp_path / "witness"
    assert baton("log", "keygen", "--out", str(keydir)).returncode == 0
    done = baton("log", "checkpoint", "--db", str(db), "--key", str(keydir / "checkpoint.key"), "--out", str(witness))
    assert done.returncode == 0, done.stderr
    store = SqlStore(str(db))
    oldest = store.list_decisions(limit=1000)[-1]
    assert store.chained_entry(oldest["id"]) is not None and store.get(oldest["id"]) is not None
    proof = tmp_path / "proof.json"
    done = baton("log", "prove", oldest["id"], "--db", str(db), "-o", str(proof))
    assert done.returncode == 0, done.stderr
    bundle = json.loads(proof.read_text())
    assert bundle["record"]["decision_id"] == oldest["id"] and bundle["checkpoint"]["size"] == store.count()
    check = ["log", "check-proof", str(proof), "--public-key", str(keydir / "checkpoint.pub")]
    done = baton(*check, "--checkpoints", str(witness))
    assert done.returncode == 0 and "proven: decision" in done.stdout, done.stdout + done.stderr

    bundle["entry"]["head"] = bundle["entry"]["head"].replace('"outcome":"', '"outcome":"x', 1)
    proof.write_text(json.dumps(bundle))
    done = baton(*check)
    assert done.returncode == 1 and "the record was altered" in done.stdout

    # the checker alone (python -m adapters.doors.cli.audit_cmds): no store, no database driver imported
    code = ("import runpy, sys; sys.argv = ['check', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('adapters.doors.cli.audit_cmds', run_name='__main__')\nfinally:\n"
            "    print('loaded', [m for m in sys.modules if m.startswith(('sqlalchemy', "
            "'adapters.infra.store', 'psycopg', 'sqlite3'))])")
    done = subprocess.run([sys.executable, "-c", code, str(proof), "--public-key", str(keydir / "checkpoint.pub")],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "NOT PROVEN" in done.stdout, done.stdout + done.stderr
    assert "loaded []" in done.stdout


def test_an_edited_tree_table_is_reported_though_the_log_agrees(keys: tuple[Any, Path], tmp_path: Path) -> None:
    key, public = keys
    db = str(tmp_path / "baton.db")
    store = SqlStore(db)
    save(store, 70, "a")
    checkpoint_now(store, key, tmp_path / "w")
    args = ["log", "verify", "--db", db, "--checkpoints", str(tmp_path / "w"), "--public-key", str(public)]
    assert runner.invoke(app, args).exit_code == 0
    with store.writer.begin() as conn:  # the proofs' shortcut, not the evidence: verify rebuilds the tree itself
        conn.execute(sa.text("UPDATE merkle_nodes SET hash = :h"), {"h": "00" * 32})
        conn.execute(sa.text("UPDATE chain_head SET frontier = :f"), {"f": "11" * 32 * 3})
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "ok: 1 signed checkpoints" in result.output
    assert "the store's own tree (size 70" in result.output and "were its tables edited?" in result.output
