"""Planner: turns the schedule's decisions into editions, slot claims and queued deliveries.

The leader calls :func:`run_due` on every tick and when a digest's cron fires; every
process drains the outbox (``digest.outbox.drain``) to deliver what is queued. Both are idempotent and
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
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, delete, exists, false, func, literal, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from digest.core.clock import Clock
from digest.core.logs import event
from digest.core.settings import DigestConfig, Settings
from digest.edition.build import (
    build_edition,
)
from digest.edition.schedule import Decision, Series, cron_trigger, decide
from digest.edition.series import local_zone, members, series_groups
from digest.outbox.ledger import finish_edition
from digest.outbox.warmup import Queued, queue_capped
from digest.store.db import session_scope
from digest.store.models import (
    Delivery,
    Edition,
    EditionKind,
    EditionStatus,
    SlotClaim,
    Subscriber,
    SubscriberStatus,
    saved_id,
)

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
    waiting: int = 0  # left for a later day by the warm-up cap


# ---------------------------------------------------------------- series of subscribers


# ---------------------------------------------------------------- editions


def claim_and_queue(
    engine: Engine,
    settings: Settings,
    name: str,
    series: Series,
    zones: set[str],
    edition_id: int,
    fire: datetime,
    now: datetime,
) -> Queued:
    """Claim each member's local day for the edition and queue their deliveries, atomically.

    A member whose local day another edition of the digest already claimed is not
    queued: nobody gets two editions for the same day in their own timezone. Members
    the warm-up cap leaves out keep no claim: a later edition may serve them.
    """
    cfg = settings.digests[name]
    zones = set(zones) | ({series.zone} if series.send_time is not None else set())
    with session_scope(engine) as session:
        for zone in sorted(zones):
            local_day = fire.astimezone(ZoneInfo(zone)).date().isoformat()
            _claim(session, name, edition_id, local_day, now, members(cfg, series, zone))
        claimed = select(SlotClaim.subscriber_id).where(SlotClaim.edition_id == edition_id)
        queued = queue_capped(session, settings.delivery.warmup, edition_id, now, only=col(Subscriber.id).in_(claimed))
        _unclaim_unqueued(session, edition_id, queued)
        return queued


def _unclaim_unqueued(session: Session, edition_id: int, queued: Queued) -> None:
    """Drop the edition's claims of subscribers the warm-up cap left without a delivery.

    A claim says "served today"; someone who got nothing must stay free for the next edition.
    """
    if queued.warmup is None or not queued.warmup.waiting:
        return
    session.execute(
        delete(SlotClaim).where(
            col(SlotClaim.edition_id) == edition_id,
            ~exists().where(
                col(Delivery.edition_id) == edition_id, col(Delivery.subscriber_id) == SlotClaim.subscriber_id
            ),
        )
    )


def _claim(
    session: Session, name: str, edition_id: int, local_day: str, now: datetime, who: ColumnElement[bool]
) -> None:
    """Claim ``local_day`` for the edition for the active subscribers matching ``who`` (first claim wins)."""
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    source = select(  # type: ignore[call-overload]
        literal(name),
        col(Subscriber.id),
        literal(local_day),
        literal(edition_id),
        literal(now, type_=SlotClaim.__table__.c.created_at.type),  # type: ignore[attr-defined]
    ).where(Subscriber.status == SubscriberStatus.ACTIVE, who)
    stmt = (
        ins(SlotClaim.__table__)  # type: ignore[attr-defined]
        .from_select(["digest", "subscriber_id", "local_day", "edition_id", "created_at"], source)
        .on_conflict_do_nothing(index_elements=["digest", "subscriber_id", "local_day"])
    )
    session.execute(stmt)


# ---------------------------------------------------------------- manual sends


def local_days(session: Session, cfg: DigestConfig, now: datetime) -> dict[str, str]:
    """Each timezone of the active subscribers (and the digest's own) with its date at ``now``.

    Unusable timezones are left out: the service cannot schedule those subscribers either
    (``series_groups`` warns about them), so no edition claims their days.
    """
    rows = session.exec(select(Subscriber.timezone).where(Subscriber.status == SubscriberStatus.ACTIVE).distinct())
    days: dict[str, str] = {}
    for zone in sorted({cfg.timezone, *(tz or cfg.timezone for tz in rows.all())}):
        try:
            days[zone] = now.astimezone(ZoneInfo(zone)).date().isoformat()
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return days


def served_elsewhere(cfg: DigestConfig, name: str, edition_id: int | None, days: dict[str, str]) -> ColumnElement[bool]:
    """The condition on Subscriber rows: another edition of ``name`` already claimed their local day."""
    conds = []
    for zone, day in days.items():
        other = exists().where(
            col(SlotClaim.digest) == name,
            col(SlotClaim.subscriber_id) == Subscriber.id,
            col(SlotClaim.local_day) == day,
        )
        if edition_id is not None:
            other = other.where(col(SlotClaim.edition_id) != edition_id)
        conds.append(and_(local_zone(cfg) == zone, other))
    return or_(*conds) if conds else false()


def claim_today_and_queue(
    engine: Engine, settings: Settings, name: str, edition_id: int, now: datetime, *, also_served: bool = False
) -> tuple[Queued, int]:
    """A manual send's queueing: claim each active subscriber's local day at ``now`` for the edition.

    Subscribers whose day another edition of the digest already claimed (the service's
    local-time edition, say) are not queued unless ``also_served``: nobody gets two
    editions for one day by accident. Returns ``(queued, served)``: the deliveries
    created (within the warm-up cap, if any), and how many subscribers without one
    were already served today.
    """
    cfg = settings.digests[name]
    with session_scope(engine) as session:
        days = local_days(session, cfg, now)
        served = served_elsewhere(cfg, name, edition_id, days)
        n_served = session.exec(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == SubscriberStatus.ACTIVE, served, ~has_delivery(edition_id))
        ).one()
        for zone, day in days.items():
            _claim(session, name, edition_id, day, now, local_zone(cfg) == zone)
        queued = queue_capped(session, settings.delivery.warmup, edition_id, now, only=None if also_served else ~served)
        _unclaim_unqueued(session, edition_id, queued)
    return queued, int(n_served)


def has_delivery(edition_id: int) -> ColumnElement[bool]:
    """The condition on Subscriber rows: a delivery of the edition exists (in any status)."""
    return exists().where(col(Delivery.edition_id) == edition_id, col(Delivery.subscriber_id) == Subscriber.id)


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
            session.exec(
                select(func.substr(Edition.slot, 11))
                .where(Edition.digest == name, Edition.kind == EditionKind.DIGEST)
                .distinct()
            ).all()
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
        edition, _, created = build_edition(engine, settings, name, series, d.slot, now)
        edition_id = saved_id(edition)
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
            outcomes.append(SlotOutcome(name, d.slot, "empty", edition_id))
            continue
        if edition.status != EditionStatus.READY:
            continue
        queued = claim_and_queue(engine, settings, name, series, groups[series], edition_id, d.fire, now)
        finish_edition(engine, edition_id, now)
        event(log, "edition.queued", digest=name, slot=d.slot, edition=edition_id, queued=queued.queued)
        waiting = queued.warmup.waiting if queued.warmup else 0
        outcomes.append(SlotOutcome(name, d.slot, "queued", edition_id, queued.queued, d.reason, waiting))
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
