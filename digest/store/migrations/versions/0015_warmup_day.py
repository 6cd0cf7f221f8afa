"""warm-up schedule: deliveries queued per day

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import digest.store.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty: a schedule switched on counts from its first queueing on.
    op.create_table(
        "warmup_day",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("updated_at", digest.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("warmup_day")
