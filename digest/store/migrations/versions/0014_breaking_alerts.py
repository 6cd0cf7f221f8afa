"""breaking alerts: subscriber opt-in and quiet hours, edition kind; stories an edition left out

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 17:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nobody is opted in to alerts by a migration: consent is asked for, never assumed.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("alerts", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("quiet_start", sa.String(length=5), nullable=True))
        batch.add_column(sa.Column("quiet_end", sa.String(length=5), nullable=True))
    with op.batch_alter_table("edition") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), nullable=False, server_default="digest"))
    # Editions built before this keep no record of what they left out: nothing to backfill.
    op.create_table(
        "edition_left_out",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("kept_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["edition.id"]),
        sa.PrimaryKeyConstraint("edition_id", "article_id"),
    )


def downgrade() -> None:
    op.drop_table("edition_left_out")
    with op.batch_alter_table("edition") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("quiet_end")
        batch.drop_column("quiet_start")
        batch.drop_column("alerts")
