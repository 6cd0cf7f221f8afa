"""The warm-up schedule of a new sending domain (``[delivery.warmup]``): a daily cap on queueing.

Mailbox providers judge a new domain by its first weeks: a few hundred messages a
day that readers want, then more. Day ``d`` (1 on ``start_date``, in the schedule's
timezone) allows

    cap(d) = round(start * (full / start) ** ((d - 1) / (days - 1)))

messages, so the cap grows by the same factor every day, from ``start`` on day 1 to
``full`` on day ``days`` (``full`` 0: the active subscribers); after that there is no
cap. Every delivery queued counts, digest copies and alerts alike, whatever edition
they belong to. Over the cap, the longest-subscribed are queued first; the others
are not queued at all, so they wait for the next edition on a later day.

Today's count is a row of its own (:mod:`digest.store.warmup`), written in the
transaction that queues, so a restart or a second process reads the same number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from digest.core.logs import event
from digest.core.settings import WarmupSettings
from digest.outbox.ledger import queue_deliveries
from digest.store.models import Delivery, Subscriber, SubscriberStatus
from digest.store.warmup import add_queued, queued_on, take_day

log = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]


def daily_cap(start: int, full: int, days: int, day: int) -> int:
    """The cap of schedule day ``day`` (1-based): ``start`` on day 1, ``full`` on day ``days``, geometric between.

    A ``full`` below ``start`` (a small list) keeps ``start``.
    """
    full = max(full, start)
    if days <= 1:
        return start
    day = min(max(day, 1), days)
    return int(start * (full / start) ** ((day - 1) / (days - 1)) + 0.5)


def schedule_day(cfg: WarmupSettings, now: datetime) -> tuple[int, str] | None:
    """``(day number, ISO date)`` of the warm-up day at ``now``; None when off or the schedule is over.

    A date before ``start_date`` counts as day 1: the smallest cap, never none.
    """
    if not cfg.enabled or cfg.start_date is None:
        return None
    local = now.astimezone(ZoneInfo(cfg.timezone)).date()
    day = max((local - cfg.start_date).days + 1, 1)
    return (day, local.isoformat()) if day <= cfg.days else None


@dataclass(frozen=True)
class WarmupUse:
    """Where today stands in the warm-up schedule, as one queueing (or a status read) left it."""

    day: int
    days: int
    date: str  # the warm-up day, ISO, in the schedule's timezone
    cap: int
    used: int  # deliveries queued today, all editions and alerts
    waiting: int = 0  # subscribers this queueing left for a later day

    @property
    def left(self) -> int:
        return max(self.cap - self.used, 0)


def active_count(conn: Connection) -> int:
    """The active subscribers (the cap of the last day when ``full`` is 0)."""
    return int(conn.execute(select(func.count()).where(S.c.status == SubscriberStatus.ACTIVE)).scalar_one())


def warmup_today(conn: Connection, cfg: WarmupSettings, now: datetime) -> WarmupUse | None:
    """Today's day, cap and use, read without locking (``digest status``, ``send --dry-run``); None: no cap."""
    today = schedule_day(cfg, now)
    if today is None:
        return None
    day, date = today
    cap = daily_cap(cfg.start, cfg.full or active_count(conn), cfg.days, day)
    return WarmupUse(day, cfg.days, date, cap, queued_on(conn, date))


@dataclass(frozen=True)
class Queued:
    """What :func:`queue_capped` queued, and the warm-up day it counted against (None: no cap)."""

    queued: int
    warmup: WarmupUse | None = None


def queue_capped(
    session: Session,
    cfg: WarmupSettings,
    edition_id: int,
    now: datetime,
    *,
    only: ColumnElement[bool] | None = None,
) -> Queued:
    """:func:`queue_deliveries` within today's warm-up allowance; without a schedule, exactly that.

    Today's row is taken first (locked until the caller's transaction commits), so two
    processes queueing different editions at once still stay under the cap together.
    The subscribers left out are counted (``waiting``) and logged as ``warmup.capped``
    (at DEBUG when the day's cap was spent before: nothing new to say).
    """
    today = schedule_day(cfg, now)
    if today is None:
        return Queued(queue_deliveries(session, edition_id, now, only=only))
    day, date = today
    conn = session.connection()
    used = take_day(conn, date, now)
    cap = daily_cap(cfg.start, cfg.full or active_count(conn), cfg.days, day)
    room = max(cap - used, 0)
    n = queue_deliveries(session, edition_id, now, only=only, limit=room)
    add_queued(conn, date, n, now)
    # Fewer queued than allowed: nobody was left out, no need to count.
    waiting = _unqueued(conn, edition_id, only) if n == room else 0
    use = WarmupUse(day, cfg.days, date, cap, used + n, waiting)
    if waiting:
        # The cap reached by this queueing is news; the alerts job finding it spent every minute is not.
        event(
            log, "warmup.capped", logging.INFO if n else logging.DEBUG, edition=edition_id, day=day, days=cfg.days,
            cap=cap, used=use.used, queued=n, waiting=waiting,
        )  # fmt: skip
    return Queued(n, use)


def _unqueued(conn: Connection, edition_id: int, only: ColumnElement[bool] | None) -> int:
    """Active subscribers (matching ``only``) still without a delivery of the edition."""
    has = select(D.c.id).where(D.c.edition_id == edition_id, D.c.subscriber_id == S.c.id).exists()
    stmt = select(func.count()).select_from(S).where(S.c.status == SubscriberStatus.ACTIVE, ~has)
    if only is not None:
        stmt = stmt.where(only)
    return int(conn.execute(stmt).scalar_one())
