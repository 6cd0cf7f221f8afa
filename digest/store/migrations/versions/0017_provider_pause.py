"""provider pauses shared by every sender process

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 21:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.store.models

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty: pauses so far lived in each process's memory only.
    op.create_table(
        "provider_pause",
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("paused_until", digest.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("updated_at", digest.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider"),
    )


def downgrade() -> None:
    op.drop_table("provider_pause")
