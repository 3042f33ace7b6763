"""The Merkle tree the store keeps over its chain (adapters/infra/store/tree.py), on SQLite and PostgreSQL: after
batches of every size its head, inclusion proofs and consistency proofs agree with a tree rebuilt from the
chain hashes alone; decisions written without the tree (a process of an earlier version) are taken in by the
next batch; a store of an earlier version gets its tree at migration."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import Pending, SqlStore
from engine import merkle
from engine.audit import tree_leaf
from engine.record import DecisionRecord
from tests.helpers import decide

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = sorted((ROOT / "tests" / "histories").glob("store-v*.db"))
TRIAGE = load_file(ROOT / "rulesets" / "claims-triage.yaml")


def records(n: int, prefix: str = "t") -> list[DecisionRecord]:
    test = TRIAGE.tests[0]
    base = decide(TRIAGE, test.given, test.answers).to_dict()
    out = []
    for i in range(n):
        record = copy.deepcopy(base)
        record["decision_id"] = f"{prefix}-{i:05d}"
        out.append(record)
    return out


def rebuilt(store: SqlStore) -> merkle.Tree:
    """The tree from the chain hashes alone, as a verifier builds it."""
    tree = merkle.Tree()
    for page in store.chain_hashes(chunk=50):
        for seq, digest in page:
            assert seq == tree.size + 1
            tree.append(tree_leaf(digest))
    return tree


def save_in_batches(store: SqlStore, items: list[DecisionRecord], sizes: list[int]) -> None:
    at, i = 0, 0
    while at < len(items):
        n = sizes[i % len(sizes)]
        store.save_batch([Pending(r) for r in items[at:at + n]])
        at, i = at + n, i + 1


def test_the_stored_tree_agrees_with_one_rebuilt_from_the_chain(db_url: str) -> None:
    store = SqlStore(db_url)
    assert store.tree_head() == (0, merkle.EMPTY_ROOT) and len(store.log_id()) == 32
    save_in_batches(store, records(200), [1, 7, 64, 3, 100])
    tree = rebuilt(store)
    assert tree.size == 200 == store.count()
    assert store.tree_head() == (200, tree.root())
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM merkle_nodes")).scalar_one()
    assert stored == len(tree.nodes) == 3 + 1  # three subtrees of 64 leaves, one of 128
    for size in (1, 63, 64, 65, 128, 129, 199, 200):
        assert store.tree_root(size) == tree.root(size)
        for index in {0, size // 2, size - 1}:
            proof = store.inclusion_proof(index, size)
            assert merkle.verify_inclusion(tree.node(0, index), index, size, proof, tree.root(size))
    for old, new in ((1, 200), (64, 65), (65, 200), (100, 129), (200, 200)):
        proof = store.consistency_proof(old, new)
        assert merkle.verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    with pytest.raises(LookupError):
        store.inclusion_proof(0, 201)  # the store has 200


def test_decisions_written_without_the_tree_are_taken_in_by_the_next_batch(db_url: str) -> None:
    store = SqlStore(db_url)
    save_in_batches(store, records(70), [70])
    with store.writer.begin() as conn:  # as a writer of an earlier version leaves it: the tree stops at 3
        conn.execute(sa.text("DELETE FROM merkle_nodes"))
        frontier = merkle.Frontier()
        for _, digest in next(store.chain_hashes())[:3]:
            frontier.append(tree_leaf(digest))
        conn.execute(sa.text("UPDATE chain_head SET tree_size = 3, frontier = :f"), {"f": frontier.to_hex()})
    save_in_batches(store, records(2, "u"), [2])
    tree = rebuilt(store)
    assert store.tree_head() == (72, tree.root())
    assert merkle.verify_inclusion(tree.node(0, 5), 5, 72, store.inclusion_proof(5, 72), tree.root())


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_an_earlier_store_gets_its_tree_at_migration(path: Path, tmp_path: Path) -> None:
    shutil.copy(path, tmp_path / "baton.db")
    store = SqlStore(str(tmp_path / "baton.db"))
    tree = rebuilt(store)
    assert tree.size == store.count() >= 80
    assert store.tree_head() == (tree.size, tree.root()) and store.log_id()
    store.save(records(1, "after")[0])
    assert store.tree_head() == (tree.size + 1, rebuilt(store).root())
    assert store.verify() == (tree.size + 1, None)
