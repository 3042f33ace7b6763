"""Escalations: decisions waiting for a person.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ruleset", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("expects", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sla_at", sa.Float, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("resumed_decision_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_escalations_status_queue", "escalations", ["status", "queue"])
    op.create_index("ix_escalations_status_sla", "escalations", ["status", "sla_at"])


def downgrade() -> None:
    op.drop_table("escalations")
