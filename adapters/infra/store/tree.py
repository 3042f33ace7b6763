"""The Merkle tree area of the store: the tree over the chain hashes that the writer keeps as it writes
(decisions.py ``_tree_at``; revision 0012), read back as tree heads, inclusion proofs and consistency proofs
(engine/merkle.py), and the chain hashes in order for a verifier that rebuilds the tree itself.

Nothing here is evidence on its own: whoever can write to the database can rewrite these tables too. What
makes a rewrite visible is a signed checkpoint kept outside the database (adapters/infra/checkpoints.py); the tables
only make its proofs cheap - a proof reads O(log n) stored subtrees and the chain hashes of at most three
blocks of 64 decisions (where the leaf is, where the older tree ends, where the tree ends)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.infra.store.base import CHECKPOINTS, DECISIONS, HEAD, MERKLE, TRACE, TREE_KEEP_FROM, StoreBase
from engine import merkle
from engine.audit import tree_leaf

BLOCK = 1 << TREE_KEEP_FROM


class _StoredTree:
    """A ``NodeSource`` over the store, in one transaction: stored subtrees, and below them hashes of the
    chain hashes of one block of 64 decisions (read once)."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn, self.size = conn, size
        self.blocks: dict[int, list[bytes]] = {}

    def node(self, level: int, index: int) -> bytes:
        if (index + 1) << level > self.size:
            raise LookupError(f"the subtree ({level}, {index}) is not complete in a tree of {self.size}")
        if level >= TREE_KEEP_FROM:
            found = self.conn.execute(sa.select(MERKLE.c.hash).where(MERKLE.c.level == level,
                                                                     MERKLE.c.idx == index)).scalar()
            if found is None:
                raise LookupError(f"the stored tree lacks its subtree ({level}, {index})")
            return bytes.fromhex(found)
        block = (index << level) // BLOCK
        leaves = self.blocks.get(block)
        if leaves is None:
            digests = self.conn.execute(sa.select(DECISIONS.c.hash).where(
                DECISIONS.c.chain_seq > block * BLOCK, DECISIONS.c.chain_seq <= min((block + 1) * BLOCK, self.size))
                .order_by(DECISIONS.c.chain_seq)).scalars().all()
            leaves = self.blocks[block] = [tree_leaf(d) for d in digests]
        first = (index << level) - block * BLOCK
        if first + (1 << level) > len(leaves):
            raise LookupError(f"decisions are missing from positions {block * BLOCK + 1}-{(block + 1) * BLOCK}")
        return _perfect(leaves, first, 1 << level)


def _perfect(leaves: list[bytes], start: int, n: int) -> bytes:
    if n == 1:
        return leaves[start]
    half = n // 2
    return merkle.node_hash(_perfect(leaves, start, half), _perfect(leaves, start + half, half))


class TreeArea(StoreBase):
    def log_id(self) -> str:
        """The id this store's log has had since revision 0012 (a checkpoint's origin names it)."""
        with self.engine.connect() as conn:
            return str(conn.execute(sa.select(HEAD.c.log_id).where(HEAD.c.id == 1)).scalar() or "")

    def tree_head(self) -> tuple[int, bytes]:
        """The tree's size and root as the writer last left them (from its frontier: no proof read)."""
        with self.engine.connect() as conn:
            size, frontier = conn.execute(sa.select(HEAD.c.tree_size, HEAD.c.frontier).where(HEAD.c.id == 1)).one()
        return int(size), merkle.Frontier.from_hex(int(size), frontier).root()

    def tree_root(self, size: int) -> bytes:
        with self.engine.begin() as conn:
            return merkle.root(size, _StoredTree(conn, size).node)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of the decision at chain position ``index + 1`` in the tree of ``size``."""
        with self.engine.begin() as conn:
            return merkle.inclusion_proof(index, size, _StoredTree(conn, size).node)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        with self.engine.begin() as conn:
            return merkle.consistency_proof(old, new, _StoredTree(conn, new).node)

    def chain_hashes(self, chunk: int = 10_000) -> Iterator[list[tuple[int, str]]]:
        """Every stored (chain position, chain hash), in chain order, a page at a time, in one snapshot."""
        last = 0
        with self.engine.begin() as conn:
            while True:
                rows = conn.execute(sa.select(DECISIONS.c.chain_seq, DECISIONS.c.hash).where(
                    DECISIONS.c.chain_seq > last).order_by(DECISIONS.c.chain_seq).limit(chunk)).all()
                if not rows:
                    return
                yield [(int(s), str(h)) for s, h in rows]
                last = rows[-1][0]

    def chained_entry(self, decision_id: str) -> dict[str, Any] | None:
        """A decision exactly as it is hashed: chain position, previous hash, hash, canonical head and the
        canonical JSON of each trace event (what a proof carries so that the chain hash can be recomputed
        without the store)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(DECISIONS.c.chain_seq, DECISIONS.c.prev_hash, DECISIONS.c.hash,
                                         DECISIONS.c.head, DECISIONS.c.trace).where(
                DECISIONS.c.id == decision_id)).first()
            if row is None:
                return None
            if row.trace is None:  # stored before revision 0009: one trace_events row per event
                events = list(conn.execute(sa.select(TRACE.c.event).where(TRACE.c.decision_id == decision_id)
                                           .order_by(TRACE.c.idx)).scalars())
            else:
                events = row.trace.split("\n") if row.trace else []
        return {"chain_seq": int(row.chain_seq), "prev_hash": row.prev_hash, "hash": row.hash, "head": row.head,
                "events": events}

    def add_checkpoint(self, checkpoint_id: str, size: int, signed_at: str, checkpoint: str) -> None:
        """Keep a signed checkpoint's JSON (once: the same id again is ignored)."""
        with self.writer.begin() as conn:
            if conn.execute(sa.select(CHECKPOINTS.c.id).where(CHECKPOINTS.c.id == checkpoint_id)).first() is None:
                conn.execute(CHECKPOINTS.insert().values(id=checkpoint_id, size=size, signed_at=signed_at,
                                                         checkpoint=checkpoint))

    def latest_checkpoints(self, covering: int = 0, limit: int = 1) -> list[str]:
        """The JSON of the newest kept checkpoints of ``covering`` decisions or more, largest first."""
        c = CHECKPOINTS.c
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(c.checkpoint).where(c.size >= covering)
                                     .order_by(c.size.desc(), c.signed_at.desc()).limit(limit)).scalars())

    def first_checkpoint_covering(self, decision_id: str) -> tuple[str | None, bool]:
        """The JSON of the first kept checkpoint that covers this decision (None: none yet), and whether any
        checkpoint is kept at all (a log that is never signed shows no checkpoint line)."""
        c = CHECKPOINTS.c
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(DECISIONS.c.chain_seq).where(DECISIONS.c.id == decision_id)).scalar()
            found = None if seq is None else conn.execute(sa.select(c.checkpoint).where(c.size >= seq).order_by(
                c.size, c.signed_at).limit(1)).scalar()
            any_kept = found is not None or conn.execute(sa.select(c.id).limit(1)).first() is not None
        return found, any_kept
