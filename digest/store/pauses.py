"""Paused digests: a digest with a row here is not sent until an operator resumes it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.store.models import DigestPause

P = DigestPause.__table__  # type: ignore[attr-defined]


def pause_digest(conn: Connection, digest: str, reason: str, now: datetime, edition_id: int | None = None) -> bool:
    """Pause ``digest``; return False when it was paused already (the first reason stays)."""
    dialect = conn.dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else insert
    stmt = ins(P).values(digest=digest, reason=reason[:1000], edition_id=edition_id, paused_at=now)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["digest"])
    return conn.execute(stmt.returning(P.c.digest)).first() is not None


def resume_digest(conn: Connection, digest: str) -> bool:
    """Lift the pause of ``digest``; return False when it was not paused."""
    return conn.execute(delete(P).where(P.c.digest == digest).returning(P.c.digest)).first() is not None


def paused_digests(conn: Connection) -> dict[str, DigestPause]:
    """Every paused digest, by name."""
    return {r.digest: DigestPause.model_validate(r._mapping) for r in conn.execute(select(P))}
