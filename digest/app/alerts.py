"""Breaking alerts: an article marked breaking with ``priority >= alert_priority`` goes out at once.

An alert is an edition of kind ``alert`` (one per article, :func:`digest.edition.build.build_alert`)
queued in the same outbox and sent by the same engine as the digests. Who gets it:
active subscribers with ``alerts`` on who

- are not in their quiet hours (``quiet_start``-``quiet_end``, their local time): the
  alert is held and queued by a later run once their quiet hours end;
- got fewer than ``alerts_per_day`` alerts since their local midnight: the alert is
  held likewise, into their next day;
- did not get the story already (an alert, or a digest sent or queued to them).

A held alert is dropped once the article is older than ``alert_max_age``: the next
digest carries the story instead. The digest, in turn, leaves out a story a reader got
as an alert, or marks it "Updated since our alert" when it changed after the alert
(:func:`digest.store.alerts.alerted_stories`, read when the digest's copies are claimed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from digest.app.planner import local_days
from digest.compose.dkim import Signer
from digest.core.clock import Clock
from digest.core.logs import event
from digest.core.settings import Settings
from digest.edition.alerts import alert_candidates
from digest.edition.build import build_alert
from digest.edition.series import local_zone
from digest.outbox.drain import drain_outbox
from digest.outbox.ledger import editions_with_work, finish_edition
from digest.outbox.sender import SendReport
from digest.outbox.warmup import queue_capped
from digest.store.alerts import alerts_since, got_story
from digest.store.db import session_scope
from digest.store.models import Edition, EditionStatus, Subscriber, saved_id
from digest.transport.pool import TransportFactory
from digest.transport.smtp import Transport

log = logging.getLogger(__name__)


def in_quiet_hours(local: str) -> ColumnElement[bool]:
    """The condition on Subscriber rows: the local time ``local`` (``HH:MM``) is in their quiet hours.

    Quiet hours run from ``quiet_start`` (included) to ``quiet_end`` (excluded); a start
    after the end spans midnight (22:00-07:00). Both bounds must be set.
    """
    qs, qe = col(Subscriber.quiet_start), col(Subscriber.quiet_end)
    return and_(
        qs.is_not(None),
        qe.is_not(None),
        or_(and_(qs <= qe, qs <= local, qe > local), and_(qs > qe, or_(qs <= local, qe > local))),
    )


def _eligible(settings: Settings, zones: list[str], article_id: int, now: datetime) -> ColumnElement[bool]:
    """The subscribers the alert of ``article_id`` may be queued for at ``now``."""
    _, cfg = settings.digest(settings.alerts_digest)
    per_zone = []
    for zone in zones:
        local = now.astimezone(ZoneInfo(zone))
        midnight = datetime.combine(local.date(), time(), tzinfo=ZoneInfo(zone))
        per_zone.append(
            and_(
                local_zone(cfg) == zone,
                ~in_quiet_hours(local.strftime("%H:%M")),
                alerts_since(midnight) < settings.alerts_per_day,
            )
        )
    return and_(col(Subscriber.alerts).is_(True), ~got_story(article_id), or_(*per_zone))


@dataclass
class AlertRun:
    """What one alerts run did."""

    # (article id, title) of each article with an alert edition, built now or before
    articles: list[tuple[int, str]] = field(default_factory=list)
    built: int = 0
    queued: int = 0
    editions: list[int] = field(default_factory=list)
    send: SendReport | None = None


def queue_alerts(engine: Engine, settings: Settings, now: datetime) -> AlertRun:
    """Build the alert of every qualifying article and queue it for whoever may get it now.

    Safe to run as often as wanted (the service does every ``alerts_interval``): an
    alert edition exists once per article, a delivery once per (edition, subscriber).
    """
    run = AlertRun()
    if settings.alerts_per_day <= 0:
        return run
    name, cfg = settings.digest(settings.alerts_digest)
    with session_scope(engine) as session:
        candidates = alert_candidates(session, settings, now)
        zones = list(local_days(session, cfg, now))
    for article in candidates:
        edition, created = build_alert(engine, settings, name, article, now)
        edition_id = saved_id(edition)
        run.built += created
        run.articles.append((saved_id(article), article.title))
        # One article at a time: its queued copies count against alerts_per_day for the next.
        with session_scope(engine) as session:
            eligible = _eligible(settings, zones, saved_id(article), now)
            # Within the warm-up cap: those left out are held, as in quiet hours, until a later day.
            queued = queue_capped(session, settings.delivery.warmup, edition_id, now, only=eligible).queued
            if queued:
                # Queued again after it was done (a reader's quiet hours ended): sending again.
                session.execute(
                    update(Edition)
                    .where(col(Edition.id) == edition_id, col(Edition.status) == EditionStatus.SENT)
                    .values(status=EditionStatus.SENDING, sent_at=None)
                )
        finish_edition(engine, edition_id, now)
        run.queued += queued
        run.editions.append(edition_id)
        if created or queued:
            event(log, "alert.queued", digest=name, article=saved_id(article), edition=edition_id, queued=queued)
    return run


def send_alerts(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    transport: Transport | None = None,
    transport_factory: TransportFactory | None = None,
    signer: Signer | None = None,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AlertRun:
    """``digest alerts send``: queue the alerts due now and send them (and any still pending)."""
    run = queue_alerts(engine, settings, clock.now())
    with_work = editions_with_work(engine, only=run.editions) if run.editions else []
    if with_work:
        run.send = drain_outbox(
            engine, settings, clock, editions=with_work, transport=transport, transport_factory=transport_factory,
            signer=signer, processes=processes, progress=progress,
        )  # fmt: skip
    return run
