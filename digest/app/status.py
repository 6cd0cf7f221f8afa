"""Status: what the service is doing, read from the settings and the store (``digest status``).

Works whether or not a service is running: job times are computed from the same
job definitions the service derives from the settings, and everything else
(editions, deliveries, feeds, running processes) is in the store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.app.jobs import job_specs
from digest.app.planner import series_groups
from digest.app.send import delivery_counts
from digest.core.logs import mask_url
from digest.core.settings import DigestConfig, Settings
from digest.edition.schedule import next_fire, upcoming_fire
from digest.outbox.warmup import warmup_today
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionKind, Feed, ServiceNode, saved_id
from digest.store.pauses import paused_digests
from digest.store.provider_pauses import active_provider_pauses


def feed_row(f: Feed) -> dict[str, Any]:
    """One feed as ``digest status`` and ``digest feeds list`` report it (JSON-ready; password masked)."""
    return {
        "id": f.id,
        "url": mask_url(f.url),
        "category": f.category,
        "every_seconds": f.every_seconds,
        "status": f.status,
        "failures": f.failures,
        "last_error": f.last_error,
        "last_polled_at": _iso(f.last_polled_at),
        "last_ok_at": _iso(f.last_ok_at),
        "next_poll_at": _iso(f.next_poll_at),
        "last_new": f.last_new,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def collect_status(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    """Everything ``digest status`` shows, as plain data (JSON-ready)."""
    alive_after = now - max(settings.service.leader_interval * 3, timedelta(seconds=10))
    with session_scope(engine) as session:
        digests = [_digest_status(session, name, cfg, now) for name, cfg in settings.digests.items()]
        pauses = paused_digests(session.connection())
        for d in digests:
            pause = pauses.get(d["name"])
            d["paused"] = {"reason": pause.reason, "since": _iso(pause.paused_at)} if pause else None
        outbox = _outbox_status(session, now)
        warmup = _warmup_status(session, settings, now)
        providers = [
            {"provider": p.provider, "until": _iso(p.paused_until.replace(microsecond=0)), "reason": p.reason}
            for p in active_provider_pauses(session.connection(), now)
        ]
        feeds = [feed_row(f) for f in session.exec(select(Feed).order_by(col(Feed.id))).all()]
        nodes = [
            {
                "worker": n.worker,
                "leader": n.leader,
                "started_at": _iso(n.started_at),
                "seen_at": _iso(n.seen_at),
                "alive": n.seen_at >= alive_after,
            }
            for n in session.exec(select(ServiceNode).order_by(col(ServiceNode.started_at))).all()
        ]
    return {
        "now": _iso(now),
        "processes": nodes,
        "jobs": _jobs(settings, now),
        "digests": digests,
        "feeds": feeds,
        "outbox": outbox,
        "warmup": warmup,
        "provider_pauses": providers,
    }


def _warmup_status(session: Session, settings: Settings, now: datetime) -> dict[str, Any] | None:
    """Today in the warm-up schedule: its day, cap and use; ``done`` once the schedule is over; None when off."""
    cfg = settings.delivery.warmup
    if not cfg.enabled or cfg.start_date is None:
        return None
    today = warmup_today(session.connection(), cfg, now)
    info: dict[str, Any] = {"start_date": cfg.start_date.isoformat(), "days": cfg.days, "timezone": cfg.timezone}
    if today is None:
        return {**info, "done": True}
    return {
        **info,
        "done": False,
        "day": today.day,
        "date": today.date,
        "cap": today.cap,
        "used": today.used,
        "left": today.left,
    }


def _jobs(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """The service's jobs and when each runs next (interval jobs: how often)."""
    jobs = []
    for spec in job_specs(settings):
        if isinstance(spec.trigger, IntervalTrigger):
            nxt = None
            every = spec.trigger.interval.total_seconds()
        else:
            nxt = next_fire(spec.trigger, now)  # type: ignore[arg-type]
            every = None
        jobs.append(
            {
                "id": spec.id,
                "description": spec.description,
                "next_run": _iso(nxt),
                "every_seconds": every,
                "leader_only": spec.leader_only,
            }
        )
    return jobs


def _digest_status(session: Session, name: str, cfg: DigestConfig, now: datetime) -> dict[str, Any]:
    """A digest's next editions (per series) and its last edition with its delivery counts."""
    upcoming = []
    for series in series_groups(session, cfg):
        fire = upcoming_fire(cfg, series, now)
        if fire is not None:
            upcoming.append({"series": series.describe(), "next_run": _iso(fire)})
    upcoming.sort(key=lambda u: u["next_run"] or "")
    last = session.exec(
        select(Edition)
        .where(Edition.digest == name, Edition.kind == EditionKind.DIGEST)
        .order_by(col(Edition.built_at).desc(), col(Edition.id).desc())
    ).first()
    last_info = None
    if last is not None:
        counts = delivery_counts(session, saved_id(last))
        last_info = {
            "slot": last.slot,
            "status": last.status,
            "built_at": _iso(last.built_at),
            "sent_at": _iso(last.sent_at),
            "articles": last.article_count,
            "queued": counts.get(DeliveryStatus.QUEUED, 0) + counts.get(DeliveryStatus.CLAIMED, 0),
            "sent": counts.get(DeliveryStatus.SENT, 0),
            "failed": counts.get(DeliveryStatus.FAILED_TEMPORARY, 0) + counts.get(DeliveryStatus.FAILED_PERMANENT, 0),
            "retrying": counts.get(DeliveryStatus.FAILED_TEMPORARY, 0),
            "skipped": counts.get(DeliveryStatus.SKIPPED, 0),
        }
    return {"name": name, "upcoming": upcoming[:10], "last_edition": last_info}


def _outbox_status(session: Session, now: datetime) -> dict[str, Any]:
    """How many deliveries are pending and the oldest of them."""
    pending = session.exec(
        select(func.count(), func.min(Delivery.created_at)).where(col(Delivery.status).in_(DeliveryStatus.PENDING))
    ).one()
    oldest = session.exec(
        select(Delivery, Edition)
        .join(Edition, col(Edition.id) == Delivery.edition_id)
        .where(col(Delivery.status).in_(DeliveryStatus.PENDING))
        .order_by(col(Delivery.created_at), col(Delivery.id))
    ).first()
    outbox: dict[str, Any] = {"pending": int(pending[0]), "oldest_queued": None}
    if oldest is not None:
        delivery, edition = oldest
        outbox["oldest_queued"] = {
            "created_at": _iso(delivery.created_at),
            # A row stamped ahead of the clock (a send --at in the future, a clock step) is new, not -5 h old.
            "age_seconds": max(0, int((now - delivery.created_at).total_seconds())),
            "digest": edition.digest,
            "slot": edition.slot,
            "status": delivery.status,
        }
    return outbox
