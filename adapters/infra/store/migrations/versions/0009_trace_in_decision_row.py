"""A decision's trace is stored in its own row (``decisions.trace``: the events' canonical JSON, one per
line, exactly the text the chain hash covers) instead of one ``trace_events`` row per event: an eighth of
the rows to write per decision and one query to read a record. Decisions stored before keep their
``trace_events`` rows (``trace`` NULL) and are read and verified from there.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("trace", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("decisions", "trace")
