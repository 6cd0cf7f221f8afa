"""Paused mailbox providers (``provider_pause``): one row per provider, shared by every sender process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.core.logs import mask_emails
from digest.core.text import one_line
from digest.store.models import ProviderPause

P = ProviderPause.__table__  # type: ignore[attr-defined]


def record_provider_pause(conn: Connection, provider: str, until: datetime, reason: str, now: datetime) -> None:
    """Pause ``provider`` until ``until`` for every sender; a later pause already recorded stays.

    ``reason`` is the rule and the server's reply: any address in it is masked here,
    whoever calls.
    """
    ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = ins(P).values(
        provider=provider,
        paused_until=literal(until, type_=P.c.paused_until.type),
        reason=mask_emails(one_line(reason))[:300],
        updated_at=literal(now, type_=P.c.updated_at.type),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[P.c.provider],
        set_={
            "paused_until": stmt.excluded.paused_until,
            "reason": stmt.excluded.reason,
            "updated_at": stmt.excluded.updated_at,
        },
        where=P.c.paused_until < stmt.excluded.paused_until,
    )
    conn.execute(stmt)


def active_provider_pauses(conn: Connection, now: datetime) -> list[ProviderPause]:
    """The providers paused beyond ``now``, by name; expired rows are ignored (the next pause overwrites them)."""
    rows = conn.execute(select(P).where(P.c.paused_until > now).order_by(P.c.provider))
    return [ProviderPause.model_validate(r._mapping) for r in rows]
