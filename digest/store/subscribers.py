"""Subscribers: add, list, change status, export and erase (their fields are checked in subscriber_check)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete as delete_
from sqlalchemy import select as select_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, func, select

from digest.core.errors import InputError, NotFoundError
from digest.core.text import mask_email
from digest.store.models import (
    Delivery,
    Edition,
    SlotClaim,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    SuppressionReason,
)
from digest.store.subscriber_check import KnownTopics, SubscriberCheck
from digest.store.suppressions import T as SUPPRESSIONS
from digest.store.suppressions import email_hash, suppress, suppression_of, unsuppress
from digest.store.webhooks import subscriber_event

log = logging.getLogger(__name__)


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email_key == email.strip().casefold())).first()


# The statuses an operator sets that put the address on the suppression list.
SUPPRESSING: dict[str, str] = {
    SubscriberStatus.UNSUBSCRIBED: SuppressionReason.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED: SuppressionReason.BOUNCED,
}


def add_subscriber(
    session: Session,
    email: str,
    now: datetime,
    *,
    name: str = "",
    timezone: str | None = None,
    topics: str | Sequence[str] | None = None,
    status: str | None = None,
    send_time: str | None = None,
    frequency: str | None = None,
    weekday: int | None = None,
    where: str = "email",
    update: bool = False,
    topics_known: KnownTopics | None = None,
    allow_suppressed: bool = False,
    breaking: bool | None = None,
    locale: str | None = None,
    alerts: bool | None = None,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
) -> tuple[Subscriber, bool]:
    """Add a subscriber (or, with ``update``, change an existing one).

    Returns ``(subscriber, created)``. An existing address without ``update`` is an
    InputError. ``status`` defaults to active for a new subscriber; an existing one
    keeps theirs unless ``status`` is given (an import never re-subscribes by mistake).
    ``topics_known``: the topics must name known sections (see :class:`KnownTopics`).
    ``frequency`` and ``weekday`` (0 = Monday) are stored as given, when given.
    ``breaking``: breaking stories outside the topics too (a new subscriber's default:
    yes); None keeps an existing subscriber's choice. ``locale``: their language (BCP 47, validated
    here); None keeps an existing subscriber's and gives a new one the digest's language. ``alerts``
    (breaking alerts by email, a new subscriber's default: no) likewise; quiet hours (no alerts between
    ``quiet_start`` and ``quiet_end``, local times) are set when both are given.

    An address on the suppression list is not made active (InputError) unless
    ``allow_suppressed``: the operator then vouches for a fresh confirmation, and the
    address leaves the list.
    """
    checked = SubscriberCheck(topics_known)(
        email,
        name=name,
        timezone=timezone,
        topics=topics,
        status=status,
        send_time=send_time,
        locale=locale,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        where=where,
    )
    addr, key, values = checked.email, checked.key, checked.values
    if frequency is not None:  # validated by the caller (digest.app.subscriptions.parse_frequency)
        values.update(frequency=frequency, weekday=weekday)
    existing = find_subscriber(session, key)
    activates = (status or (existing.status if existing is not None else SubscriberStatus.ACTIVE)) == (
        SubscriberStatus.ACTIVE
    )
    if activates:
        held = suppression_of(session.connection(), key)
        if held is not None and not allow_suppressed:
            raise InputError(
                where,
                f"{mask_email(addr)} is suppressed ({held.reason}): it needs a fresh confirmation "
                "(or --allow-suppressed)",
            )
        if held is not None:
            unsuppress(session.connection(), key)
            log.info("%s taken off the suppression list (allowed by the operator)", mask_email(addr))
    if status in SUPPRESSING:
        # An import that says a person left (or bounced) puts them on the list as well.
        suppress(session.connection(), addr, SUPPRESSING[status], "cli", now)
    if existing is not None:
        if not update:
            raise InputError(where, f"{addr} is already subscribed")
        for k, v in values.items():
            if v:
                setattr(existing, k, v)
        if breaking is not None:
            existing.breaking = breaking
        if alerts is not None:
            existing.alerts = alerts
        if status is not None:
            existing.status = status
        existing.updated_at = now
        session.add(existing)
        session.flush()
        return existing, False
    status = status or SubscriberStatus.ACTIVE
    sub = Subscriber(email=addr, email_key=key, status=status, created_at=now, updated_at=now, **values)
    if breaking is not None:
        sub.breaking = breaking
    if alerts is not None:
        sub.alerts = alerts
    session.add(sub)
    session.flush()
    return sub, True


def list_subscribers(session: Session, status: str | None = None, limit: int | None = None) -> Sequence[Subscriber]:
    """Subscribers in the order they were added (the first ``limit``), only those of ``status`` if given."""
    stmt = select(Subscriber).order_by(col(Subscriber.id)).limit(limit)
    if status:
        stmt = stmt.where(Subscriber.status == status)
    return session.exec(stmt).all()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    return {s: n for s, n in rows}


def set_status(session: Session, email: str, status: str, now: datetime) -> Subscriber:
    """Set a subscriber's status; unsubscribed and bounced also suppress the address."""
    sub = find_subscriber(session, email)
    if sub is None:
        raise NotFoundError(f"no subscriber {email}")
    if status in SUPPRESSING:
        suppress(session.connection(), sub.email, SUPPRESSING[status], "cli", now)
    if status == SubscriberStatus.UNSUBSCRIBED and sub.status != status and sub.id is not None:
        # The webhooks that listen hear of an operator's unsubscribe too (the trail keeps the subscriber's own acts).
        subscriber_event(session.connection(), SubscriberEventKind.UNSUBSCRIBED, sub.id, sub.email, now, source="cli")
    sub.status = status
    if status == SubscriberStatus.ACTIVE:
        # Taken back by hand: the sunset rule counts afresh from here.
        sub.soft_bounce_streak = 0
    sub.updated_at = now
    session.add(sub)
    session.flush()
    return sub


def remove_subscriber(session: Session, email: str) -> None:
    """Delete a subscriber and their delivery records (GDPR erasure)."""
    from sqlmodel import delete

    from digest.store.models import Delivery

    sub = find_subscriber(session, email)
    if sub is None:
        raise NotFoundError(f"no subscriber {email}")
    session.exec(delete(Delivery).where(col(Delivery.subscriber_id) == sub.id))  # type: ignore[call-overload]
    session.delete(sub)
    session.flush()


def _plain(value: object) -> object:
    """A column value as JSON has it: times in ISO 8601 (UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def subscriber_data(conn: Connection, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber, as JSON-ready data (GDPR access); None if gone.

    Their row, their events, their deliveries (which edition, its status, when it
    was sent) and the suppression entry of their address. Every query is keyed by
    their id or their address hash: nothing about anyone else.
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    row = conn.execute(select_(subs).where(subs.c.id == subscriber_id)).first()
    if row is None:
        return None
    events = SubscriberEvent.__table__  # type: ignore[attr-defined]
    deliveries, editions = Delivery.__table__, Edition.__table__  # type: ignore[attr-defined]
    event_rows = conn.execute(
        select_(events.c.kind, events.c.source, events.c.ref, events.c.detail, events.c.created_at)
        .where(events.c.subscriber_id == subscriber_id)
        .order_by(events.c.id)
    )
    delivery_rows = conn.execute(
        select_(editions.c.digest, editions.c.slot, deliveries.c.edition_id, deliveries.c.status, deliveries.c.sent_at)
        .join(editions, editions.c.id == deliveries.c.edition_id)
        .where(deliveries.c.subscriber_id == subscriber_id)
        .order_by(deliveries.c.id)
    )
    suppressed = suppression_of(conn, row.email_key)
    return {
        "subscriber": {k: _plain(v) for k, v in row._mapping.items() if k != "email_key"},
        "events": [{k: _plain(v) for k, v in r._mapping.items()} for r in event_rows],
        "deliveries": [{k: _plain(v) for k, v in r._mapping.items()} for r in delivery_rows],
        "suppression": None
        if suppressed is None
        else {"email": suppressed.email, "reason": suppressed.reason, "since": _plain(suppressed.created_at)},
    }


def erase_subscriber(conn: Connection, subscriber_id: int, now: datetime) -> bool:
    """Erase a subscriber (GDPR): their row, deliveries, events and slot claims; False if gone.

    Only the suppression list's hash of the address stays (added if it was not
    there, its stored address blanked), so the address is never mailed again
    and a re-import or a new sign-up needs a fresh confirmation.
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    key = conn.execute(select_(subs.c.email_key).where(subs.c.id == subscriber_id)).scalar_one_or_none()
    if key is None:
        return False
    suppress(conn, key, SuppressionReason.UNSUBSCRIBED, "erasure", now)
    conn.execute(update(SUPPRESSIONS).where(SUPPRESSIONS.c.email_hash == email_hash(key)).values(email=""))
    # Explicit deletes, not ON DELETE CASCADE: SQLite enforces foreign keys only when told to.
    for table in (Delivery.__table__, SubscriberEvent.__table__, SlotClaim.__table__):  # type: ignore[attr-defined]
        conn.execute(delete_(table).where(table.c.subscriber_id == subscriber_id))
    conn.execute(delete_(subs).where(subs.c.id == subscriber_id))
    log.info("subscriber %s erased at their request", subscriber_id)
    return True
