"""The console's own rows: signed-in sessions (so signing out, a removed or rotated token and the timeouts
end a session at once), review comments on publications, and notes on effects (who retried them, why).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("roles", sa.String(400), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("ended_why", sa.String(20), nullable=True),
    )
    op.create_table(
        "publication_comments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("publication_id", sa.String(40), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_publication_comments_publication_id", "publication_comments", ["publication_id"])
    op.create_table(
        "effect_notes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("effect_id", sa.String(200), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_effect_notes_effect_id", "effect_notes", ["effect_id"])


def downgrade() -> None:
    op.drop_table("effect_notes")
    op.drop_table("publication_comments")
    op.drop_table("console_sessions")
