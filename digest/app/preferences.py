"""Preferences: what a subscriber changes with their own signed link (topics, schedule, breaking news),
and their data: download it, or erase it (a suppression hash stays)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from digest.app.subscriptions import (
    FREQUENCIES,
    clean_topics,
    record_event,
    subscriber_from_token,
)
from digest.core.clock import Clock
from digest.core.errors import InputError, TokenError
from digest.core.settings import Settings
from digest.core.tokens import read_token_ref
from digest.store.db import session_scope
from digest.store.models import (
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
    saved_id,
)
from digest.store.subscriber_check import validate_locale, validate_quiet_hours, validate_send_time, validate_timezone
from digest.store.subscribers import erase_subscriber, subscriber_data
from digest.store.suppressions import unsuppress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preferences:
    """A subscriber's validated delivery choices."""

    topics: tuple[str, ...] = ()
    timezone: str | None = None
    send_time: str | None = None
    frequency: str = "daily"
    weekday: int | None = None
    # Breaking stories outside ``topics`` too; None: leave the stored choice as it is.
    breaking: bool | None = True
    # BCP 47 tag of their language; None: the digest's.
    locale: str | None = None
    # Breaking alerts by email, and the local quiet hours without them; alerts None: the
    # form did not show them, the stored choices stay.
    alerts: bool | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None


def subscriber_for_preferences(engine: Engine, settings: Settings, clock: Clock, token: str) -> Subscriber:
    """The subscriber a preferences token belongs to (read only). TokenError if it is bad."""
    with session_scope(engine) as session:
        return subscriber_from_token(session, settings, "preferences", token, clock.now())


def export_by_token(engine: Engine, settings: Settings, clock: Clock, token: str) -> dict[str, Any]:
    """Everything stored about the owner of a preferences token (GDPR access). TokenError if it is bad."""
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "preferences", token, clock.now())
        data = subscriber_data(session.connection(), saved_id(sub))
    if data is None:  # erased between the two reads
        raise TokenError("this link is not valid")
    return data


def erase_by_token(engine: Engine, settings: Settings, clock: Clock, token: str) -> None:
    """Erase the owner of a preferences token, keeping only their address's suppression hash.

    TokenError if the token is bad (or they are erased already).
    """
    now = clock.now()
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "preferences", token, now)
        erase_subscriber(session.connection(), saved_id(sub), now)


def erased_by_token(engine: Engine, settings: Settings, clock: Clock, token: str) -> bool:
    """Whether a genuine preferences token names a subscriber who no longer exists (erased).

    A forged or mistyped token is False: only a link we made says the data is gone.
    """
    try:
        sub_id, _, _ = read_token_ref(settings.secret_key.get_secret_value(), "preferences", token, now=clock.now())
    except TokenError:
        return False
    with session_scope(engine) as session:
        return session.get(Subscriber, sub_id) is None


def current_preferences(sub: Subscriber) -> Preferences:
    return Preferences(
        topics=tuple(sub.topics),
        timezone=sub.timezone,
        send_time=sub.send_time,
        frequency=sub.frequency if sub.frequency in FREQUENCIES else "daily",
        weekday=sub.weekday,
        breaking=sub.breaking,
        locale=sub.locale,
        alerts=sub.alerts,
        quiet_start=sub.quiet_start,
        quiet_end=sub.quiet_end,
    )


def parse_preferences(
    settings: Settings,
    *,
    topics: Iterable[str],
    timezone: str | None,
    send_time: str | None,
    frequency: str | None,
    weekday: str | None,
    breaking: bool | None = None,
    locale: str | None = None,
    alerts: bool | None = None,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
) -> Preferences:
    """Validate raw form values; InputError names the offending field.

    ``breaking``: also breaking stories outside the topics; None keeps the stored choice.
    """
    day: int | None = None
    if weekday not in (None, ""):
        try:
            day = int(str(weekday))
        except ValueError:
            day = -1
    freq, day = parse_frequency(frequency, day)
    quiet = validate_quiet_hours(quiet_start, quiet_end, "quiet_start")
    return Preferences(
        topics=clean_topics(settings, topics),
        timezone=validate_timezone(timezone, "timezone"),
        send_time=validate_send_time(send_time, "send_time"),
        frequency=freq,
        weekday=day,
        breaking=breaking,
        locale=validate_locale(locale, "locale"),
        alerts=alerts,
        quiet_start=quiet[0],
        quiet_end=quiet[1],
    )


def parse_frequency(
    frequency: str | None, weekday: int | None, fields: tuple[str, str] = ("frequency", "weekday")
) -> tuple[str, int | None]:
    """``(frequency, weekday)`` validated: daily, or weekly on a day (0 = Monday); the day only for weekly.

    InputError names the offending field, as ``fields`` calls them.
    """
    freq = (frequency or "daily").strip().lower()
    if freq not in FREQUENCIES:
        raise InputError(fields[0], f"must be one of {', '.join(FREQUENCIES)}")
    if weekday is not None and not 0 <= weekday < 7:
        raise InputError(fields[1], "must be a day of the week")
    if freq == "weekly" and weekday is None:
        raise InputError(fields[1], "choose a day for a weekly digest")
    return freq, weekday if freq == "weekly" else None


def update_preferences(engine: Engine, settings: Settings, clock: Clock, token: str, prefs: Preferences) -> Subscriber:
    """Store the preferences of the owner of a preferences token. TokenError if it is bad."""
    now = clock.now()
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "preferences", token, now)
        sub.topics = list(prefs.topics)
        sub.timezone = prefs.timezone
        sub.send_time = prefs.send_time
        sub.frequency = prefs.frequency
        sub.weekday = prefs.weekday
        if prefs.breaking is not None:
            sub.breaking = prefs.breaking
        sub.locale = prefs.locale
        if prefs.alerts is not None:
            sub.alerts = prefs.alerts
            sub.quiet_start, sub.quiet_end = prefs.quiet_start, prefs.quiet_end
        sub.updated_at = now
        session.add(sub)
        record_event(session, sub, SubscriberEventKind.PREFERENCES, now, source="web")
        return sub


def resubscribe_by_token(engine: Engine, settings: Settings, clock: Clock, token: str) -> Subscriber:
    """Re-activate the owner of a preferences token.

    The token came by email to that mailbox, so following it is as good as a
    confirmation: no second round trip is needed.
    """
    now = clock.now()
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "preferences", token, now)
        if sub.status != SubscriberStatus.ACTIVE:
            sub.status = SubscriberStatus.ACTIVE
            sub.bounce_count = 0
            sub.soft_bounce_streak = 0
            sub.updated_at = now
            session.add(sub)
            record_event(session, sub, SubscriberEventKind.CONFIRMED, now, source="preferences")
        unsuppress(session.connection(), sub.email_key)
        return sub
