"""delivery: a lean row to queue a million at once (no foreign keys, four indexes instead of six)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:45:00

Queueing an edition inserts one delivery per subscriber. On PostgreSQL each row fired
two foreign-key triggers (a lookup and a row lock on the edition and the subscriber)
and maintained six indexes: about two thirds of the time went to the triggers. What
stays is what a query uses:

- the primary key; the unique (edition, subscriber) pair, which also serves every
  query by edition (so ``ix_delivery_edition_id`` went);
- ``ix_delivery_pending`` (the claim's work list) and ``ix_delivery_subscriber_id``
  (erasure, bounces and complaints look deliveries up by subscriber);
- ``ix_delivery_claimed``, partial: a sender's own claims (lease extension, release,
  recovery). It replaces ``ix_delivery_status_next``, whose users all filter by edition
  too, and costs nothing to queue: a queued row is not in it.

The references stay true without the constraints: deliveries are only created from
the subscriber rows in the same statement (``outbox.ledger.queue_deliveries``), and
removing or erasing a subscriber deletes their deliveries first, explicitly, as it did
when SQLite did not enforce the keys. A claim whose subscriber is gone is not sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = sa.text("status IN ('queued', 'claimed', 'failed_temporary')")
CLAIMED = sa.text("status = 'claimed'")
# SQLite's foreign keys have no names: batch mode names them by this convention to drop them.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
REFERENCES = {"edition_id": "edition", "subscriber_id": "subscriber"}


def _fk_name(column: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_delivery_{column}_{REFERENCES[column]}"
    return f"delivery_{column}_fkey"


def upgrade() -> None:
    # The partial index is made again after the batch: SQLite's table copy may not keep its WHERE.
    op.drop_index("ix_delivery_pending", table_name="delivery")
    with op.batch_alter_table("delivery", naming_convention=NAMES) as batch:
        batch.drop_index("ix_delivery_edition_id")
        batch.drop_index("ix_delivery_status_next")
        for column in REFERENCES:
            batch.drop_constraint(_fk_name(column), type_="foreignkey")
    op.create_index(
        "ix_delivery_pending", "delivery", ["edition_id", "id"], sqlite_where=PENDING, postgresql_where=PENDING
    )
    op.create_index("ix_delivery_claimed", "delivery", ["claimed_by"], sqlite_where=CLAIMED, postgresql_where=CLAIMED)


def downgrade() -> None:
    op.drop_index("ix_delivery_claimed", table_name="delivery")
    op.drop_index("ix_delivery_pending", table_name="delivery")
    with op.batch_alter_table("delivery", naming_convention=NAMES) as batch:
        for column, table in REFERENCES.items():
            batch.create_foreign_key(_fk_name(column), table, [column], ["id"])
        batch.create_index("ix_delivery_edition_id", ["edition_id"])
        batch.create_index("ix_delivery_status_next", ["status", "next_attempt_at"])
    op.create_index(
        "ix_delivery_pending", "delivery", ["edition_id", "id"], sqlite_where=PENDING, postgresql_where=PENDING
    )
