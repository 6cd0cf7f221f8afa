"""Bounces counted per subscriber: permanent failures up to bounce_limit, soft-bounce streaks (sunset)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.engine import Connection

from digest.core.text import mask_email
from digest.store.models import (
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    SuppressionReason,
    event_values,
)
from digest.store.suppressions import suppress
from digest.store.webhooks import subscriber_event

log = logging.getLogger(__name__)


def count_permanent_bounce(
    conn: Connection,
    subscriber_id: int,
    now: datetime,
    bounce_limit: int,
    *,
    source: str,
    ref: str | None = None,
    detail: str = "",
) -> bool:
    """Count one permanent failure of the subscriber's address, and note it in their events.

    The one bounce rule, whoever learnt of the failure (the SMTP server's 5xx while
    sending, or a bounce report read later): ``bounce_count`` goes up by one, a
    ``bounce_permanent`` event records ``source``, ``ref`` (the Message-ID concerned)
    and ``detail`` (the server's answer), and an active subscriber who reaches
    ``bounce_limit`` is ``bounced`` and their address suppressed. Returns True when
    this failure bounced them.

    Statements on ``conn``, in its transaction: the count is incremented in SQL, so
    senders and the inbound handler counting at the same time lose no bounce. A
    subscriber deleted meanwhile is left alone (no event for a row that is gone).
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    found = conn.execute(
        update(subs)
        .where(subs.c.id == subscriber_id)
        .values(bounce_count=subs.c.bounce_count + 1, updated_at=now)
        .returning(subs.c.bounce_count, subs.c.email)
    ).one_or_none()
    if found is None:
        return False
    count, email = found
    conn.execute(
        insert(SubscriberEvent.__table__).values(  # type: ignore[attr-defined]
            event_values(
                subscriber_id, SubscriberEventKind.BOUNCE_PERMANENT, now, source=source, ref=ref, detail=detail
            )
        )
    )
    bounced = conn.execute(
        update(subs)
        .where(subs.c.id == subscriber_id, subs.c.status == SubscriberStatus.ACTIVE)
        .where(subs.c.bounce_count >= bounce_limit)
        .values(status=SubscriberStatus.BOUNCED)
        .returning(subs.c.email)
    ).scalar_one_or_none()
    subscriber_event(
        conn,
        SubscriberEventKind.BOUNCE_PERMANENT,
        subscriber_id,
        email,
        now,
        source=source,
        ref=ref,
        detail=detail[:1000],
        bounce_count=count,
        stopped=bounced is not None,
    )
    if bounced is not None:
        suppress(conn, bounced, SuppressionReason.BOUNCED, source, now)
        log.info("subscriber %s bounced after %d permanent failures", subscriber_id, count)
        return True
    return False


def count_soft_bounce(
    conn: Connection,
    subscriber_id: int,
    now: datetime,
    sunset_limit: int,
    *,
    ref: str | None = None,
    detail: str = "",
) -> bool:
    """Count one delivery the server deferred for the subscriber (the sunset rule).

    ``soft_bounce_streak`` goes up by one (in SQL, like the bounce count); an active
    subscriber who reaches ``sunset_limit`` (0: never) becomes ``bounced`` and a
    ``sunset`` event records ``ref`` and the last answer. The address is not
    suppressed: a mailbox that was full or throttled may work again, and the
    operator can reactivate them. Returns True when this deferral stopped them.
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    streak = conn.execute(
        update(subs)
        .where(subs.c.id == subscriber_id)
        .values(soft_bounce_streak=subs.c.soft_bounce_streak + 1)
        .returning(subs.c.soft_bounce_streak)
    ).scalar_one_or_none()
    if streak is None or sunset_limit <= 0 or streak < sunset_limit:
        return False
    stopped = conn.execute(
        update(subs)
        .where(subs.c.id == subscriber_id, subs.c.status == SubscriberStatus.ACTIVE)
        .values(status=SubscriberStatus.BOUNCED, updated_at=now)
        .returning(subs.c.email)
    ).scalar_one_or_none()
    if stopped is None:
        return False
    conn.execute(
        insert(SubscriberEvent.__table__).values(  # type: ignore[attr-defined]
            event_values(
                subscriber_id,
                SubscriberEventKind.SUNSET,
                now,
                source="smtp",
                ref=ref,
                detail=f"{streak} deliveries in a row deferred; last: {detail}",
            )
        )
    )
    subscriber_event(
        conn,
        SubscriberEventKind.SUNSET,
        subscriber_id,
        stopped,
        now,
        source="smtp",
        ref=ref,
        detail=detail[:1000],
        soft_bounce_streak=streak,
        stopped=True,
    )
    log.warning("subscriber %s no longer mailed: %d deliveries in a row deferred", mask_email(stopped), streak)
    return True


def reset_soft_bounces(conn: Connection, subscriber_ids: Sequence[int]) -> None:
    """A delivery the server accepted ends each of these subscribers' streak of deferrals."""
    if not subscriber_ids:
        return
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    conn.execute(
        update(subs)
        .where(subs.c.id.in_(sorted(set(subscriber_ids))), subs.c.soft_bounce_streak != 0)
        .values(soft_bounce_streak=0)
    )
