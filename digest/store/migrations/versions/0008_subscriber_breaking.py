"""subscriber opt-out of breaking stories outside their topics

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing subscribers keep what they got so far: breaking stories whatever their topics.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("breaking", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("breaking")
