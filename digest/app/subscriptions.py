"""Lifecycle: a subscriber joins (double opt-in), confirms, changes preferences and leaves.

The web app and the inbound-mail handler are thin shells over these functions.
Every state change is recorded as a :class:`~digest.store.models.SubscriberEvent` (the
consent trail, bounces, and the throttle of confirmation emails).

Privacy rule: nothing here tells a caller whether an address was already on the
list. :func:`request_subscription` answers the same for every valid address, and
the one person who learns the truth is the mailbox owner, by email.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from digest.core.clock import Clock
from digest.core.errors import TokenError
from digest.core.settings import Settings
from digest.core.text import one_line
from digest.core.tokens import address_hash, make_token, read_token_ref
from digest.store.db import session_scope
from digest.store.models import (
    Delivery,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    SuppressionReason,
    event_values,
    saved_id,
)
from digest.store.subscriber_check import normalise_email, validate_locale, validate_timezone
from digest.store.subscribers import find_subscriber
from digest.store.suppressions import suppress, unsuppress
from digest.store.webhooks import subscriber_event

log = logging.getLogger(__name__)

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Subject templates, in the reader's language (the same messages as the notices' titles).
CONFIRM_SUBJECT = '{{ _("Confirm your subscription to %(title)s", title=site.title) }}'
NOTICE_SUBJECT = """{{ _("You're already subscribed to %(title)s", title=site.title) }}"""


class Outcome(StrEnum):
    """What :func:`request_subscription` did. Never shown to the requester."""

    CONFIRMATION_SENT = "confirmation_sent"
    NOTICE_SENT = "notice_sent"  # already active: a reminder with their own links instead
    THROTTLED = "throttled"  # a message went to this address moments ago


@dataclass(frozen=True)
class SubscribeForm:
    """What the subscribe form sends (raw, unvalidated)."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    timezone: str | None = None
    # The language the form was shown in, when not the site's (from the browser's
    # Accept-Language): a new subscriber's locale.
    locale: str | None = None


# ---------------------------------------------------------------- small helpers


def site_title(settings: Settings) -> str:
    """The name shown on web pages and notices: the only digest's title, else a generic one."""
    if len(settings.digests) == 1:
        return next(iter(settings.digests.values())).title
    return "our newsletters"


def site_language(settings: Settings) -> str:
    """The language of pages and notices for a reader who chose none: the first digest's ``language``."""
    return next(iter(settings.digests.values())).language


def reader_language(settings: Settings, sub: Any) -> str:
    """``sub``'s language: their ``locale``, else :func:`site_language`."""
    return getattr(sub, "locale", None) or site_language(settings)


def available_topics(settings: Settings) -> list[str]:
    """The topics a subscriber can choose: every configured section, in order, once."""
    seen: dict[str, str] = {}
    for cfg in settings.digests.values():
        for s in cfg.sections:
            seen.setdefault(s.casefold(), s)
    return list(seen.values())


def clean_topics(settings: Settings, topics: Iterable[str]) -> tuple[str, ...]:
    """The known topics among ``topics`` (case-insensitive), in configured order; unknown ones are dropped."""
    wanted = {one_line(t).casefold() for t in topics}
    return tuple(t for t in available_topics(settings) if t.casefold() in wanted)


def record_event(
    session: Session,
    sub: Subscriber,
    kind: str,
    now: datetime,
    *,
    source: str = "",
    ref: str | None = None,
    detail: str = "",
) -> SubscriberEvent:
    """Add one event to the subscriber's trail (and queue its webhook event, if it is one), in ``session``."""
    event = SubscriberEvent(**event_values(saved_id(sub), kind, now, source=source, ref=ref, detail=detail))
    session.add(event)
    subscriber_event(session.connection(), kind, saved_id(sub), sub.email, now, source=source, ref=ref, detail=detail)
    return event


def events(session: Session, subscriber_id: int, kind: str | None = None) -> Sequence[SubscriberEvent]:
    """A subscriber's events, oldest first."""
    stmt = select(SubscriberEvent).where(SubscriberEvent.subscriber_id == subscriber_id)
    if kind:
        stmt = stmt.where(SubscriberEvent.kind == kind)
    return session.exec(stmt.order_by(col(SubscriberEvent.id))).all()


def subscriber_from_token(session: Session, settings: Settings, purpose: str, token: str, now: datetime) -> Subscriber:
    """The subscriber a token was made for; TokenError if it is forged or not theirs.

    The token's address hash must match the subscriber's current address: a token
    never works for a row whose address changed, or for a deleted id reused later.
    Every failure raises the same message, so a caller cannot tell them apart.
    Tokens that expire (``confirm``) are read with :func:`subscriber_and_ref_from_token`.
    """
    return subscriber_and_ref_from_token(session, settings, purpose, token, now)[0]


def subscriber_and_ref_from_token(
    session: Session,
    settings: Settings,
    purpose: str,
    token: str,
    now: datetime,
    max_age: int | None = None,
) -> tuple[Subscriber, int | None]:
    """:func:`subscriber_from_token` and the record the token is bound to (``make_link(ref=...)``).

    ``max_age`` (seconds): TokenError also for a timed token older than that.
    """
    sub_id, hashed, ref = read_token_ref(settings.secret_key.get_secret_value(), purpose, token, max_age, now=now)
    sub = session.get(Subscriber, sub_id)
    if sub is None or not secrets.compare_digest(address_hash(sub.email_key), hashed):
        raise TokenError("this link is not valid")
    return sub, ref


def make_link(settings: Settings, purpose: str, sub: Subscriber, now: datetime, *, ref: int | None = None) -> str:
    """``{base_url}/{purpose}/{token}`` for this subscriber (bound to record ``ref`` when given)."""
    token = make_token(settings.secret_key.get_secret_value(), purpose, saved_id(sub), sub.email_key, now=now, ref=ref)
    return f"{settings.base_url}/{purpose}/{token}"


class NoticeSender(Protocol):
    """What sends a notice (``digest.app.notices.Mailer`` and ``BackgroundMailer``)."""

    def send(self, sub: Subscriber, template: str, subject: str, now: datetime, **extra: Any) -> str: ...


# ---------------------------------------------------------------- subscribe and confirm


def _upsert_pending(
    session: Session, settings: Settings, form: SubscribeForm, now: datetime, source: str = "web"
) -> tuple[Subscriber, SubscriberEvent]:
    """The subscriber of ``form`` (created pending when new) and the request event.

    What the form asks for (name, timezone, topics) is kept in the request event
    and applied only when the mailbox owner confirms: a form anyone can post
    never changes an existing person's data.
    """
    email, key = normalise_email(form.email, "email")
    tz = validate_timezone(form.timezone, "timezone")
    topics = list(clean_topics(settings, form.topics))
    name = one_line(form.name)[:200]
    sub = find_subscriber(session, key)
    if sub is None:
        sub = Subscriber(
            email=email,
            email_key=key,
            name=name,
            status=SubscriberStatus.PENDING,
            timezone=tz,
            topics=topics,
            locale=validate_locale(form.locale, "locale"),
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
        session.flush()
    requested = json.dumps({"name": name, "timezone": tz, "topics": topics}, ensure_ascii=False)
    event = record_event(session, sub, SubscriberEventKind.SUBSCRIBE_REQUEST, now, source=source, detail=requested)
    session.flush()
    return sub, event


def request_subscription(
    engine: Engine, settings: Settings, clock: Clock, form: SubscribeForm, mailer: NoticeSender, *, source: str = "web"
) -> Outcome:
    """Handle a subscribe request: store a pending subscriber and email them a confirmation link.

    An address already active gets a reminder with its own preferences and
    unsubscribe links instead, and nothing about it changes. At most one message
    per address per ``web.resend_interval``. Raises InputError for an invalid
    address or timezone; send failures (TemporaryFailure, PermanentFailure) of a
    synchronous ``mailer`` propagate (the attempt still counts for the throttle).
    ``source`` is recorded with the events (``web``, ``api``).
    """
    now = clock.now()

    def decide(session: Session) -> tuple[Subscriber, SubscriberEvent, Outcome]:
        # One transaction whatever the outcome: a throttled request costs the
        # database what a new one does, so its timing gives nothing away either.
        sub, request = _upsert_pending(session, settings, form, now, source)
        sent = events(session, saved_id(sub), SubscriberEventKind.CONFIRM_SENT)
        if sent and now - sent[-1].created_at < settings.web.resend_interval:
            return sub, request, Outcome.THROTTLED
        outcome = Outcome.NOTICE_SENT if sub.status == SubscriberStatus.ACTIVE else Outcome.CONFIRMATION_SENT
        record_event(session, sub, SubscriberEventKind.CONFIRM_SENT, now, source=source, detail=outcome.value)
        return sub, request, outcome

    try:
        with session_scope(engine) as session:
            sub, request, outcome = decide(session)
    except IntegrityError:
        # Another request created the same address a moment ago: it exists now.
        with session_scope(engine) as session:
            sub, request, outcome = decide(session)
    if outcome == Outcome.THROTTLED:
        log.info("subscriber %s: confirmation sent recently, not sending again", sub.id)
    elif outcome == Outcome.NOTICE_SENT:
        mailer.send(sub, "already_subscribed", NOTICE_SUBJECT, now)
    else:
        # Bound to this request: the link confirms it once, and only while nothing
        # has happened to the subscriber since (see confirm_subscription).
        confirm_url = make_link(settings, "confirm", sub, now, ref=request.id)
        mailer.send(sub, "confirm", CONFIRM_SUBJECT, now, confirm_url=confirm_url)
    log.info("subscriber %s: %s", sub.id, outcome.value)
    return outcome


# Events after a subscribe request that void its confirmation link: it was used,
# or the subscriber left or bounced since.
_VOIDING = (SubscriberEventKind.CONFIRMED, SubscriberEventKind.UNSUBSCRIBED, SubscriberEventKind.BOUNCE_PERMANENT)


def _confirmation(
    session: Session, settings: Settings, token: str, now: datetime
) -> tuple[Subscriber, SubscriberEvent, bool]:
    """The subscriber and subscribe request of a confirmation token, and whether it is already done.

    TokenError when the token is bad or expired, or voided by a later event (see
    :func:`confirm_subscription`).
    """
    max_age = int(settings.web.confirm_max_age.total_seconds())
    sub, request_id = subscriber_and_ref_from_token(session, settings, "confirm", token, now, max_age)
    request = session.get(SubscriberEvent, request_id) if request_id is not None else None
    if request is None or request.subscriber_id != sub.id or request.kind != SubscriberEventKind.SUBSCRIBE_REQUEST:
        raise TokenError("this link is not valid")
    later = session.exec(
        select(SubscriberEvent).where(
            SubscriberEvent.subscriber_id == sub.id,
            col(SubscriberEvent.id) > request.id,
            col(SubscriberEvent.kind).in_(_VOIDING),
        )
    ).all()
    used_here = [e for e in later if e.kind == SubscriberEventKind.CONFIRMED and e.ref == f"request:{request.id}"]
    if later:
        if used_here and sub.status == SubscriberStatus.ACTIVE and later[-1] is used_here[-1]:
            return sub, request, True
        log.info("subscriber %s: confirmation link used or outdated; refused", sub.id)
        raise TokenError("this link is not valid")
    return sub, request, False


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link would do, read without doing it (the page before the button)."""

    subscriber: Subscriber
    # When the link's mail went out: the time of the subscribe request it answers.
    sent_at: datetime
    done: bool


def check_confirmation(engine: Engine, settings: Settings, clock: Clock, token: str) -> Confirmation:
    """Read a confirmation token without acting on it; TokenError exactly when confirming would fail."""
    with session_scope(engine) as session:
        sub, request, done = _confirmation(session, settings, token, clock.now())
        return Confirmation(sub, request.created_at, done)


def confirm_subscription(engine: Engine, settings: Settings, clock: Clock, token: str) -> Subscriber:
    """Activate the subscriber of a confirmation token and apply what they asked for.

    A token confirms the one subscribe request it was made for, once: it is refused
    (TokenError) once it has been used, or once the subscriber confirmed another
    way, unsubscribed or bounced after that request, so an old link never brings
    back someone who left. Using it again while the subscription it made is
    still active shows the same page and changes nothing. TokenError also if it is
    bad or expired.
    """
    now = clock.now()
    with session_scope(engine) as session:
        sub, request, done = _confirmation(session, settings, token, now)
        if done:
            return sub
        if sub.status != SubscriberStatus.ACTIVE:
            _apply_request(settings, sub, request.detail)
            sub.status = SubscriberStatus.ACTIVE
            sub.bounce_count = 0
            sub.soft_bounce_streak = 0
            sub.updated_at = now
            session.add(sub)
        # The mailbox owner confirmed: that is the fresh consent a suppressed address needs.
        if unsuppress(session.connection(), sub.email_key):
            log.info("subscriber %s taken off the suppression list (confirmed)", sub.id)
        record_event(session, sub, SubscriberEventKind.CONFIRMED, now, source="web", ref=f"request:{request.id}")
        log.info("subscriber %s confirmed", sub.id)
        return sub


def _apply_request(settings: Settings, sub: Subscriber, detail: str) -> None:
    """Apply the name, timezone and topics a confirmed subscribe request asked for."""
    try:
        asked = json.loads(detail) if detail else {}
    except ValueError:
        asked = {}
    if not isinstance(asked, dict):
        return
    if isinstance(asked.get("name"), str) and asked["name"]:
        sub.name = asked["name"]
    if isinstance(asked.get("timezone"), str) and asked["timezone"]:
        sub.timezone = asked["timezone"]
    if isinstance(asked.get("topics"), list):
        sub.topics = list(clean_topics(settings, [t for t in asked["topics"] if isinstance(t, str)]))


# ---------------------------------------------------------------- unsubscribe


def unsubscribe(
    session: Session,
    sub: Subscriber,
    now: datetime,
    *,
    source: str,
    ref: str | None = None,
    detail: str = "",
    reason: str = SuppressionReason.UNSUBSCRIBED,
) -> bool:
    """Mark ``sub`` unsubscribed and suppress their address; return False when they already were.

    ``reason`` is the suppression's (a complaint unsubscribes too); an address
    already suppressed keeps its first reason.
    """
    suppress(session.connection(), sub.email, reason, source, now)
    if sub.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    sub.status = SubscriberStatus.UNSUBSCRIBED
    sub.updated_at = now
    session.add(sub)
    record_event(session, sub, SubscriberEventKind.UNSUBSCRIBED, now, source=source, ref=ref, detail=detail)
    log.info("subscriber %s unsubscribed (%s)", sub.id, source)
    return True


def unsubscribe_link_sent_at(
    engine: Engine, settings: Settings, clock: Clock, token: str
) -> tuple[Subscriber, datetime | None]:
    """The owner of an unsubscribe token and when the newest digest to them went out (None: none did).

    Unsubscribe tokens carry no time, so the newest delivery stands for the mail
    whose link was followed. TokenError if the token is bad.
    """
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "unsubscribe", token, clock.now())
        sent_at = session.exec(
            select(func.max(col(Delivery.sent_at))).where(Delivery.subscriber_id == saved_id(sub))
        ).one()
        return sub, sent_at


def unsubscribe_by_token(engine: Engine, settings: Settings, clock: Clock, token: str, *, source: str) -> Subscriber:
    """Unsubscribe the owner of an unsubscribe token (idempotent). TokenError if it is bad."""
    now = clock.now()
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "unsubscribe", token, now)
        unsubscribe(session, sub, now, source=source)
        return sub
