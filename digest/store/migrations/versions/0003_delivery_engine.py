"""delivery engine: partial index of the outbox's pending deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = ("queued", "claimed", "failed_temporary")


def upgrade() -> None:
    # Only deliveries still to be sent are in this index: claiming the next batch is a
    # short range scan however many million rows of earlier editions were sent.
    where = sa.text("status IN ('queued', 'claimed', 'failed_temporary')")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_pending",
            ["edition_id", "id"],
            unique=False,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_pending")
