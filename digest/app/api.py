"""The REST API's use cases: one function per endpoint, called by ``digest.web.api``.

Each takes plain values (a decoded JSON body, an id), does its work in one
transaction and returns JSON-ready data. Bad input raises InputError naming the
field (InvalidFields for several), an unknown id NotFoundError. The same rules as
the other ways in apply: articles are validated as the JSON importer validates them
(``digest.ingest.records``), a subscriber added without consent gets the confirmation
mail of the subscribe form, erasure is the subscriber's own "delete my data".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digest.app.preferences import parse_frequency
from digest.app.subscriptions import NoticeSender, SubscribeForm, record_event, request_subscription, unsubscribe
from digest.core.clock import Clock
from digest.core.errors import InputError, InvalidFields, NotFoundError
from digest.core.settings import Settings
from digest.ingest import ArticleDraft
from digest.ingest.records import ALIASES, FIELDS, draft_from_record
from digest.ingest.save import article_guid, upsert_articles
from digest.outbox.ledger import delivery_counts
from digest.store.articles import recent_articles, set_hidden
from digest.store.db import session_scope
from digest.store.models import (
    Article,
    Edition,
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
    saved_id,
)
from digest.store.subscriber_check import (
    known_topics,
    normalise_email,
    validate_locale,
    validate_quiet_hours,
    validate_send_time,
    validate_timezone,
)
from digest.store.subscribers import add_subscriber, erase_subscriber, find_subscriber
from digest.store.suppressions import suppression_of

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_LIST = 500
# The consent proof is kept in one event's detail (1,000 characters).
MAX_CONSENT = 1000
# Ids are 32-bit INTEGER columns (PostgreSQL); a larger number names nothing.
MAX_ID = 2**31 - 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------- articles


def _field_of(problem: str) -> str | None:
    """The article field an importer problem is about (its messages name it), if any."""
    if problem.startswith("unknown field"):
        return problem.split("'")[1] if "'" in problem else None
    words = problem.replace("'", " ").replace(",", " ").split()
    for word in words[:6]:
        name = ALIASES.get(word, word)
        if name in FIELDS:
            return name
        if word == "tag":
            return "tags"
    return None


def _drafts(body: Any) -> list[ArticleDraft]:
    """The drafts of a body (one article object or a list of them); InvalidFields lists every bad one."""
    single = isinstance(body, dict)
    records = [body] if single else body
    if not isinstance(records, list):
        raise InvalidFields([(("body",), "expected an article object or a list of them")])
    if not records:
        raise InvalidFields([(("body",), "the list holds no article")])
    if len(records) > MAX_BATCH:
        raise InvalidFields([(("body",), f"at most {MAX_BATCH} articles a request, got {len(records)}")])
    drafts: list[ArticleDraft] = []
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for index, record in enumerate(records):
        where: tuple[str | int, ...] = ("body",) if single else ("body", index)
        try:
            drafts.append(draft_from_record(record, "body" if single else f"body[{index}]"))
        except InputError as exc:
            name = _field_of(exc.problem)
            errors.append(((*where, name) if name else where, exc.problem))
    if errors:
        raise InvalidFields(errors)
    return drafts


def post_articles(engine: Engine, clock: Clock, body: Any) -> dict[str, Any]:
    """Store one article or a batch (all or none): new ones added, known ones (same url or guid) updated.

    Validated as the JSON importer validates a file; a bad record rejects the whole
    request (InvalidFields naming each bad record and field). Returns the counts and
    each article's id, in the order given.
    """
    drafts = _drafts(body)
    now = clock.now()

    def store() -> dict[str, Any]:
        with session_scope(engine) as session:
            report = upsert_articles(session, drafts, now)
            stored = [_stored(session, d) for d in drafts]
        return {"inserted": report.inserted, "updated": report.updated, "merged": report.merged, "articles": stored}

    try:
        return store()
    except IntegrityError:
        # The same article posted by another request at the same moment: it exists now.
        return store()


def _stored(session: Session, draft: ArticleDraft) -> dict[str, Any]:
    """The id, url and guid of the article a draft was stored as (a merged one keeps its first guid)."""
    by_url = session.exec(select(Article).where(Article.url == draft.url)).first() if draft.url else None
    row = by_url or session.exec(select(Article).where(Article.guid == article_guid(draft))).first()
    if row is None:  # merged into an article written earlier in the batch under another guid
        return {"id": None, "url": draft.url, "guid": article_guid(draft)}
    return {"id": row.id, "url": row.url, "guid": row.guid}


def article_view(a: Article) -> dict[str, Any]:
    """An article as the API shows it (without its body)."""
    return {
        "id": a.id,
        "guid": a.guid,
        "url": a.url,
        "title": a.title,
        "summary": a.summary,
        "source": a.source,
        "category": a.category,
        "tags": list(a.tags),
        "author": a.author,
        "image_url": a.image_url,
        "language": a.language,
        "published_at": _iso(a.published_at),
        "dated": a.dated,
        "breaking": a.breaking,
        "priority": a.priority,
        "hidden": a.hidden,
        "lead": a.lead,
        "updated_at": _iso(a.updated_at),
    }


def list_articles(engine: Engine, clock: Clock, since: datetime | None, limit: int) -> dict[str, Any]:
    """The newest ``limit`` articles published after ``since`` (default: the last 24 hours), hidden ones too."""
    now = clock.now()
    start = since or now - timedelta(hours=24)
    with session_scope(engine) as session:
        rows = recent_articles(session, start, now + timedelta(days=3650), limit, include_hidden=True)
        return {"since": _iso(start), "articles": [article_view(a) for a in rows]}


def hide_article(engine: Engine, clock: Clock, article_id: int) -> None:
    """Hide an article, as ``digest articles hide`` does; NotFoundError for an unknown id."""
    if not 0 < article_id <= MAX_ID:
        raise NotFoundError(f"no article {article_id}")
    with session_scope(engine) as session:
        try:
            set_hidden(session, [article_id], True, clock.now())
        except NotFoundError:
            raise NotFoundError(f"no article {article_id}") from None


# ---------------------------------------------------------------- subscribers


@dataclass(frozen=True)
class SubscriberFields:
    """Subscriber fields of a request body; ``given`` names those the body set (the rest are defaults)."""

    given: frozenset[str]
    email: str = ""
    name: str = ""
    topics: tuple[str, ...] = ()
    timezone: str | None = None
    send_time: str | None = None
    frequency: str | None = None
    weekday: int | None = None
    breaking: bool | None = None
    locale: str | None = None
    alerts: bool | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    consent: dict[str, Any] | None = None


# What a pending subscriber's request may carry: the rest they choose once they confirmed.
PENDING_FIELDS = frozenset({"email", "name", "topics", "timezone", "locale", "consent"})


def subscriber_view(sub: Subscriber) -> dict[str, Any]:
    """A subscriber as the API shows them."""
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "topics": list(sub.topics),
        "timezone": sub.timezone,
        "send_time": sub.send_time,
        "frequency": sub.frequency,
        "weekday": sub.weekday,
        "breaking": sub.breaking,
        "locale": sub.locale,
        "alerts": sub.alerts,
        "quiet_start": sub.quiet_start,
        "quiet_end": sub.quiet_end,
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
    }


def _topics(session: Session, settings: Settings, topics: Sequence[str]) -> list[str]:
    known = known_topics(session, [cfg.sections for cfg in settings.digests.values()])
    return known.check([t.strip() for t in topics if t.strip()], "topics")


def _consent_detail(consent: dict[str, Any]) -> str:
    detail = json.dumps(consent, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(detail) > MAX_CONSENT:
        raise InputError("consent", f"at most {MAX_CONSENT} characters as JSON, got {len(detail)}")
    return detail


def create_subscriber(
    engine: Engine, settings: Settings, clock: Clock, mailer: NoticeSender, fields: SubscriberFields
) -> tuple[dict[str, Any], bool]:
    """Add a subscriber; returns ``(subscriber, created)``.

    Without ``consent``: pending, with the subscribe form's double opt-in (the
    confirmation mail, its throttle; an active address gets the "already subscribed"
    notice and does not change). With ``consent`` (the caller's proof, kept as the
    event of the confirmation): active at once, with every preference given; an
    existing subscriber is updated and made active. A suppressed address
    (unsubscribed, complained, bounced) needs the double opt-in: InputError on email.
    """
    email, key = normalise_email(fields.email, "email")
    if fields.consent is None:
        extra = sorted(fields.given - PENDING_FIELDS)
        if extra:
            raise InvalidFields(
                [(("body", f), "only with consent: a pending subscriber chooses it once confirmed") for f in extra]
            )
        with session_scope(engine) as session:
            _topics(session, settings, fields.topics)
            existed = find_subscriber(session, key) is not None
        form = SubscribeForm(
            email=email,
            name=fields.name,
            topics=fields.topics,
            timezone=fields.timezone,
            locale=validate_locale(fields.locale, "locale"),
        )
        request_subscription(engine, settings, clock, form, mailer, source="api")
        with session_scope(engine) as session:
            sub = find_subscriber(session, key)
            if sub is None:  # erased in between
                raise NotFoundError("the subscriber was deleted meanwhile")
            return subscriber_view(sub), not existed
    detail = _consent_detail(fields.consent)
    freq, weekday = _schedule(fields.frequency, fields.weekday)
    now = clock.now()
    with session_scope(engine) as session:
        if suppression_of(session.connection(), key) is not None:
            raise InputError(
                "email",
                "this address is suppressed (it left, complained or bounced): add it without consent, "
                "so its owner confirms by mail",
            )
        topics = _topics(session, settings, fields.topics)
        sub, created = add_subscriber(
            session,
            email,
            now,
            name=fields.name,
            timezone=validate_timezone(fields.timezone, "timezone"),
            topics=topics,
            status=SubscriberStatus.ACTIVE,
            send_time=validate_send_time(fields.send_time, "send_time"),
            frequency=freq if fields.given & {"frequency", "weekday"} else None,
            weekday=weekday,
            update=True,
            breaking=fields.breaking,
            locale=fields.locale,
            alerts=fields.alerts,
            quiet_start=fields.quiet_start,
            quiet_end=fields.quiet_end,
        )
        record_event(session, sub, SubscriberEventKind.CONFIRMED, now, source="api", ref="consent", detail=detail)
        log.info("subscriber %s %s with consent given through the API", sub.id, "added" if created else "activated")
        return subscriber_view(sub), created


def _schedule(frequency: str | None, weekday: int | None) -> tuple[str, int | None]:
    freq = frequency or ("weekly" if weekday is not None else "daily")
    return parse_frequency(freq, weekday)


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id) if 0 < subscriber_id <= MAX_ID else None
    if sub is None:
        raise NotFoundError(f"no subscriber {subscriber_id}")
    return sub


def get_subscriber(engine: Engine, subscriber_id: int) -> dict[str, Any]:
    """One subscriber; NotFoundError for an unknown id."""
    with session_scope(engine) as session:
        return subscriber_view(_subscriber(session, subscriber_id))


def find_subscribers(engine: Engine, email: str) -> dict[str, Any]:
    """The subscriber with this address (any case), as a list of none or one."""
    try:
        _, key = normalise_email(email, "email")
    except InputError as exc:
        raise InvalidFields([(("query", "email"), exc.problem)]) from None
    with session_scope(engine) as session:
        sub = find_subscriber(session, key)
        return {"subscribers": [subscriber_view(sub)] if sub is not None else []}


def update_subscriber(
    engine: Engine, settings: Settings, clock: Clock, subscriber_id: int, fields: SubscriberFields
) -> dict[str, Any]:
    """Change the preferences the body gives (the others stay), as the preferences page does.

    Recorded as a ``preferences`` event. The address and the status are not changed
    here (unsubscribe has its own endpoint; a new address needs its own opt-in).
    """
    now = clock.now()
    given = fields.given
    with session_scope(engine) as session:
        sub = _subscriber(session, subscriber_id)
        if "topics" in given:
            sub.topics = _topics(session, settings, fields.topics)
        if "timezone" in given:
            sub.timezone = validate_timezone(fields.timezone, "timezone")
        if "send_time" in given:
            sub.send_time = validate_send_time(fields.send_time, "send_time")
        if "frequency" in given or "weekday" in given:
            freq = fields.frequency if "frequency" in given else sub.frequency
            day = fields.weekday if "weekday" in given else sub.weekday
            if freq == "daily" and "frequency" not in given and day is not None:
                freq = "weekly"  # a day alone asks for a weekly digest
            sub.frequency, sub.weekday = parse_frequency(freq, day)
        if "breaking" in given and fields.breaking is not None:
            sub.breaking = fields.breaking
        if "name" in given:
            sub.name = fields.name.strip()[:200]
        if "locale" in given:
            sub.locale = validate_locale(fields.locale, "locale")
        if "alerts" in given and fields.alerts is not None:
            sub.alerts = fields.alerts
        if "quiet_start" in given or "quiet_end" in given:
            sub.quiet_start, sub.quiet_end = validate_quiet_hours(
                fields.quiet_start if "quiet_start" in given else sub.quiet_start,
                fields.quiet_end if "quiet_end" in given else sub.quiet_end,
                "quiet_start",
            )
        sub.updated_at = now
        session.add(sub)
        record_event(session, sub, SubscriberEventKind.PREFERENCES, now, source="api")
        return subscriber_view(sub)


def unsubscribe_subscriber(engine: Engine, clock: Clock, subscriber_id: int) -> dict[str, Any]:
    """Unsubscribe (and suppress the address), as the unsubscribe link does; idempotent."""
    now = clock.now()
    with session_scope(engine) as session:
        sub = _subscriber(session, subscriber_id)
        unsubscribe(session, sub, now, source="api")
        return subscriber_view(sub)


def delete_subscriber(engine: Engine, clock: Clock, subscriber_id: int) -> None:
    """Erase a subscriber (GDPR), as their own "delete my data" does: only the address's suppression hash stays."""
    with session_scope(engine) as session:
        sub = _subscriber(session, subscriber_id)
        erase_subscriber(session.connection(), saved_id(sub), clock.now())


# ---------------------------------------------------------------- editions


def edition_view(session: Session, e: Edition) -> dict[str, Any]:
    """An edition and how many of its deliveries are in each status."""
    return {
        "id": e.id,
        "digest": e.digest,
        "slot": e.slot,
        "status": e.status,
        "built_at": _iso(e.built_at),
        "sent_at": _iso(e.sent_at),
        "article_count": e.article_count,
        "deliveries": delivery_counts(session, saved_id(e)),
    }


def list_editions(engine: Engine, digest: str | None, limit: int) -> dict[str, Any]:
    """The newest ``limit`` editions (of one digest, if given), with their delivery counts."""
    with session_scope(engine) as session:
        stmt = select(Edition).order_by(col(Edition.id).desc()).limit(limit)
        if digest:
            stmt = stmt.where(Edition.digest == digest)
        return {"editions": [edition_view(session, e) for e in session.exec(stmt).all()]}


def get_edition(engine: Engine, edition_id: int) -> dict[str, Any]:
    """One edition with its delivery counts; NotFoundError for an unknown id."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id) if 0 < edition_id <= MAX_ID else None
        if edition is None:
            raise NotFoundError(f"no edition {edition_id}")
        return edition_view(session, edition)
