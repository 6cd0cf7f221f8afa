"""Series: subscribers grouped by local send time and timezone, each with its own editions.

Editions of a series only skip articles that earlier editions *of the same series*
carried: subscribers at 07:00 Berlin and 07:00 New York both get the day's news.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, and_, col, select

from digest.core.logs import event
from digest.core.settings import DigestConfig
from digest.edition.schedule import Series, check_send_time, default_series
from digest.store.models import Article, Edition, EditionArticle, EditionKind, Subscriber, SubscriberStatus

log = logging.getLogger(__name__)


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


def local_zone(cfg: DigestConfig) -> ColumnElement[str]:
    """A subscriber's timezone as a column: their own, or the digest's when they set none."""
    return func.coalesce(_nonempty(Subscriber.timezone), cfg.timezone)


def members(cfg: DigestConfig, series: Series, zone: str) -> ColumnElement[bool]:
    """The condition on Subscriber rows for the members of ``series`` living in ``zone``."""
    conds = [local_zone(cfg) == zone]
    send_time = _nonempty(Subscriber.send_time)
    conds.append(send_time.is_(None) if series.send_time is None else send_time == series.send_time)
    if series.weekday is None:
        conds.append(col(Subscriber.frequency) != "weekly")
    else:
        conds.append(col(Subscriber.frequency) == "weekly")
        conds.append(func.coalesce(Subscriber.weekday, 0) == series.weekday)
    return and_(*conds)


def series_carried(session: Session, digest: str, series: Series, slot: str) -> tuple[set[int], set[str]]:
    """Article ids and urls that earlier editions of the same series already carried."""
    rows = session.exec(
        select(EditionArticle.article_id, Article.url)
        .join(Edition, col(Edition.id) == EditionArticle.edition_id)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(
            Edition.digest == digest,
            Edition.kind == EditionKind.DIGEST,
            Edition.slot != slot,
            func.substr(Edition.slot, 11) == series.suffix,
        )
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
