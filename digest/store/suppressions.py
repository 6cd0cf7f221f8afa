"""The suppression list: addresses that get no mail until their owner confirms again.

An address lands here when its owner unsubscribes, complains (a feedback report)
or hard-bounces, or when an operator adds it. Rows are keyed by the SHA-256 of the
lower-cased address (:func:`email_hash`), so they outlive the subscriber row: a
deleted subscriber imported again is still caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.core.errors import InputError
from digest.store.bulk import rows_in
from digest.store.models import Suppression, SuppressionReason

T = Suppression.__table__  # type: ignore[attr-defined]


def email_hash(email_key: str) -> str:
    """The suppression key of an address: SHA-256 (hex) of its lower-cased form."""
    return hashlib.sha256(email_key.strip().casefold().encode("utf-8")).hexdigest()


def suppress(conn: Connection, email: str, reason: str, source: str, now: datetime) -> bool:
    """Add ``email`` to the list; return False when it was there already (the first reason stays).

    One INSERT .. ON CONFLICT DO NOTHING on the unique hash, in the caller's
    transaction: two handlers suppressing the same address at once both succeed.
    """
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT that did nothing.
    stmt = _insert_new(conn).values(_entry(email, reason, source, now)).returning(T.c.id)
    return conn.execute(stmt).first() is not None


def suppress_many(conn: Connection, entries: Sequence[tuple[str, str]], source: str, now: datetime) -> None:
    """:func:`suppress` each ``(email, reason)`` of ``entries``, in one multi-row statement."""
    if entries:
        conn.execute(_insert_new(conn), [_entry(email, reason, source, now) for email, reason in entries])


def _entry(email: str, reason: str, source: str, now: datetime) -> dict[str, object]:
    if reason not in SuppressionReason.ALL:
        raise InputError("reason", f"must be one of {', '.join(SuppressionReason.ALL)}")
    return {
        "email_hash": email_hash(email),
        "email": email.strip()[:320],
        "reason": reason,
        "source": source[:30],
        "created_at": now,
    }


def _insert_new(conn: Connection) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING on the unique hash: an address already listed keeps its first reason."""
    dialect = conn.dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else insert
    stmt = ins(T)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["email_hash"])
    return stmt


def unsuppress(conn: Connection, email: str) -> bool:
    """Take ``email`` off the list; return False when it was not on it."""
    result = conn.execute(delete(T).where(T.c.email_hash == email_hash(email)).returning(T.c.id))
    return result.first() is not None


def suppression_of(conn: Connection, email: str) -> Suppression | None:
    """The list's row for ``email``, if any."""
    row = conn.execute(select(T).where(T.c.email_hash == email_hash(email))).first()
    return Suppression.model_validate(row._mapping) if row is not None else None


def reasons_of_hashes(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """Hash -> reason of those of ``hashes`` (see :func:`email_hash`) on the list."""
    wanted = sorted(hashes)
    if not wanted:
        return {}
    return {
        h: reason
        for h, reason in rows_in(conn, "SELECT email_hash, reason FROM suppression WHERE email_hash {in}", wanted)
    }


def list_suppressions(conn: Connection, reason: str | None = None) -> Sequence[Suppression]:
    """Every suppressed address (optionally of one ``reason``), oldest first."""
    stmt = select(T).order_by(T.c.id)
    if reason:
        stmt = stmt.where(T.c.reason == reason)
    return [Suppression.model_validate(r._mapping) for r in conn.execute(stmt)]
