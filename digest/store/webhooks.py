"""Webhooks out, the store side: endpoints, and the queue of events each is owed.

The queue is a transactional outbox: :func:`enqueue` runs on the connection of the
change it reports (a delivery recorded, a subscriber unsubscribed, an edition
finished), so an event exists exactly when its change was committed. A sender
claims due events with a lease (like deliveries: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), POSTs them and deletes each one its endpoint accepted; a failure
pushes the endpoint's pending events back (exponential back-off, kept in
``next_attempt_at``), and too many failures in a row disable the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from digest.store.models import (
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberEventKind,
    Webhook,
    WebhookEvent,
    WebhookEventType,
)

W = Webhook.__table__  # type: ignore[attr-defined]
WE = WebhookEvent.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]

# Deliveries per ``delivery.*`` event: one POST reports up to this many.
DELIVERIES_PER_EVENT = 100

# The subscriber events that are also webhook events.
SUBSCRIBER_EVENT_TYPES: dict[str, str] = {
    SubscriberEventKind.UNSUBSCRIBED: WebhookEventType.SUBSCRIBER_UNSUBSCRIBED,
    SubscriberEventKind.COMPLAINT: WebhookEventType.SUBSCRIBER_COMPLAINED,
    SubscriberEventKind.BOUNCE_PERMANENT: WebhookEventType.SUBSCRIBER_BOUNCED,
    SubscriberEventKind.SUNSET: WebhookEventType.SUBSCRIBER_BOUNCED,
}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


# ---------------------------------------------------------------- writing events


def listeners(conn: Connection, event_types: Iterable[str]) -> dict[str, list[int]]:
    """The enabled endpoints that asked for each of ``event_types`` (types nobody wants are left out)."""
    wanted = set(event_types)
    found: dict[str, list[int]] = {}
    for hook_id, events in conn.execute(select(W.c.id, W.c.events).where(W.c.disabled_at.is_(None)).order_by(W.c.id)):
        for t in set(events or ()) & wanted:
            found.setdefault(t, []).append(hook_id)
    return found


def enqueue(
    conn: Connection, hook_ids: Sequence[int], event_type: str, datas: Sequence[Mapping[str, Any]], now: datetime
) -> int:
    """Queue one event per (endpoint, data), in ``conn``'s transaction; return how many rows."""
    rows = [
        {
            "webhook_id": hook_id,
            "event_type": event_type,
            "payload": json.dumps(
                {"type": event_type, "timestamp": _iso(now), "data": data}, separators=(",", ":"), ensure_ascii=False
            ),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for data in datas
        for hook_id in hook_ids
    ]
    if rows:
        conn.execute(insert(WE), rows)
    return len(rows)


def subscriber_event(
    conn: Connection,
    kind: str,
    subscriber_id: int,
    email: str,
    now: datetime,
    *,
    source: str = "",
    ref: str | None = None,
    detail: str = "",
    **extra: Any,
) -> None:
    """Queue the webhook event of a subscriber event, if ``kind`` is one and someone listens."""
    event_type = SUBSCRIBER_EVENT_TYPES.get(kind)
    if event_type is None:
        return
    hooks = listeners(conn, [event_type]).get(event_type)
    if not hooks:
        return
    data = {
        "subscriber": {"id": subscriber_id, "email": email},
        "kind": str(kind),
        "source": source,
        "ref": ref,
        "detail": detail,
        **extra,
    }
    enqueue(conn, hooks, event_type, [data], now)


def delivery_events(conn: Connection, results: Sequence[Mapping[str, object]], now: datetime) -> None:
    """Queue ``delivery.sent`` / ``delivery.failed`` for a recorded batch: one event per 100 deliveries.

    ``results`` are the ledger's result rows (``id`` and the columns set). Only final
    outcomes are events: a temporary failure that will be retried is not. The event
    holds the delivery ids only; the rows are read when it is POSTed
    (:func:`expand`), so recording a batch stays one small insert more.
    """
    by_type: dict[str, list[int]] = {}
    for r in results:
        if r.get("status") == DeliveryStatus.SENT:
            by_type.setdefault(WebhookEventType.DELIVERY_SENT, []).append(int(r["id"]))  # type: ignore[call-overload]
        elif r.get("status") == DeliveryStatus.FAILED_PERMANENT:
            by_type.setdefault(WebhookEventType.DELIVERY_FAILED, []).append(int(r["id"]))  # type: ignore[call-overload]
    if not by_type:
        return
    hooks = listeners(conn, by_type)
    for event_type, ids in by_type.items():
        if event_type in hooks:
            chunks = [
                {"delivery_ids": ids[i : i + DELIVERIES_PER_EVENT]} for i in range(0, len(ids), DELIVERIES_PER_EVENT)
            ]
            enqueue(conn, hooks[event_type], event_type, chunks, now)


def expand(conn: Connection, payload: str) -> str:
    """The body to POST for a stored event: a delivery event's ids become the deliveries' details.

    A delivery deleted since (its subscriber erased) is left out: its address is not
    sent anywhere after the erasure.
    """
    body = json.loads(payload)
    ids = body.get("data", {}).get("delivery_ids")
    if ids is None:
        return payload
    rows = conn.execute(
        select(
            D.c.id, D.c.edition_id, D.c.subscriber_id, S.c.email, D.c.status, D.c.attempts, D.c.message_id,
            D.c.last_response, D.c.sent_at,
        )
        .join(S, S.c.id == D.c.subscriber_id)
        .where(D.c.id.in_(ids))
        .order_by(D.c.id)
    )  # fmt: skip
    body["data"] = {
        "deliveries": [
            {
                "id": r.id,
                "edition_id": r.edition_id,
                "subscriber_id": r.subscriber_id,
                "email": r.email,
                "status": r.status,
                "attempts": r.attempts,
                "message_id": r.message_id,
                "response": r.last_response,
                "sent_at": _iso(r.sent_at),
            }
            for r in rows
        ]
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Health:
    """One line of ``digest webhooks list``."""

    id: int
    url: str
    events: list[str]
    created_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    disabled_at: datetime | None
    pending: int
    oldest_pending_at: datetime | None


def add_webhook(conn: Connection, url: str, events: Sequence[str], secret: str, now: datetime) -> int:
    """Store an endpoint; return its id."""
    return int(
        conn.execute(
            insert(W).values(url=url, events=list(events), secret=secret, created_at=now).returning(W.c.id)
        ).scalar_one()
    )


def remove_webhook(conn: Connection, hook_id: int) -> bool:
    """Delete an endpoint and its queued events; False when there was none."""
    conn.execute(delete(WE).where(WE.c.webhook_id == hook_id))  # SQLite enforces no ON DELETE without a pragma
    return (conn.execute(delete(W).where(W.c.id == hook_id)).rowcount or 0) > 0


def enable_webhook(conn: Connection, hook_id: int, now: datetime) -> bool:
    """Turn a disabled endpoint back on, its queued events due now; False when there is no such endpoint."""
    found = conn.execute(
        update(W).where(W.c.id == hook_id).values(disabled_at=None, consecutive_failures=0).returning(W.c.id)
    ).scalar_one_or_none()
    if found is None:
        return False
    conn.execute(update(WE).where(WE.c.webhook_id == hook_id).values(next_attempt_at=now))
    return True


def health(conn: Connection) -> list[Health]:
    """Every endpoint with its health and queue, by id."""
    queued = {
        r.webhook_id: (int(r.n), r.oldest)
        for r in conn.execute(
            select(WE.c.webhook_id, func.count().label("n"), func.min(WE.c.created_at).label("oldest")).group_by(
                WE.c.webhook_id
            )
        )
    }
    out = []
    for h in conn.execute(select(W).order_by(W.c.id)):
        n, oldest = queued.get(h.id, (0, None))
        out.append(
            Health(
                h.id, h.url, list(h.events or []), h.created_at, h.last_success_at, h.last_failure_at,
                h.last_error, h.consecutive_failures, h.disabled_at, n, oldest,
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Claimed:
    """A claimed event, with what POSTing it needs."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event_type: str
    payload: str
    attempts: int


def claim_due(engine: Engine, worker: str, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due events of enabled endpoints for ``worker``, oldest first."""
    free = or_(WE.c.claimed_by.is_(None), WE.c.lease_until < now)
    enabled = select(W.c.id).where(W.c.disabled_at.is_(None))
    inner = (
        select(WE.c.id)
        .where(WE.c.webhook_id.in_(enabled), WE.c.next_attempt_at <= now, free)
        .order_by(WE.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        # Most passes find nothing: a read first, so an idle sender takes no write lock (SQLite has only one).
        if conn.execute(inner.with_only_columns(WE.c.id).limit(1)).first() is None:
            return []
    if engine.dialect.name == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    stmt = (
        update(WE)
        .where(WE.c.id.in_(inner.scalar_subquery()))
        .values(claimed_by=worker, lease_until=now + lease)
        .returning(WE.c.id)
    )
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(stmt)]
        if not ids:
            return []
        rows = conn.execute(
            select(WE.c.id, WE.c.webhook_id, W.c.url, W.c.secret, WE.c.event_type, WE.c.payload, WE.c.attempts)
            .join(W, W.c.id == WE.c.webhook_id)
            .where(WE.c.id.in_(ids))
            .order_by(WE.c.id)
        ).all()
        return [
            Claimed(r.id, r.webhook_id, r.url, r.secret, r.event_type, expand(conn, r.payload), r.attempts)
            for r in rows
        ]


def delivered(engine: Engine, event: Claimed, now: datetime) -> None:
    """The endpoint accepted ``event``: drop it from the queue and note the endpoint healthy."""
    with engine.begin() as conn:
        conn.execute(delete(WE).where(WE.c.id == event.id))
        conn.execute(update(W).where(W.c.id == event.webhook_id).values(last_success_at=now, consecutive_failures=0))


def failed(
    engine: Engine,
    event: Claimed,
    error: str,
    now: datetime,
    retry_at: datetime,
    *,
    disable_after: int,
    max_attempts: int,
) -> tuple[bool, bool]:
    """Note a failed POST of ``event``; return (endpoint now disabled, event dropped).

    The event waits until ``retry_at``, and so do the endpoint's other events due
    before then (they would fail the same way, and keep their order). The event is
    dropped after ``max_attempts``; the endpoint is disabled after ``disable_after``
    failures in a row.
    """
    error = error[:1000]
    with engine.begin() as conn:
        dropped = event.attempts + 1 >= max_attempts
        if dropped:
            conn.execute(delete(WE).where(WE.c.id == event.id))
        else:
            conn.execute(
                update(WE)
                .where(WE.c.id == event.id)
                .values(
                    attempts=WE.c.attempts + 1,
                    last_error=error,
                    next_attempt_at=retry_at,
                    claimed_by=None,
                    lease_until=None,
                )
            )
        conn.execute(
            update(WE)
            .where(WE.c.webhook_id == event.webhook_id, WE.c.next_attempt_at < retry_at)
            .values(next_attempt_at=retry_at)
        )
        count = conn.execute(
            update(W)
            .where(W.c.id == event.webhook_id)
            .values(
                consecutive_failures=W.c.consecutive_failures + 1,
                last_failure_at=now,
                last_error=error,
            )
            .returning(W.c.consecutive_failures)
        ).scalar_one_or_none()
        disabled = False
        if count is not None and count >= disable_after:
            disabled = (
                conn.execute(
                    update(W).where(W.c.id == event.webhook_id, W.c.disabled_at.is_(None)).values(disabled_at=now)
                ).rowcount
                or 0
            ) > 0
    return disabled, dropped


def release(engine: Engine, ids: Sequence[int]) -> None:
    """Give back claimed events not POSTed (the endpoint failed first in this pass), untouched."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(WE).where(WE.c.id == bindparam("_id")).values(claimed_by=None, lease_until=None),
            [{"_id": i} for i in ids],
        )


def queue_stats(conn: Connection, now: datetime) -> tuple[int, float]:
    """Events queued for enabled endpoints and the age in seconds of the oldest (0 when none)."""
    n, oldest = conn.execute(
        select(func.count(), func.min(WE.c.created_at)).where(
            WE.c.webhook_id.in_(select(W.c.id).where(W.c.disabled_at.is_(None)))
        )
    ).one()
    return int(n), (now - oldest).total_seconds() if oldest is not None else 0.0
