"""Governance: publications (four-eyes approval, effective dates) and shadow runs.

Versions published before this revision become published publications, effective from when they
were published, so the active version does not change on upgrade.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ruleset", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("requested_from", sa.Float, nullable=True),
        sa.Column("effective_from", sa.Float, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.Column("decision_note", sa.Text, nullable=False),
    )
    op.create_index("ix_publications_ruleset_status", "publications", ["ruleset", "status", "effective_from"])
    op.create_index("ix_publications_version", "publications", ["version"])
    op.execute(
        "INSERT INTO publications (id, ruleset, version, status, submitted_by, submitted_at, note, requested_from, "
        "effective_from, decided_by, decided_at, decision_note) "
        "SELECT 'legacy-' || substr(version, 1, 32), name, version, 'published', coalesce(published_by, ''), "
        "published_at, 'published before approvals existed', published_at, published_at, "
        "coalesce(published_by, ''), published_at, '' FROM ruleset_versions WHERE published_at IS NOT NULL")
    op.create_table(
        "shadows",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ruleset", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("attached_by", sa.String(200), nullable=False),
        sa.Column("attached_at", sa.Float, nullable=False),
        sa.Column("detached_at", sa.Float, nullable=True),
    )
    op.create_index("ix_shadows_ruleset", "shadows", ["ruleset"])
    op.create_table(
        "shadow_results",
        sa.Column("decision_id", sa.String(40), primary_key=True),
        sa.Column("shadow_version", sa.String(64), primary_key=True),
        sa.Column("ruleset", sa.String(100), nullable=False),
        sa.Column("live_version", sa.String(64), nullable=False),
        sa.Column("live_outcome", sa.String(20), nullable=False),
        sa.Column("shadow_outcome", sa.String(20), nullable=False),
        sa.Column("changed", sa.Boolean, nullable=False),
        sa.Column("unanswered", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_shadow_results_version_created", "shadow_results", ["shadow_version", "created_at"])


def downgrade() -> None:
    op.drop_table("shadow_results")
    op.drop_table("shadows")
    op.drop_table("publications")
