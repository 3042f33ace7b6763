"""An index on the outbox by (status, name, next_at): a sender claims the due effects of each name it has a
connector for by walking this index in order, so effects waiting for a connector it lacks - however many -
are never read on its polls (before, each poll sorted every due effect).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_status_name_next", "outbox", ["status", "name", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_status_name_next", "outbox")
