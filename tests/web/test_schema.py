"""Migration 0004 creates exactly what the SubscriberEvent model describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel


def test_subscriber_event_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    mine = [d for d in diffs if "subscriber_event" in repr(d)]
    assert mine == []
