"""API keys of the REST API (only their hashes)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import digest.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", digest.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", digest.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", digest.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rate_window", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rate_count", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("prefix"),
    )


def downgrade() -> None:
    op.drop_table("api_key")
