"""The store's tables (SQLModel).

Uniqueness lives in the schema, not in Python checks: an article per url and per
guid, a subscriber per lower-cased email, an edition per (digest, slot), a delivery
per (edition, subscriber). That is what makes re-imports, retries and concurrent
workers safe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum, nonmember
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes, stored as UTC on every backend.

    SQLite has no timezone type and would hand back naive values; this keeps the
    application's rule (every datetime is aware) true on SQLite and PostgreSQL alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Saved(Protocol):
    id: int | None


def saved_id(row: _Saved) -> int:
    """The primary key of a row read from the database or flushed to it.

    Every table's ``id`` is ``None`` only until the row is first flushed; asking for
    the id of such a row is a bug in the caller, reported as ValueError.
    """
    if row.id is None:
        raise ValueError(f"{type(row).__name__} row has no id yet: flush it first")
    return row.id


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


# The statuses are StrEnums: a member is its value (``SubscriberStatus.ACTIVE == "active"``),
# so columns keep storing and returning plain strings. The tuples (``ALL``, ``PENDING``)
# are ``nonmember``s: groups of values, not statuses of their own.


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    ALL = nonmember((PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED))


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED_TEMPORARY = "failed_temporary"
    FAILED_PERMANENT = "failed_permanent"
    # Not sent by design: the subscriber left, or their topics had nothing new.
    SKIPPED = "skipped"
    ALL = nonmember((QUEUED, CLAIMED, SENT, FAILED_TEMPORARY, FAILED_PERMANENT, SKIPPED))
    # Still to be sent (or retried) by some worker.
    PENDING = nonmember((QUEUED, CLAIMED, FAILED_TEMPORARY))


class EditionKind(StrEnum):
    """What an edition is: a scheduled digest, or a breaking alert carrying one article."""

    DIGEST = "digest"
    ALERT = "alert"


class EditionStatus(StrEnum):
    READY = "ready"
    SENDING = "sending"
    SENT = "sent"
    EMPTY = "empty"
    SKIPPED = "skipped"


class Article(SQLModel, table=True):
    """One news article, sanitised on ingest."""

    id: int | None = Field(default=None, primary_key=True)
    guid: str = Field(sa_column=Column(String(1024), nullable=False, unique=True))
    url: str | None = Field(default=None, sa_column=Column(String(2048), nullable=True, unique=True))
    source: str = Field(default="", max_length=200)
    title: str = Field(sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    category: str = Field(default="", max_length=200, index=True)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    author: str = Field(default="", max_length=300)
    image_url: str | None = Field(default=None, sa_column=Column(String(2048), nullable=True))
    image_alt: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # Declared pixel size of the image, when the source gives one (None: unknown).
    image_width: int | None = Field(default=None)
    image_height: int | None = Field(default=None)
    # BCP 47 language tag of the article (feed/entry xml:lang, <language>); "" = unknown.
    language: str = Field(default="", max_length=35)
    published_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    ingested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    breaking: bool = Field(default=False)
    priority: int = Field(default=0)
    word_count: int = Field(default=0)
    # False when the source gave no date: published_at is then the first time it was seen.
    dated: bool = Field(default=True)
    # Kept out of new editions, of the stored editions' pages and resends (``digest articles hide``).
    hidden: bool = Field(default=False)
    # The editor's lead-in (plain text): the bold opening line of a top story; "" = none,
    # the summary's first sentence stands in (``digest articles lead``).
    lead: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Subscriber(SQLModel, table=True):
    """A person on the list. ``email_key`` is the lower-cased address, unique."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), nullable=False))
    email_key: str = Field(sa_column=Column(String(320), nullable=False, unique=True))
    name: str = Field(default="", max_length=200)
    status: str = Field(default=SubscriberStatus.ACTIVE, max_length=20, index=True)
    timezone: str | None = Field(default=None, max_length=64)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    # Breaking stories outside ``topics`` too (the default); False: only their topics.
    breaking: bool = Field(default=True)
    # BCP 47 tag of the language their copies and pages are in; None: the digest's ``language``.
    locale: str | None = Field(default=None, max_length=35)
    # Breaking alerts by email (``alert_priority``, ``alerts_per_day``); off unless asked for.
    alerts: bool = Field(default=False)
    # Local "HH:MM" times (their timezone) between which no alert is sent; None: no quiet hours.
    # start > end spans midnight (22:00-07:00).
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    send_time: str | None = Field(default=None, max_length=5)
    frequency: str = Field(default="daily", max_length=10)
    weekday: int | None = Field(default=None)
    bounce_count: int = Field(default=0)
    # Deliveries in a row that the server deferred for this recipient (4xx at RCPT/DATA);
    # reset by a delivery it accepted. The sunset rule stops mailing at ``sunset_soft_bounces``.
    soft_bounce_streak: int = Field(default=0)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Edition(SQLModel, table=True):
    """One issue of a digest for one slot (e.g. ``daily`` for ``2026-11-25``)."""

    __table_args__ = (UniqueConstraint("digest", "slot", name="uq_edition_digest_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=100, index=True)
    slot: str = Field(max_length=64)
    status: str = Field(default=EditionStatus.READY, max_length=20)
    # An alert edition's slot is ``alert-ARTICLE_ID``: one alert per article and digest, ever.
    kind: str = Field(default=EditionKind.DIGEST, max_length=10)
    built_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    article_count: int = Field(default=0)


class EditionArticle(SQLModel, table=True):
    """The ordered article list of an edition."""

    __tablename__ = "edition_article"

    edition_id: int = Field(foreign_key="edition.id", primary_key=True)
    article_id: int = Field(foreign_key="article.id", primary_key=True, index=True)
    position: int
    section: str = Field(default="", max_length=200)


class EditionLeftOut(SQLModel, table=True):
    """A fresh story an edition left out, and why: a repeat of ``kept_id``, or the edition was full.

    Stored with the edition so every later send, resend or preview of it reports the
    same stories as the run that built it. Article ids carry no foreign key: removing
    an article (``digest articles remove``) deletes its rows here explicitly.
    """

    __tablename__ = "edition_left_out"

    edition_id: int = Field(foreign_key="edition.id", primary_key=True)
    article_id: int = Field(primary_key=True)
    # The kept story it repeats; None: left out because the edition was full (max_articles).
    kept_id: int | None = Field(default=None)
    reason: str = Field(default="", max_length=200)
    position: int = Field(default=0)


class Delivery(SQLModel, table=True):
    """One edition to one subscriber: the outbox row and its outcome."""

    # No foreign keys and no index the queries do not use: queueing an edition writes
    # a million of these at once (see migration 0010). The unique pair also serves
    # every query by edition.
    __table_args__ = (UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),)

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int
    subscriber_id: int = Field(index=True)
    status: str = Field(default=DeliveryStatus.QUEUED, max_length=20)
    attempts: int = Field(default=0)
    last_response: str | None = Field(default=None, max_length=1000)
    message_id: str | None = Field(default=None, max_length=300)
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# ---------------------------------------------------------------- service (feeds, scheduler)


class FeedStatus(StrEnum):
    NEW = "new"
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    # Some entries were stored, some were not (a malformed feed, bad entries).
    PARTIAL = "partial"
    ERROR = "error"


class Feed(SQLModel, table=True):
    """An RSS/Atom feed the service polls on its own interval."""

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2048), nullable=False, unique=True))
    category: str = Field(default="", max_length=200)
    every_seconds: int = Field(default=900)
    etag: str | None = Field(default=None, sa_column=Column(String(1024), nullable=True))
    last_modified: str | None = Field(default=None, max_length=100)
    status: str = Field(default=FeedStatus.NEW, max_length=20)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failures: int = Field(default=0)
    last_new: int = Field(default=0)
    last_polled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    last_ok_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    next_poll_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SlotClaim(SQLModel, table=True):
    """A subscriber's local day taken by one edition of a digest.

    The unique (digest, subscriber, local_day) is what guarantees that nobody gets
    two editions of a digest for the same day in their own timezone, whatever
    their send time or timezone did in between.
    """

    __tablename__ = "slot_claim"
    __table_args__ = (UniqueConstraint("digest", "subscriber_id", "local_day", name="uq_slot_claim_day"),)

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=100)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    local_day: str = Field(max_length=10)
    edition_id: int = Field(foreign_key="edition.id", index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ServiceNode(SQLModel, table=True):
    """A running ``digest serve`` process, as last seen (for ``digest status``)."""

    __tablename__ = "service_node"

    worker: str = Field(sa_column=Column(String(200), primary_key=True))
    hostname: str = Field(default="", max_length=200)
    pid: int = Field(default=0)
    leader: bool = Field(default=False)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class WarmupDay(SQLModel, table=True):
    """How many deliveries were queued on one day of the warm-up schedule (``[delivery.warmup]``).

    Counted in the transaction that queues them: today's use is one primary-key read
    however many million deliveries there are, and the row's lock keeps two processes
    queueing at once within the day's cap.
    """

    __tablename__ = "warmup_day"

    # The ISO date of the warm-up day, in ``delivery.warmup.timezone``.
    day: str = Field(sa_column=Column(String(10), primary_key=True))
    queued: int = Field(default=0)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# ---------------------------------------------------------------- delivery engine

# The outbox's work list: only deliveries still to be sent are in it, so claiming
# the next batch stays an index range scan however many million rows were sent.
Index(
    "ix_delivery_pending",
    Delivery.__table__.c.edition_id,  # type: ignore[attr-defined]
    Delivery.__table__.c.id,  # type: ignore[attr-defined]
    sqlite_where=Delivery.__table__.c.status.in_(DeliveryStatus.PENDING),  # type: ignore[attr-defined]
    postgresql_where=Delivery.__table__.c.status.in_(DeliveryStatus.PENDING),  # type: ignore[attr-defined]
)
# A sender's own claims (lease extension, release, recovery after a crash); a queued
# row is not in it, so queueing does not pay for it.
Index(
    "ix_delivery_claimed",
    Delivery.__table__.c.claimed_by,  # type: ignore[attr-defined]
    sqlite_where=Delivery.__table__.c.status == DeliveryStatus.CLAIMED,  # type: ignore[attr-defined]
    postgresql_where=Delivery.__table__.c.status == DeliveryStatus.CLAIMED,  # type: ignore[attr-defined]
)


# The send rate of /metrics counts what was sent in the last minutes: a range scan, not
# the whole table. Partial, so queueing a million rows (sent_at NULL) does not pay for it.
Index(
    "ix_delivery_sent_at",
    Delivery.__table__.c.sent_at,  # type: ignore[attr-defined]
    sqlite_where=Delivery.__table__.c.sent_at.isnot(None),  # type: ignore[attr-defined]
    postgresql_where=Delivery.__table__.c.sent_at.isnot(None),  # type: ignore[attr-defined]
)


# ---------------------------------------------------------------- web (subscriber lifecycle)


class SubscriberEventKind(StrEnum):
    """What happened to a subscriber: the consent and bounce trail."""

    SUBSCRIBE_REQUEST = "subscribe_request"
    CONFIRM_SENT = "confirm_sent"
    CONFIRMED = "confirmed"
    PREFERENCES = "preferences"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCE_PERMANENT = "bounce_permanent"
    BOUNCE_TEMPORARY = "bounce_temporary"
    # The sunset rule: too many deliveries in a row deferred, so mailing stopped (status ``bounced``).
    SUNSET = "sunset"
    # A feedback report (ARF) from a mailbox provider: the subscriber marked a message as spam.
    COMPLAINT = "complaint"


class SubscriberEvent(SQLModel, table=True):
    """One lifecycle event of a subscriber (consent proof, bounces, throttling).

    Deleted with the subscriber (ON DELETE CASCADE): erasure leaves no trail.
    ``ref`` is the Message-ID of the inbound mail that caused it, so reading the
    same bounce twice counts it once (for a failure while sending: the Message-ID
    of the message sent).
    """

    __tablename__ = "subscriber_event"
    __table_args__ = (Index("ix_subscriber_event_sub_kind", "subscriber_id", "kind", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False)
    )
    kind: str = Field(max_length=30)
    source: str = Field(default="", max_length=30)
    ref: str | None = Field(default=None, max_length=300, index=True)
    detail: str = Field(default="", max_length=1000)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


def event_values(
    subscriber_id: int, kind: str, now: datetime, *, source: str = "", ref: str | None = None, detail: str = ""
) -> dict[str, Any]:
    """The column values of one subscriber event, cut to the columns' sizes.

    The one way events are written, as an ORM object (``SubscriberEvent(**values)``)
    or as a set-based insert on a connection.
    """
    return {
        "subscriber_id": subscriber_id,
        "kind": kind,
        "source": source[:30],
        "ref": ref,
        "detail": detail[:1000],
        "created_at": now,
    }


# ---------------------------------------------------------------- list hygiene


class SuppressionReason(StrEnum):
    """Why an address may not be mailed."""

    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"
    BOUNCED = "bounced"
    MANUAL = "manual"
    ALL = nonmember((UNSUBSCRIBED, COMPLAINED, BOUNCED, MANUAL))


class Suppression(SQLModel, table=True):
    """An address that gets no digest until its owner confirms again.

    Keyed by the SHA-256 of the lower-cased address, not by subscriber: it survives
    deleting the subscriber, so a re-import of the address is caught. ``email`` is
    kept for the operator (list, export) and may be blanked for erasure; the hash
    alone still blocks the address.
    """

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    email: str = Field(default="", sa_column=Column(String(320), nullable=False, default=""))
    reason: str = Field(max_length=20)
    source: str = Field(default="", max_length=30)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class EditionComplaint(SQLModel, table=True):
    """One subscriber's complaint about one edition: the numerator of its complaint rate.

    ``subscriber_id`` has no foreign key: the complaint still counts after the
    subscriber is deleted.
    """

    __tablename__ = "edition_complaint"
    __table_args__ = (UniqueConstraint("edition_id", "subscriber_id", name="uq_edition_complaint"),)

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id", index=True)
    subscriber_id: int
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DigestPause(SQLModel, table=True):
    """A digest whose sending is paused (too many complaints) until an operator resumes it."""

    __tablename__ = "digest_pause"

    digest: str = Field(sa_column=Column(String(100), primary_key=True))
    reason: str = Field(default="", max_length=1000)
    edition_id: int | None = Field(default=None)
    paused_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ProviderPause(SQLModel, table=True):
    """A mailbox provider that deferred or refused our mail, paused for every sender process.

    The sender that got the reply writes it; every sender reads the active ones
    between batches, and ``digest status`` shows them.
    """

    __tablename__ = "provider_pause"

    provider: str = Field(sa_column=Column(String(50), primary_key=True))
    paused_until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # The rule and the server's reply, addresses masked.
    reason: str = Field(default="", max_length=300)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# ---------------------------------------------------------------- API keys


class ApiKey(SQLModel, table=True):
    """A bearer key of the REST API (``digest apikeys``).

    Only the SHA-256 of the key is stored: the key itself is printed once, when it is
    made. ``prefix`` (the key's public first part) finds the row; ``scopes`` is a
    comma-separated list. ``rate_window``/``rate_count`` count the requests of the
    current minute, shared by every web process on the same database.
    """

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    prefix: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    scopes: str = Field(default="", max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    rate_window: int = Field(default=0)
    rate_count: int = Field(default=0)


# ---------------------------------------------------------------- webhooks out


class WebhookEventType(StrEnum):
    """The events an endpoint can ask for (``digest webhooks add URL --events ...``)."""

    DELIVERY_SENT = "delivery.sent"
    DELIVERY_FAILED = "delivery.failed"
    SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed"
    SUBSCRIBER_BOUNCED = "subscriber.bounced"
    SUBSCRIBER_COMPLAINED = "subscriber.complained"
    EDITION_SENT = "edition.sent"
    ALL = nonmember(
        (
            DELIVERY_SENT,
            DELIVERY_FAILED,
            SUBSCRIBER_UNSUBSCRIBED,
            SUBSCRIBER_BOUNCED,
            SUBSCRIBER_COMPLAINED,
            EDITION_SENT,
        )
    )


class Webhook(SQLModel, table=True):
    """An endpoint that receives signed POSTs of the events it asked for, and its health.

    ``secret`` signs every POST (HMAC-SHA256); it is shown once, at ``webhooks add``.
    A disabled endpoint (``disabled_at`` set) gets no new events; those already
    queued wait for ``digest webhooks enable``.
    """

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    secret: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    consecutive_failures: int = Field(default=0)
    last_success_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    last_failure_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class WebhookEvent(SQLModel, table=True):
    """One event queued for one endpoint: the transactional outbox of webhooks.

    Written in the transaction of the change it reports; deleted once the endpoint
    answered 2xx. ``payload`` is the JSON body (for delivery events: the delivery ids,
    expanded when POSTed); every retry goes under the same ``webhook-id``.
    """

    __tablename__ = "webhook_event"
    __table_args__ = (Index("ix_webhook_event_due", "webhook_id", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(sa_column=Column(Integer, ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False))
    event_type: str = Field(max_length=40)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
