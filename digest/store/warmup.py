"""The warm-up counter: deliveries queued per warm-up day (``warmup_day``), one row a day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.store.models import WarmupDay

W = WarmupDay.__table__  # type: ignore[attr-defined]


def take_day(conn: Connection, day: str, now: datetime) -> int:
    """How many deliveries ``day`` queued so far; holds the day's row until the transaction ends.

    An upsert that rewrites the row, so it locks it on PostgreSQL: a second process
    queueing the same day waits here until the first commits, then reads its count.
    SQLite serialises writers anyway. Counting itself is :func:`add_queued`.
    """
    ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        ins(W)
        .values(day=day, queued=0, updated_at=literal(now, type_=W.c.updated_at.type))
        .on_conflict_do_update(index_elements=[W.c.day], set_={"queued": W.c.queued})
        .returning(W.c.queued)
    )
    return int(conn.execute(stmt).scalar_one())


def add_queued(conn: Connection, day: str, n: int, now: datetime) -> None:
    """Count ``n`` more deliveries queued on ``day`` (a row :func:`take_day` created)."""
    if n:
        conn.execute(update(W).where(W.c.day == day).values(queued=W.c.queued + n, updated_at=now))


def queued_on(conn: Connection, day: str) -> int:
    """How many deliveries ``day`` queued (0 if none); reads without locking, for status and dry runs."""
    return int(conn.execute(select(W.c.queued).where(W.c.day == day)).scalar_one_or_none() or 0)
