"""Documents sent with decisions, and policy corpora for retrieval (SQLite FTS5 / PostgreSQL tsvector).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("pages", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "corpora",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("passages", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "passages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("corpus", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document", sa.String(500), nullable=False),
        sa.Column("section", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_passages_corpus_version", "passages", ["corpus", "version"])
    if op.get_bind().dialect.name == "sqlite":
        # an external-content FTS5 index over passages (rowid = passages.id), filled by the indexer
        op.execute("CREATE VIRTUAL TABLE passages_fts USING fts5(section, content, content='passages', "
                   "content_rowid='id', tokenize='porter unicode61')")
    else:
        op.execute("ALTER TABLE passages ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
                   "(setweight(to_tsvector('english', coalesce(section, '')), 'A') || "
                   "to_tsvector('english', content)) STORED")
        op.execute("CREATE INDEX ix_passages_tsv ON passages USING GIN (tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE passages_fts")
    op.drop_table("passages")
    op.drop_table("corpora")
    op.drop_table("documents")
