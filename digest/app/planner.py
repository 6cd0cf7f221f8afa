"""Planner: turns the schedule's decisions into editions, slot claims and queued deliveries.

The leader calls :func:`run_due` on every tick and when a digest's cron fires; every
process calls :func:`send_pending` to deliver what is queued. Both are idempotent and
read their state from the store, so a restart, a second process or a new leader
after a crash picks up exactly where the last one stopped:

- an edition is created once per (digest, slot) (unique constraint);
- a subscriber's local day is claimed once per digest (unique constraint on
  ``slot_claim``), and deliveries are queued only for the claims of the edition,
  in the same transaction;
- an edition stays ``ready`` until its deliveries are queued, so a leader that dies
  in between leaves it for the next one to finish.

Editions of a series only skip articles that earlier editions *of the same series*
carried: subscribers at 07:00 Berlin and 07:00 New York both get the day's news.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, and_, col, or_, select

from digest.app.send import (
    SendReport,
    Variants,
    find_edition,
    finish_edition,
    load_content,
    queue_deliveries,
    send_edition,
)
from digest.compose.render import make_environment
from digest.core.clock import Clock
from digest.core.errors import DeliveryError
from digest.core.logs import event
from digest.core.settings import DigestConfig, Settings
from digest.edition.schedule import Decision, Series, check_send_time, cron_trigger, decide, default_series, parse_slot
from digest.edition.select import select_articles, window
from digest.outbox.ledger import recover_journals
from digest.store.articles import recent_articles
from digest.store.db import session_scope
from digest.store.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionArticle,
    EditionStatus,
    SlotClaim,
    Subscriber,
    SubscriberStatus,
)
from digest.transport.pool import Signer
from digest.transport.smtp import Transport

log = logging.getLogger(__name__)


@dataclass
class SlotOutcome:
    """What :func:`run_due` did about one series' latest slot."""

    digest: str
    slot: str
    action: str  # queued, empty, skipped, done
    edition_id: int | None = None
    queued: int = 0
    reason: str = ""


# ---------------------------------------------------------------- series of subscribers


def _nonempty(column: object) -> ColumnElement[str]:
    return func.nullif(column, "")


def series_groups(session: Session, cfg: DigestConfig) -> dict[Series, set[str]]:
    """Each series that has active subscribers, with the timezones of its members.

    The default daily series is always there: it is the digest's own schedule.
    Subscribers with an unusable timezone or send time are left out, with a warning.
    """
    rows = session.exec(
        select(Subscriber.timezone, Subscriber.send_time, Subscriber.frequency, Subscriber.weekday)
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .distinct()
    ).all()
    groups: dict[Series, set[str]] = {default_series(cfg): set()}
    for tz, send_time, frequency, weekday in rows:
        zone = tz or cfg.timezone
        try:
            ZoneInfo(zone)
            if send_time:
                check_send_time(send_time)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            event(log, "subscribers.unschedulable", logging.WARNING, timezone=tz, send_time=send_time, error=str(exc))
            continue
        wd = None
        if frequency == "weekly":
            wd = 0 if weekday is None else weekday
            if not 0 <= wd <= 6:
                event(log, "subscribers.unschedulable", logging.WARNING, weekday=weekday, error="weekday not 0-6")
                continue
        series = Series(zone=zone if send_time else cfg.timezone, send_time=send_time or None, weekday=wd)
        groups.setdefault(series, set()).add(zone)
    return groups


def members(cfg: DigestConfig, series: Series, zone: str) -> ColumnElement[bool]:
    """The condition on Subscriber rows for the members of ``series`` living in ``zone``."""
    conds = [func.coalesce(_nonempty(Subscriber.timezone), cfg.timezone) == zone]
    send_time = _nonempty(Subscriber.send_time)
    conds.append(send_time.is_(None) if series.send_time is None else send_time == series.send_time)
    if series.weekday is None:
        conds.append(col(Subscriber.frequency) != "weekly")
    else:
        conds.append(col(Subscriber.frequency) == "weekly")
        conds.append(func.coalesce(Subscriber.weekday, 0) == series.weekday)
    return and_(*conds)


# ---------------------------------------------------------------- editions


def series_carried(session: Session, digest: str, series: Series, slot: str) -> tuple[set[int], set[str]]:
    """Article ids and urls that earlier editions of the same series already carried."""
    rows = session.exec(
        select(EditionArticle.article_id, Article.url)
        .join(Edition, col(Edition.id) == EditionArticle.edition_id)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(Edition.digest == digest, Edition.slot != slot, func.substr(Edition.slot, 11) == series.suffix)
    ).all()
    return {r[0] for r in rows}, {r[1] for r in rows if r[1]}


def edition_config(cfg: DigestConfig, series: Series | None) -> DigestConfig:
    """The digest's settings as one series' editions use them (zone of the date, lookback)."""
    update: dict[str, object] = {}
    if series is not None and series.send_time is not None:
        update["timezone"] = series.zone
    if series is not None and series.weekday is not None:
        update["lookback"] = cfg.weekly_lookback
    return cfg.model_copy(update=update) if update else cfg


def build_edition(
    engine: Engine, settings: Settings, name: str, series: Series, slot: str, now: datetime
) -> tuple[Edition, bool]:
    """The edition of ``slot``: found, or built from the articles as of ``now`` and stored."""
    cfg = edition_config(settings.digests[name], series)
    with session_scope(engine) as session:
        existing = find_edition(session, name, slot)
        if existing is not None:
            return existing, False
        carried, carried_urls = series_carried(session, name, series, slot)
        since, until = window(cfg, now)
        content = select_articles(
            recent_articles(session, since, until),
            cfg,
            now,
            carried=carried,
            carried_urls=carried_urls,
            base_url=settings.base_url,
        )
    try:
        with session_scope(engine) as session:
            empty = not content.ranked and not cfg.send_empty
            edition = Edition(
                digest=name,
                slot=slot,
                built_at=now,
                article_count=len(content.ranked),
                status=EditionStatus.EMPTY if empty else EditionStatus.READY,
            )
            session.add(edition)
            session.flush()
            assert edition.id is not None
            for pos, story in enumerate(content.ranked):
                session.add(
                    EditionArticle(
                        edition_id=edition.id, article_id=story.id, position=pos, section=content.section_of[story.id]
                    )
                )
        return edition, True
    except IntegrityError:
        with session_scope(engine) as session:
            existing = find_edition(session, name, slot)
            assert existing is not None
            return existing, False


def claim_and_queue(
    engine: Engine,
    cfg: DigestConfig,
    name: str,
    series: Series,
    zones: set[str],
    edition_id: int,
    fire: datetime,
    now: datetime,
) -> int:
    """Claim each member's local day for the edition and queue their deliveries, atomically.

    A member whose local day another edition of the digest already claimed is not
    queued: nobody gets two editions for the same day in their own timezone.
    """
    zones = set(zones) | ({series.zone} if series.send_time is not None else set())
    with session_scope(engine) as session:
        dialect = session.get_bind().dialect.name
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for zone in sorted(zones):
            local_day = fire.astimezone(ZoneInfo(zone)).date().isoformat()
            source = select(  # type: ignore[call-overload]
                literal(name),
                col(Subscriber.id),
                literal(local_day),
                literal(edition_id),
                literal(now, type_=SlotClaim.__table__.c.created_at.type),  # type: ignore[attr-defined]
            ).where(Subscriber.status == SubscriberStatus.ACTIVE, members(cfg, series, zone))
            stmt = (
                ins(SlotClaim.__table__)  # type: ignore[attr-defined]
                .from_select(["digest", "subscriber_id", "local_day", "edition_id", "created_at"], source)
                .on_conflict_do_nothing(index_elements=["digest", "subscriber_id", "local_day"])
            )
            session.execute(stmt)
        claimed = select(SlotClaim.subscriber_id).where(SlotClaim.edition_id == edition_id)
        return queue_deliveries(session, edition_id, now, only=col(Subscriber.id).in_(claimed))


def run_due(engine: Engine, settings: Settings, name: str, clock: Clock) -> list[SlotOutcome]:
    """Build and queue every edition of digest ``name`` that is due now; skip the too-late ones.

    A slot missed by more than ``max_delay`` is recorded as a skipped edition (and
    logged with the reason) when its series ran before; a series that never ran
    (a new install, a new send time) simply starts with its next slot.

    Safe to call at any time and as often as wanted: what already ran is read
    from the store.
    """
    cfg = settings.digests[name]
    trigger = cron_trigger(cfg.schedule, cfg.timezone, f"digests.{name}.schedule")
    now = clock.now()
    with session_scope(engine) as session:
        groups = series_groups(session, cfg)
    first = {s: decide(cfg, s, now, (), trigger) for s in groups}
    slots = [d.slot for d in first.values() if d is not None]
    with session_scope(engine) as session:
        existing = {
            e.slot: e
            for e in session.exec(select(Edition).where(Edition.digest == name, col(Edition.slot).in_(slots))).all()
        }
        started = set(
            session.exec(select(func.substr(Edition.slot, 11)).where(Edition.digest == name).distinct()).all()
        )
    outcomes: list[SlotOutcome] = []
    for series in sorted(groups, key=lambda x: (x.send_time or "", x.zone, -1 if x.weekday is None else x.weekday)):
        d = decide(cfg, series, now, existing, trigger)
        if d is None:
            continue
        found = existing.get(d.slot)
        if d.action == Decision.DONE and found is not None and found.status != EditionStatus.READY:
            continue
        if d.action == Decision.SKIP:
            # A series that never ran (a new install, a new send time) missed nothing.
            if series.suffix in started:
                outcomes.append(_skip(engine, name, d, now))
            continue
        # SEND, or an edition left "ready" by a process that died before queueing it.
        edition, created = build_edition(engine, settings, name, series, d.slot, now)
        assert edition.id is not None
        if created:
            event(
                log,
                "edition.built",
                digest=name,
                slot=d.slot,
                articles=edition.article_count,
                due=d.fire,
                reason=d.reason,
            )
        if edition.status == EditionStatus.EMPTY:
            if created:
                event(log, "edition.empty", digest=name, slot=d.slot, reason="no new articles; send_empty is off")
            outcomes.append(SlotOutcome(name, d.slot, "empty", edition.id))
            continue
        if edition.status != EditionStatus.READY:
            continue
        queued = claim_and_queue(engine, cfg, name, series, groups[series], edition.id, d.fire, now)
        finish_edition(engine, edition.id, now)
        event(log, "edition.queued", digest=name, slot=d.slot, edition=edition.id, queued=queued)
        outcomes.append(SlotOutcome(name, d.slot, "queued", edition.id, queued, d.reason))
    return outcomes


def _skip(engine: Engine, name: str, d: Decision, now: datetime) -> SlotOutcome:
    """Record a slot that was missed by more than max_delay as a skipped edition."""
    try:
        with session_scope(engine) as session:
            edition = Edition(digest=name, slot=d.slot, built_at=now, status=EditionStatus.SKIPPED)
            session.add(edition)
            session.flush()
            edition_id = edition.id
    except IntegrityError:
        return SlotOutcome(name, d.slot, "done")
    event(log, "edition.skipped", logging.WARNING, digest=name, slot=d.slot, due=d.fire, reason=d.reason)
    return SlotOutcome(name, d.slot, "skipped", edition_id, reason=d.reason)


# ---------------------------------------------------------------- sending what is queued


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        col(Delivery.status) == DeliveryStatus.QUEUED,
        and_(col(Delivery.status) == DeliveryStatus.FAILED_TEMPORARY, col(Delivery.next_attempt_at) <= now),
        and_(col(Delivery.status) == DeliveryStatus.CLAIMED, col(Delivery.lease_until) < now),
    )


def editions_with_due_deliveries(session: Session, now: datetime) -> list[int]:
    rows = session.exec(
        select(Delivery.edition_id).where(_due(now)).distinct().order_by(col(Delivery.edition_id))
    ).all()
    return list(rows)


def send_pending(
    engine: Engine,
    settings: Settings,
    transport: Callable[[], Transport],
    clock: Clock,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    worker: str | None = None,
    signer: Signer | None = None,
) -> list[SendReport]:
    """Send every delivery that is due, edition by edition; any number of processes may run this.

    Claims (with a lease, and SKIP LOCKED on PostgreSQL) make sure each delivery is
    sent by one process. ``transport`` is opened only when there is something to
    send. Stops between messages once ``should_stop()`` is true, releasing what it
    claimed.

    First, as every send does, it records what this host's journals say was accepted
    but never recorded (this very process's batches too, when the database was down
    while they were recorded): at once when the database is back, not only when
    their lease expires and they would be claimed, and sent, again.
    """
    recover_journals(engine, settings.delivery.journal_dir, clock.now())
    with session_scope(engine) as session:
        edition_ids = editions_with_due_deliveries(session, clock.now())
    if not edition_ids:
        return []
    reports: list[SendReport] = []
    env = make_environment(settings.templates_dir)
    smtp = transport()
    try:
        for edition_id in edition_ids:
            if should_stop():
                break
            with session_scope(engine) as session:
                edition = session.get(Edition, edition_id)
                assert edition is not None
                cfg = settings.digests.get(edition.digest)
                if cfg is None:
                    event(
                        log,
                        "edition.orphaned",
                        logging.WARNING,
                        digest=edition.digest,
                        slot=edition.slot,
                        reason="digest no longer configured; its queued deliveries stay queued",
                    )
                    continue
                content = load_content(session, settings, cfg, edition)
            _, series = parse_slot(edition.slot)
            vcfg = edition_config(cfg, series)
            variants = Variants(settings, edition.digest, vcfg, edition.slot, edition.built_at, content, env)
            try:
                report = send_edition(
                    engine,
                    settings,
                    variants,
                    edition_id,
                    smtp,
                    clock,
                    worker=worker,
                    should_stop=should_stop,
                    signer=signer,
                )
            except DeliveryError as exc:
                event(log, "outbox.smtp_down", logging.ERROR, digest=edition.digest, slot=edition.slot, error=str(exc))
                break
            finally:
                finish_edition(engine, edition_id, clock.now())
            reports.append(report)
            event(
                log,
                "edition.sent",
                digest=edition.digest,
                slot=edition.slot,
                sent=report.sent,
                failed=report.failed,
                skipped=report.skipped,
            )
    finally:
        smtp.close()
    return reports
