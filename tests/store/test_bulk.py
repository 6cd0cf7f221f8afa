"""Bulk inserts (binary COPY on PostgreSQL, executemany on SQLite) store what SQLAlchemy would."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, Numeric, String, Table, select
from sqlalchemy.engine import Engine

from digest.store.bulk import insert_encoder, insert_rows
from digest.store.models import Subscriber, UTCDateTime
from tests.conftest import NOW

S = Subscriber.__table__  # type: ignore[attr-defined]
COLUMNS = ("email", "email_key", "name", "status", "timezone", "topics", "breaking", "alerts", "weekday",
           "bounce_count", "soft_bounce_streak", "frequency", "created_at", "updated_at")  # fmt: skip
ROWS = [
    ("Zoë@example.org", "zoë@example.org", "Zoë \\ Tab\there", "active", None, ["Wörld", 'say "hi"'], True, False,
     None, 0, 0, "daily", NOW, NOW + timedelta(hours=1)),
    ("bo@example.org", "bo@example.org", "", "pending", "Asia/Tokyo", [], False, True, 6, 3, 2, "weekly", NOW, NOW),
]  # fmt: skip


def stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*(S.c[c] for c in COLUMNS)).order_by(S.c.id))]


def test_rows_are_stored_as_given(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, S, COLUMNS, ROWS)

    assert stored(engine) == ROWS


def test_rows_encoded_by_the_caller_are_stored_as_given(engine: Engine) -> None:
    with engine.begin() as conn:
        encoder = insert_encoder(conn, S, COLUMNS)
        insert_rows(conn, S, COLUMNS, [encoder.encode(r) for r in ROWS], encoded=True)

    assert stored(engine) == ROWS


def test_a_table_with_a_type_binary_copy_does_not_name_is_written_too(engine: Engine) -> None:
    table = Table(
        "bulk_numbers",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("label", String(20)),
        Column("amount", Numeric(10, 2)),
        Column("flag", Boolean),
        Column("meta", JSON),
        Column("at", UTCDateTime()),
    )
    table.create(engine)
    rows = [(1, "a\tb", 12.5, True, {"k": [1]}, NOW), (2, None, None, None, None, None)]

    with engine.begin() as conn:
        insert_rows(conn, table, ("id", "label", "amount", "flag", "meta", "at"), rows)
        got = [tuple(r) for r in conn.execute(select(table).order_by(table.c.id))]

    assert got == [(1, "a\tb", 12.5, True, {"k": [1]}, NOW), (2, None, None, None, None, None)]
