"""Bounces: a delivery status notification counted against the subscriber it is about."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.subscriptions import record_event
from digest.core.clock import Clock
from digest.core.settings import Settings
from digest.store.bounces import count_permanent_bounce
from digest.store.db import session_scope
from digest.store.models import Subscriber, SubscriberEvent, SubscriberEventKind
from digest.store.subscribers import find_subscriber


class BounceResult(StrEnum):
    """What one bounce report did to one subscriber."""

    COUNTED = "counted"  # a permanent failure, counted
    BOUNCED = "bounced"  # ... and it reached bounce_limit: no more mail
    RECORDED = "recorded"  # a temporary failure: noted only
    DUPLICATE = "duplicate"  # this report was processed before
    UNKNOWN = "unknown"  # not a subscriber


def record_bounce(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    email: str,
    *,
    permanent: bool,
    ref: str | None,
    detail: str = "",
    subscriber_id: int | None = None,
) -> BounceResult:
    """Record a bounce for ``email`` (or the subscriber ``subscriber_id``, when the
    return path named them): permanent ones count towards ``bounce_limit``.

    ``ref`` (the report's Message-ID) makes it idempotent: the same report read
    twice (an mbox processed again) counts once.
    """
    now = clock.now()
    kind = SubscriberEventKind.BOUNCE_PERMANENT if permanent else SubscriberEventKind.BOUNCE_TEMPORARY
    with session_scope(engine) as session:
        sub = session.get(Subscriber, subscriber_id) if subscriber_id is not None else find_subscriber(session, email)
        if sub is None or sub.id is None:
            return BounceResult.UNKNOWN
        if ref is not None:
            seen = session.exec(
                select(SubscriberEvent.id).where(
                    SubscriberEvent.subscriber_id == sub.id, SubscriberEvent.kind == kind, SubscriberEvent.ref == ref
                )
            ).first()
            if seen is not None:
                return BounceResult.DUPLICATE
        if not permanent:
            record_event(session, sub, kind, now, source="inbound", ref=ref, detail=detail)
            return BounceResult.RECORDED
        bounced = count_permanent_bounce(
            session.connection(), sub.id, now, settings.bounce_limit, source="inbound", ref=ref, detail=detail
        )
        return BounceResult.BOUNCED if bounced else BounceResult.COUNTED
