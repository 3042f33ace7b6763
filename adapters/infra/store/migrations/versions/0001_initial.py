"""Initial schema: ruleset versions, decisions with their hash chain, trace events, calls.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One helper per table, called in the order the tables were first created: decisions before the
    tables whose rows reference it."""
    _ruleset_versions()
    _decisions()
    _trace_events()
    _calls()
    _chain_head()


def _ruleset_versions() -> None:
    op.create_table(
        "ruleset_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.Float, nullable=False),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.Column("published_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_ruleset_versions_name", "ruleset_versions", ["name"])


def _decisions() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("chain_seq", sa.Integer, nullable=False, unique=True),
        sa.Column("ruleset", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("head", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("caller", "idempotency_key", name="uq_decisions_idempotency"),
    )
    op.create_index("ix_decisions_ruleset_created", "decisions", ["ruleset", "created_at"])
    op.create_index("ix_decisions_created", "decisions", ["created_at"])
    op.create_index("ix_decisions_version", "decisions", ["version"])
    op.create_index("ix_decisions_outcome", "decisions", ["outcome"])


def _trace_events() -> None:
    op.create_table(
        "trace_events",
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id"), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
    )


def _calls() -> None:
    op.create_table(
        "calls",
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id"), primary_key=True),
        sa.Column("call_no", sa.Integer, primary_key=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
    )


def _chain_head() -> None:
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in ("chain_head", "calls", "trace_events", "decisions", "ruleset_versions"):
        op.drop_table(table)
