"""The outbox: Delivery rows claimed with a lease, recorded, released.

States: ``queued -> claimed (worker id + lease expiry) -> sent | failed_temporary
(next attempt time) | failed_permanent`` (and ``skipped``). Every step is one
set-based statement:

- claim: ``UPDATE ... WHERE id IN (SELECT ... ORDER BY id LIMIT n FOR UPDATE SKIP
  LOCKED) RETURNING ...`` (SKIP LOCKED on PostgreSQL, where many workers race;
  SQLite serialises writers, so the plain statement is already exclusive);
- record: one executemany UPDATE per batch;
- release: claimed rows go back to ``queued`` with their attempt count unchanged.

What makes this safe against a ``kill -9`` (the journal of accepted messages, the
recovery of a dead sender's claims) is in :mod:`digest.outbox.journal`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Text, and_, bindparam, cast, func, insert, literal, or_, select, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from digest.core.settings import Settings
from digest.edition.select import alert_marks
from digest.store.alerts import alerted_stories
from digest.store.bounces import count_permanent_bounce, count_soft_bounce, reset_soft_bounces
from digest.store.db import session_scope
from digest.store.models import (
    Delivery,
    DeliveryStatus,
    DigestPause,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
    WebhookEventType,
)
from digest.store.suppressions import email_hash, reasons_of_hashes
from digest.store.webhooks import delivery_events, listeners
from digest.store.webhooks import enqueue as enqueue_webhook_events

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]
P = DigestPause.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- claiming


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what sending it needs to know about the subscriber."""

    delivery_id: int
    edition_id: int
    subscriber_id: int
    attempts: int
    created_at: datetime
    email: str
    email_key: str
    name: str
    status: str
    # With alert marks (digest.edition.select.alert_marks) of the edition's stories the
    # subscriber already got as alerts: the sender passes topics on, and the variant
    # key of the edition leaves those stories out (or marks them updated).
    topics: list[str]
    # On the suppression list: never sent, whatever the subscriber's status says.
    suppressed: bool = False
    # Breaking stories outside ``topics`` too (False: the subscriber opted out).
    breaking: bool = True
    # Their language (BCP 47); None: the digest's.
    locale: str | None = None


def _due(now: datetime) -> Any:
    return and_(
        # Written out as literals, the very expression of ix_delivery_pending's WHERE:
        # SQLite uses a partial index only when it can prove the query implies that
        # WHERE, which it cannot with bound parameters (it scanned the edition's unique
        # index instead: every delivery of the edition for each claim).
        D.c.status.in_(
            bindparam("pending", list(DeliveryStatus.PENDING), expanding=True, literal_execute=True, unique=True)
        ),
        or_(
            D.c.status == DeliveryStatus.QUEUED,
            and_(D.c.status == DeliveryStatus.FAILED_TEMPORARY, D.c.next_attempt_at <= now),
            and_(D.c.status == DeliveryStatus.CLAIMED, D.c.lease_until < now),
        ),
    )


def claim_batch(
    engine: Engine, worker: str, now: datetime, lease: timedelta, limit: int, edition_ids: Sequence[int]
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries of ``edition_ids`` for ``worker``, oldest first.

    Each claimed row says whether its address is on the suppression list (one
    query for the batch), so the sender skips it even when it was queued before
    the address was suppressed. Editions of a paused digest are not claimed: their
    deliveries wait, queued, until ``digest resume``.
    """
    if not edition_ids or limit <= 0:
        return []
    sendable = (
        select(E.c.id).where(E.c.id.in_(list(edition_ids)), E.c.digest.not_in(select(P.c.digest))).order_by(E.c.id)
    )
    with engine.begin() as conn:
        rows: list[Any] = []
        # One edition at a time, oldest first: with ``edition_id = X`` the pending index
        # (edition_id, id) yields the oldest deliveries in order and the LIMIT stops the
        # scan. With ``edition_id IN (...)`` SQLite read and sorted every pending
        # delivery of the edition for each batch, a million rows for each of a
        # thousand batches.
        for edition_id in conn.execute(sendable).scalars():
            if len(rows) >= limit:
                break
            inner = select(D.c.id).where(D.c.edition_id == edition_id, _due(now)).order_by(D.c.id)
            inner = inner.limit(limit - len(rows))
            if engine.dialect.name == "postgresql":
                inner = inner.with_for_update(skip_locked=True)
            stmt = (
                update(D)
                .where(D.c.id.in_(inner.scalar_subquery()))
                .values(status=DeliveryStatus.CLAIMED, claimed_by=worker, lease_until=now + lease)
                .returning(D.c.id, D.c.edition_id, D.c.subscriber_id, D.c.attempts, D.c.created_at)
            )
            rows += conn.execute(stmt).all()
        if not rows:
            return []
        # Topics as their JSON text: a batch of a thousand readers holds a handful of
        # distinct lists, each decoded once below, not once a row.
        subs = {
            r.id: r
            for r in conn.execute(
                select(
                    S.c.id, S.c.email, S.c.email_key, S.c.name, S.c.status, cast(S.c.topics, Text).label("topics"),
                    S.c.breaking, S.c.locale,
                ).where(S.c.id.in_({r.subscriber_id for r in rows}))
            )
        }  # fmt: skip
        hashes = {s.email_key: email_hash(s.email_key) for s in subs.values() if s.email_key}
        held = set(reasons_of_hashes(conn, hashes.values()))
        alerted = alerted_stories(conn, {r.edition_id for r in rows}, set(subs))
    decoded: dict[str | None, list[str]] = {}
    out = []
    for r in sorted(rows, key=lambda r: r.id):
        s = subs.get(r.subscriber_id)
        if s is None:
            out.append(
                Claimed(
                    r.id, r.edition_id, r.subscriber_id, r.attempts, r.created_at, "", "", "",
                    SubscriberStatus.UNSUBSCRIBED, [],
                )
            )  # fmt: skip
            continue
        topics = decoded.get(s.topics)
        if topics is None:
            topics = decoded[s.topics] = list(json.loads(s.topics) or []) if s.topics else []
        marks = alerted.get((r.edition_id, r.subscriber_id))
        out.append(
            Claimed(
                delivery_id=r.id,
                edition_id=r.edition_id,
                subscriber_id=r.subscriber_id,
                attempts=r.attempts,
                created_at=r.created_at,
                email=s.email,
                email_key=s.email_key,
                name=s.name,
                status=s.status,
                # Shared by the rows with the same list: nothing downstream changes it.
                topics=[*topics, *alert_marks(*marks)] if marks else topics,
                suppressed=hashes.get(s.email_key) in held,
                breaking=bool(s.breaking),
                locale=s.locale,
            )
        )
    return out


def extend_leases(engine: Engine, worker: str, now: datetime, lease: timedelta) -> None:
    """Push the lease of everything ``worker`` holds: a long batch (slow rate limits) keeps its claims."""
    with engine.begin() as conn:
        conn.execute(
            update(D)
            .where(D.c.status == DeliveryStatus.CLAIMED, D.c.claimed_by == worker)
            .values(lease_until=now + lease)
        )


def release(engine: Engine, ids: Iterable[int]) -> None:
    """Put claimed deliveries back in the queue, attempts unchanged."""
    rows = [{"_id": i} for i in ids]
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(
            update(D)
            .where(D.c.id == bindparam("_id"), D.c.status == DeliveryStatus.CLAIMED)
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, lease_until=None),
            rows,
        )


def release_worker(engine: Engine, worker: str) -> int:
    """Put every delivery ``worker`` holds back in the queue (attempts unchanged); return how many."""
    with engine.begin() as conn:
        result = conn.execute(
            update(D)
            .where(D.c.status == DeliveryStatus.CLAIMED, D.c.claimed_by == worker)
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, lease_until=None)
        )
    return max(result.rowcount or 0, 0)


@dataclass(frozen=True)
class Bounce:
    """A permanent failure of a subscriber's address, met while sending ``message_id``."""

    subscriber_id: int
    message_id: str
    response: str


def record(
    engine: Engine,
    settings: Settings,
    results: Sequence[dict[str, object]],
    bounced: Sequence[Bounce],
    now: datetime,
    *,
    deferred: Sequence[Bounce] = (),
    accepted: Sequence[int] = (),
) -> None:
    """Write a batch of results in one transaction (executemany UPDATE by primary key).

    Each result dict has ``id`` and the columns to set. Each of ``bounced`` is counted
    by the one bounce rule (:func:`digest.store.subscribers.count_permanent_bounce`,
    source ``smtp``), as a bounce report read later would be. ``deferred`` (4xx for
    that recipient) and ``accepted`` (subscriber ids whose copy the server took) keep
    the sunset rule's streak (:func:`digest.store.subscribers.count_soft_bounce`).
    The ``delivery.sent``/``delivery.failed`` webhook events of the batch are queued
    in the same transaction (one per 100 deliveries).
    """
    if not results and not bounced and not deferred:
        return
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for r in results:
        row = {("_id" if k == "id" else k): v for k, v in r.items()}
        groups.setdefault(tuple(sorted(row)), []).append(row)
    with engine.begin() as conn:
        for keys, rows in groups.items():
            # A column with one value in every row (status, the cleared claim, mostly the
            # attempt count) is written once in the statement, not bound and converted a row.
            same = {k: rows[0][k] for k in keys if k != "_id" and all(r[k] == rows[0][k] for r in rows)}
            values: dict[str, Any] = {k: same[k] if k in same else bindparam(k) for k in keys if k != "_id"}
            params = [{k: v for k, v in r.items() if k not in same} for r in rows] if same else rows
            conn.execute(update(D).where(D.c.id == bindparam("_id")).values(values), params)
        for bounce in bounced:
            count_permanent_bounce(
                conn,
                bounce.subscriber_id,
                now,
                settings.bounce_limit,
                source="smtp",
                ref=bounce.message_id,
                detail=bounce.response,
            )
        reset_soft_bounces(conn, accepted)
        for soft in deferred:
            count_soft_bounce(
                conn, soft.subscriber_id, now, settings.sunset_soft_bounces, ref=soft.message_id, detail=soft.response
            )
        delivery_events(conn, results, now)


def editions_with_work(engine: Engine, only: Sequence[int] | None = None) -> list[int]:
    """Editions that may still have deliveries to send (ready or sending), oldest first."""
    stmt = select(E.c.id).where(E.c.status.in_((EditionStatus.READY, EditionStatus.SENDING))).order_by(E.c.id)
    if only is not None:
        stmt = stmt.where(E.c.id.in_(list(only)))
    with engine.connect() as conn:
        return [r.id for r in conn.execute(stmt)]


def pending_count(engine: Engine, edition_ids: Sequence[int]) -> int:
    """How many deliveries of ``edition_ids`` are still to send (queued, claimed or to retry)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(D)
                .where(D.c.edition_id.in_(list(edition_ids)), D.c.status.in_(DeliveryStatus.PENDING))
            ).scalar_one()
        )


# ---------------------------------------------------------------- listing and re-queueing

FAILED = (DeliveryStatus.FAILED_TEMPORARY, DeliveryStatus.FAILED_PERMANENT)
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    **{s: (s,) for s in DeliveryStatus.ALL},
    "failed": FAILED,
    "pending": DeliveryStatus.PENDING,
}


@dataclass(frozen=True)
class DeliveryRow:
    """One line of ``digest deliveries``."""

    id: int
    edition_id: int
    digest: str
    slot: str
    email: str
    status: str
    attempts: int
    last_response: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


def list_deliveries(
    engine: Engine, edition_id: int | None = None, statuses: Sequence[str] | None = None, limit: int = 100
) -> tuple[list[DeliveryRow], dict[str, int]]:
    """Up to ``limit`` deliveries (newest editions first) and the count of each status overall."""
    where = []
    if edition_id is not None:
        where.append(D.c.edition_id == edition_id)
    if statuses:
        where.append(D.c.status.in_(list(statuses)))
    stmt = (
        select(
            D.c.id, D.c.edition_id, E.c.digest, E.c.slot, S.c.email, D.c.status, D.c.attempts,
            D.c.last_response, D.c.next_attempt_at, D.c.sent_at,
        )
        .join(E, E.c.id == D.c.edition_id)
        .join(S, S.c.id == D.c.subscriber_id)
        .where(*where)
        .order_by(D.c.edition_id.desc(), D.c.id)
        .limit(limit)
    )  # fmt: skip
    counts_stmt = select(D.c.status, func.count()).where(*where).group_by(D.c.status)
    with engine.connect() as conn:
        found = [DeliveryRow(*r) for r in conn.execute(stmt)]  # type: ignore[call-arg]
        counts = {status: int(n) for status, n in conn.execute(counts_stmt)}
    return found, counts


def next_retry(engine: Engine, edition_id: int) -> tuple[int, datetime | None]:
    """How many deliveries of an edition wait for a retry, and when the first of them is due."""
    stmt = select(func.count(), func.min(D.c.next_attempt_at)).where(
        D.c.edition_id == edition_id, D.c.status == DeliveryStatus.FAILED_TEMPORARY
    )
    with engine.connect() as conn:
        waiting, first = conn.execute(stmt).one()
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)  # SQLite returns naive UTC
    return int(waiting), first


def requeue_failed(engine: Engine, edition_id: int) -> int:
    """Put the failed deliveries of an edition back in the queue, due now; return how many.

    Sent deliveries are never touched: a resend reaches only those who did not get it.
    The edition goes back to ``sending`` so the service's drain picks it up too.
    """
    with engine.begin() as conn:
        result = conn.execute(
            update(D)
            .where(D.c.edition_id == edition_id, D.c.status.in_(FAILED))
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, claimed_by=None, lease_until=None)
        )
        n = max(result.rowcount or 0, 0)
        if n:
            conn.execute(
                update(E)
                .where(E.c.id == edition_id, E.c.status.in_((EditionStatus.SENT, EditionStatus.READY)))
                .values(status=EditionStatus.SENDING, sent_at=None)
            )
    return n


# The advisory lock (first key) that serialises queueing one edition on PostgreSQL.
_QUEUE_LOCK = 0x71756575


def queue_deliveries(
    session: Session,
    edition_id: int,
    now: datetime,
    *,
    only: ColumnElement[bool] | None = None,
    limit: int | None = None,
) -> int:
    """Create a queued Delivery for every active subscriber, in one statement; return how many.

    Existing deliveries are left alone, so this is safe to run again and concurrently:
    SQLite serialises writers and skips them with ON CONFLICT DO NOTHING on the unique
    (edition, subscriber) pair; PostgreSQL queues one edition in one transaction at a
    time (an advisory lock) and leaves them out in the SELECT, so each row is a plain
    insert rather than ON CONFLICT's speculative one. ``only`` restricts the
    subscribers further (a condition on Subscriber rows), e.g. to those whose local
    send time the edition is for. ``limit`` (the warm-up's allowance) queues at most that
    many, the longest-subscribed first (created_at, then id).
    """
    if limit is not None and limit <= 0:
        return 0
    columns = ["edition_id", "subscriber_id", "status", "attempts", "created_at"]
    source = sa_select(
        literal(edition_id),
        S.c.id,
        literal(DeliveryStatus.QUEUED),
        literal(0),
        literal(now, type_=D.c.created_at.type),
    ).where(S.c.status == SubscriberStatus.ACTIVE)
    if only is not None:
        source = source.where(only)
    queued = sa_select(D.c.id).where(D.c.edition_id == edition_id, D.c.subscriber_id == S.c.id)
    if limit is not None:
        # Left out before the LIMIT, so the allowance goes to subscribers still without a copy.
        source = source.where(~queued.exists()).order_by(S.c.created_at, S.c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa_select(func.pg_advisory_xact_lock(_QUEUE_LOCK, edition_id)))
        # Taken after the lock, this statement's snapshot sees what an earlier queuer committed.
        # Counted in the server: the driver reports no row count for INSERT ... SELECT.
        if limit is None:
            source = source.where(~queued.exists())
        inserted = insert(D).from_select(columns, source).returning(D.c.id).cte("inserted")
        return int(session.execute(sa_select(func.count()).select_from(inserted)).scalar_one())
    stmt = (
        sqlite.insert(D)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    )
    return max(session.connection().execute(stmt).rowcount or 0, 0)


def delivery_counts(session: Session, edition_id: int) -> dict[str, int]:
    """How many deliveries of the edition are in each status."""
    rows = session.execute(select(D.c.status, func.count()).where(D.c.edition_id == edition_id).group_by(D.c.status))
    return {status: int(n) for status, n in rows}


def finish_edition(engine: Engine, edition_id: int, now: datetime) -> str:
    """Mark the edition sent once nothing is left to send; return its status."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None:
            return ""
        counts = delivery_counts(session, edition_id)
        pending = sum(counts.get(s, 0) for s in DeliveryStatus.PENDING)
        if edition.status in (EditionStatus.READY, EditionStatus.SENDING):
            edition.status = EditionStatus.SENDING if pending else EditionStatus.SENT
            if not pending:
                edition.sent_at = now
                _edition_sent(session.connection(), edition, counts, now)
            session.add(edition)
        return edition.status


def _edition_sent(conn: Connection, edition: Edition, counts: dict[str, int], now: datetime) -> None:
    """Queue the ``edition.sent`` webhook event, in the transaction that marks the edition sent."""
    hooks = listeners(conn, [WebhookEventType.EDITION_SENT]).get(WebhookEventType.EDITION_SENT)
    if not hooks:
        return
    data = {
        "edition": {
            "id": edition.id,
            "digest": edition.digest,
            "slot": edition.slot,
            "article_count": edition.article_count,
            "built_at": edition.built_at.isoformat().replace("+00:00", "Z"),
            "sent_at": now.isoformat().replace("+00:00", "Z"),
            "deliveries": counts,
        }
    }
    enqueue_webhook_events(conn, hooks, WebhookEventType.EDITION_SENT, [data], now)
