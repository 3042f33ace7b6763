"""The Merkle tree over the chain (RFC 9162; engine/merkle.py), kept as decisions are written: its size and
frontier in the chain head row, its complete subtrees of 64 leaves and more in ``merkle_nodes``, the id
that names this log in its signed checkpoints, and a copy of those checkpoints. Decisions stored before are
added to the tree in chain order here.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from engine.audit import tree_leaf
from engine.merkle import Frontier

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KEEP_FROM = 6  # adapters.infra.store.base.TREE_KEEP_FROM when this revision was written


def upgrade() -> None:
    op.add_column("chain_head", sa.Column("tree_size", sa.Integer, nullable=False, server_default="0"))
    op.add_column("chain_head", sa.Column("frontier", sa.Text, nullable=False, server_default=""))
    op.add_column("chain_head", sa.Column("log_id", sa.String(64), nullable=True))
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("signed_at", sa.String(40), nullable=False),
        sa.Column("checkpoint", sa.Text, nullable=False),
    )
    op.create_index("ix_checkpoints_size", "checkpoints", ["size"])
    conn = op.get_bind()
    frontier = Frontier()
    nodes: list[dict[str, object]] = []
    last = 0
    while True:  # the stored chain, in order, a page at a time
        rows = conn.execute(sa.text("SELECT chain_seq, hash FROM decisions WHERE chain_seq > :last "
                                    "ORDER BY chain_seq LIMIT 5000"), {"last": last}).all()
        if not rows:
            break
        for seq, digest in rows:
            if seq != frontier.size + 1:
                raise RuntimeError(f"the chain has a gap before position {seq}: run `baton log verify`")
            nodes.extend({"level": level, "idx": idx, "hash": h.hex()}
                         for level, idx, h in frontier.append(tree_leaf(digest)) if level >= KEEP_FROM)
        last = rows[-1][0]
    if nodes:
        conn.execute(sa.text("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"), nodes)
    conn.execute(sa.text("UPDATE chain_head SET tree_size = :size, frontier = :frontier, log_id = :log_id "
                         "WHERE id = 1"), {"size": frontier.size, "frontier": frontier.to_hex(),
                                           "log_id": uuid.uuid4().hex})


def downgrade() -> None:
    op.drop_index("ix_checkpoints_size", "checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("merkle_nodes")
    op.drop_column("chain_head", "log_id")
    op.drop_column("chain_head", "frontier")
    op.drop_column("chain_head", "tree_size")
