"""Helpers of the outbox tests: subscribers to seed, and the rows a send left."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.store.db import session_scope
from digest.store.models import Delivery, Subscriber

D = Delivery.__table__  # type: ignore[attr-defined]


def readers(n: int) -> list[tuple[str, str, str | None]]:
    return [(f"r{i}@example.org", f"Reader {i}", None) for i in range(n)]


def rows(engine: Engine) -> dict[str, Delivery]:
    with session_scope(engine) as s:
        found = s.exec(select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)).all()  # type: ignore[call-overload,arg-type]
        return {sub.email: d for d, sub in found}


def subscriber(engine: Engine, email_addr: str) -> Subscriber:
    with session_scope(engine) as s:
        return s.exec(select(Subscriber).where(Subscriber.email_key == email_addr)).scalars().one()  # type: ignore[call-overload,arg-type]
