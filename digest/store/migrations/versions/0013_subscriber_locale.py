"""subscriber locale: the language of their copy (NULL = the digest's language)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: existing subscribers keep reading the digest's configured language.
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("locale")
