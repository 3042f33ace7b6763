"""Whole-log verifications kept with who ran them; notes, assignment and close/decline of escalations;
who last put a dead effect back in the queue, and since when an effect has been failing (retries give up
after a configured time of failing).


Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_checks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("checked", sa.Integer, nullable=False),
        sa.Column("broken_seq", sa.Integer, nullable=True),
        sa.Column("broken_id", sa.String(40), nullable=True),
        sa.Column("problem", sa.Text, nullable=True),
    )
    op.create_index("ix_chain_checks_started_at", "chain_checks", ["started_at"])
    op.create_table(
        "escalation_notes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("escalation_id", sa.String(40), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_escalation_notes_escalation_id", "escalation_notes", ["escalation_id"])
    with op.batch_alter_table("escalations") as batch:
        batch.add_column(sa.Column("assigned_to", sa.String(200), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("retried_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("retried_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("failing_since", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failing_since")
        batch.drop_column("retried_at")
        batch.drop_column("retried_by")
    with op.batch_alter_table("escalations") as batch:
        batch.drop_column("assigned_to")
    op.drop_table("escalation_notes")
    op.drop_table("chain_checks")
