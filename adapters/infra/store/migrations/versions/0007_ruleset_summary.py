"""What a listing of ruleset versions shows - description, rule and test counts - stored with each
version, so listing hundreds of versions reads one table instead of compiling every source. Versions
stored before this revision get theirs when first listed.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ruleset_versions") as batch:
        batch.add_column(sa.Column("description", sa.Text, nullable=True))
        batch.add_column(sa.Column("rules", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tests", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ruleset_versions") as batch:
        batch.drop_column("tests")
        batch.drop_column("rules")
        batch.drop_column("description")
