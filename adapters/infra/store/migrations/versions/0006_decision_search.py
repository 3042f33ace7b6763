"""Full-text search over each decision's input facts (the console's "fact text" filter): SQLite FTS5,
PostgreSQL tsvector with a GIN index. Existing decisions are indexed from their stored trace.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE decision_search USING fts5(decision_id UNINDEXED, text, "
                   "tokenize='unicode61')")
        op.execute("INSERT INTO decision_search (decision_id, text) SELECT decision_id, group_concat(event, ' ') "
                   "FROM trace_events WHERE kind = 'fact' AND event LIKE '%\"source\":\"input\"%' "
                   "GROUP BY decision_id")
    else:
        op.create_table("decision_search",
                        sa.Column("decision_id", sa.String(40), primary_key=True),
                        sa.Column("tsv", sa.dialects.postgresql.TSVECTOR, nullable=False))
        op.execute("CREATE INDEX ix_decision_search_tsv ON decision_search USING GIN (tsv)")
        op.execute("INSERT INTO decision_search (decision_id, tsv) SELECT decision_id, "
                   "to_tsvector('simple', string_agg(event, ' ')) FROM trace_events WHERE kind = 'fact' "
                   "AND event LIKE '%\"source\":\"input\"%' GROUP BY decision_id")


def downgrade() -> None:
    op.execute("DROP TABLE decision_search")
