"""subscriber streak of soft bounces (the sunset rule)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 16:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing subscribers start with a clean slate: past deferrals are not reconstructed.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("soft_bounce_streak", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("soft_bounce_streak")
