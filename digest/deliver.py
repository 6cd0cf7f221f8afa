"""Deliver: editions, the outbox of Delivery rows, and the send loop.

- An edition is created once per (digest, slot): the unique constraint, not a
  Python check, settles a race between two processes.
- Deliveries of an edition are created set-based (INSERT ... SELECT ... ON CONFLICT
  DO NOTHING), then claimed in batches with a lease, sent, and their results
  written back in batches. Running a send again claims only what is still due, so
  nobody gets the same edition twice.
- Rendering and CSS inlining run once per content variant (subscribers with the
  same topics), never per subscriber.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import jinja2
from sqlalchemy import and_, insert, literal, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digest.clock import Clock
from digest.db import session_scope
from digest.errors import DeliveryError, PermanentFailure, TemporaryFailure
from digest.inline import inline_css
from digest.message import PreparedMessage, Recipient, address_domain
from digest.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionArticle,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.render import Markers, build_context, make_environment, render_variant
from digest.select import EditionContent, edition_date, edition_slot, select_articles, to_story, window
from digest.settings import DigestConfig, Settings
from digest.store import recent_articles
from digest.tokens import make_token
from digest.transport import Transport

if TYPE_CHECKING:
    from digest.dkim import Signer

log = logging.getLogger(__name__)

# After this many consecutive connection-level failures the server is treated as
# down: the run stops and releases its claims instead of burning every retry.
CIRCUIT_BREAKER_FAILURES = 3


# ---------------------------------------------------------------- editions


def carried_articles(session: Session, digest: str, exclude_slot: str) -> tuple[set[int], set[str]]:
    """Article ids and urls that earlier editions of ``digest`` already carried."""
    rows = session.exec(
        select(EditionArticle.article_id, Article.url)
        .join(Edition, col(Edition.id) == EditionArticle.edition_id)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(Edition.digest == digest, Edition.slot != exclude_slot)
    ).all()
    return {r[0] for r in rows}, {r[1] for r in rows if r[1]}


def compute_content(
    session: Session, settings: Settings, name: str, cfg: DigestConfig, now: datetime
) -> EditionContent:
    """What the edition due at ``now`` would contain (reads the store, writes nothing)."""
    since, until = window(cfg, now)
    carried, carried_urls = carried_articles(session, name, edition_slot(cfg, now))
    return select_articles(
        recent_articles(session, since, until),
        cfg,
        now,
        carried=carried,
        carried_urls=carried_urls,
        base_url=settings.base_url,
    )


def load_content(session: Session, settings: Settings, cfg: DigestConfig, edition: Edition) -> EditionContent:
    """The stored article list of an existing edition."""
    rows = session.exec(
        select(EditionArticle, Article)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(EditionArticle.edition_id == edition.id)
        .order_by(col(EditionArticle.position))
    ).all()
    stories = tuple(to_story(a, settings.base_url) for _, a in rows)
    section_of = {ea.article_id: ea.section for ea, _ in rows}
    order = list(dict.fromkeys(ea.section for ea, _ in rows))
    if cfg.sections:
        order = [s for s in cfg.sections if s in order] + [s for s in order if s not in cfg.sections]
    return EditionContent(ranked=stories, section_of=section_of, section_order=tuple(order))


def find_edition(session: Session, digest: str, slot: str) -> Edition | None:
    return session.exec(select(Edition).where(Edition.digest == digest, Edition.slot == slot)).first()


def get_or_build_edition(
    engine: Engine, settings: Settings, name: str, now: datetime
) -> tuple[Edition, EditionContent, bool]:
    """The edition of ``name`` for the slot due at ``now``: found, or built and stored.

    Returns ``(edition, content, created)``. Two processes racing to build the same
    slot both end up with the one row the unique constraint let through.
    """
    _, cfg = settings.digest(name)
    slot = edition_slot(cfg, now)
    with session_scope(engine) as session:
        existing = find_edition(session, name, slot)
        if existing is not None:
            return existing, load_content(session, settings, cfg, existing), False
        content = compute_content(session, settings, name, cfg, now)
    try:
        with session_scope(engine) as session:
            empty = not content.ranked
            edition = Edition(
                digest=name,
                slot=slot,
                built_at=now,
                article_count=len(content.ranked),
                status=EditionStatus.EMPTY if empty and not cfg.send_empty else EditionStatus.READY,
            )
            session.add(edition)
            session.flush()
            assert edition.id is not None
            for pos, story in enumerate(content.ranked):
                session.add(
                    EditionArticle(
                        edition_id=edition.id,
                        article_id=story.id,
                        position=pos,
                        section=content.section_of[story.id],
                    )
                )
        return edition, content, True
    except IntegrityError:
        with session_scope(engine) as session:
            existing = find_edition(session, name, slot)
            assert existing is not None
            return existing, load_content(session, settings, cfg, existing), False


def queue_deliveries(session: Session, edition_id: int, now: datetime) -> int:
    """Create a queued Delivery for every active subscriber, in one statement.

    Existing deliveries are left alone (ON CONFLICT DO NOTHING on the unique
    (edition, subscriber) pair), so this is safe to run again and concurrently.
    """
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else insert
    source = select(
        literal(edition_id),
        col(Subscriber.id),
        literal(DeliveryStatus.QUEUED),
        literal(0),
        literal(now, type_=Delivery.__table__.c.created_at.type),  # type: ignore[attr-defined]
    ).where(Subscriber.status == SubscriberStatus.ACTIVE)
    stmt = ins(Delivery.__table__).from_select(  # type: ignore[attr-defined]
        ["edition_id", "subscriber_id", "status", "attempts", "created_at"], source
    )
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    # psycopg reports no rowcount (-1) for a compiled INSERT ... SELECT, so the number
    # created is measured; under concurrent queueing it includes the others' rows.
    before = _count_deliveries(session, edition_id)
    session.execute(stmt)
    return _count_deliveries(session, edition_id) - before


def _count_deliveries(session: Session, edition_id: int) -> int:
    from sqlalchemy import func

    return int(session.exec(select(func.count()).where(Delivery.edition_id == edition_id)).one())


# ---------------------------------------------------------------- variants


def recipient_for(settings: Settings, sub: Subscriber) -> Recipient:
    """The personal values of ``sub``'s copy: address, name and signed links."""
    key = settings.secret_key.get_secret_value()
    assert sub.id is not None
    unsub = make_token(key, "unsubscribe", sub.id, sub.email_key)
    prefs = make_token(key, "preferences", sub.id, sub.email_key)
    mailbox = settings.unsubscribe_address or f"unsubscribe@{address_domain(settings.from_addr)}"
    return Recipient(
        email=sub.email,
        name=sub.name,
        subscriber_id=sub.id,
        unsubscribe_url=f"{settings.base_url}/unsubscribe/{unsub}",
        preferences_url=f"{settings.base_url}/preferences/{prefs}",
        unsubscribe_mailto=f"mailto:{mailbox}?subject={quote('unsubscribe ' + unsub)}",
    )


def test_recipient(settings: Settings, email: str, name: str = "") -> Recipient:
    """A recipient that is not a subscriber (``send --to``, previews): inert links."""
    mailbox = settings.unsubscribe_address or f"unsubscribe@{address_domain(settings.from_addr)}"
    return Recipient(
        email=email,
        name=name,
        subscriber_id=None,
        unsubscribe_url=f"{settings.base_url}/unsubscribe/preview",
        preferences_url=f"{settings.base_url}/preferences/preview",
        unsubscribe_mailto=f"mailto:{mailbox}?subject=unsubscribe",
    )


@dataclass
class Variants:
    """Prepared messages of one edition, one per content variant, built on first use."""

    settings: Settings
    name: str
    cfg: DigestConfig
    slot: str
    when: datetime
    content: EditionContent
    env: jinja2.Environment
    inline: Callable[[str], str] = inline_css
    _cache: dict[tuple[str, ...], PreparedMessage | None] = field(default_factory=dict)

    def for_topics(self, topics: Iterable[str]) -> PreparedMessage | None:
        """The prepared message for subscribers with ``topics``; None when it would be empty."""
        key = self.content.variant_key(topics)
        if key not in self._cache:
            self._cache[key] = self._prepare(key)
        return self._cache[key]

    def _prepare(self, key: tuple[str, ...]) -> PreparedMessage | None:
        view = self.content.view(key if key != ("\x00none",) else ("\x00none",))
        if view.is_empty and not self.cfg.send_empty:
            return None
        markers = Markers.new()
        context = build_context(
            digest_name=self.name,
            digest_title=self.cfg.title,
            edition_date=edition_date(self.cfg, self.when),
            slot=self.slot,
            view=view,
            base_url=self.settings.base_url,
            postal_address=self.settings.postal_address,
            markers=markers,
        )
        rendered = render_variant(self.env, self.cfg.template, self.cfg.subject, context, markers)
        from_addr = self.cfg.from_addr or self.settings.from_addr
        return PreparedMessage(
            rendered,
            inlined_html=self.inline(rendered.html),
            from_addr=from_addr,
            reply_to=self.cfg.reply_to,
            list_id=list_id(self.name, self.cfg, from_addr),
            digest=self.name,
            slot=self.slot,
        )

    @property
    def prepared_count(self) -> int:
        return len(self._cache)


def list_id(name: str, cfg: DigestConfig, from_addr: str) -> str:
    if cfg.list_id:
        return cfg.list_id
    return f"{cfg.title} <{name}.{address_domain(from_addr)}>"


def make_variants(settings: Settings, name: str, slot: str, when: datetime, content: EditionContent) -> Variants:
    _, cfg = settings.digest(name)
    return Variants(settings, name, cfg, slot, when, content, make_environment(settings.templates_dir))


# ---------------------------------------------------------------- sending


@dataclass
class SendReport:
    """What one send run did. ``skipped`` counts subscribers already sent to before."""

    edition_id: int | None = None
    slot: str = ""
    queued: int = 0
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    skipped: int = 0
    already_sent: int = 0
    empty: bool = False
    variants: int = 0

    @property
    def failed(self) -> int:
        return self.failed_temporary + self.failed_permanent


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Exponential back-off with full jitter, capped at 6 hours."""
    base = settings.retry_base.total_seconds() * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(base, 6 * 3600) * (0.5 + random.random() / 2))


def _claim(session: Session, edition_id: int, now: datetime, lease: timedelta, worker: str, limit: int) -> list[int]:
    due = or_(
        col(Delivery.status) == DeliveryStatus.QUEUED,
        and_(col(Delivery.status) == DeliveryStatus.FAILED_TEMPORARY, col(Delivery.next_attempt_at) <= now),
        and_(col(Delivery.status) == DeliveryStatus.CLAIMED, col(Delivery.lease_until) < now),
    )
    stmt = select(Delivery.id).where(Delivery.edition_id == edition_id, due).order_by(col(Delivery.id)).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = [i for i in session.exec(stmt).all() if i is not None]
    if ids:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(status=DeliveryStatus.CLAIMED, claimed_by=worker, lease_until=now + lease)
        )
    return ids


def send_edition(
    engine: Engine,
    settings: Settings,
    variants: Variants,
    edition_id: int,
    transport: Transport,
    clock: Clock,
    *,
    progress: Callable[[int], None] | None = None,
    worker: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    signer: Signer | None = None,
) -> SendReport:
    """Send every due delivery of the edition, recording each result.

    With ``signer`` (e.g. :class:`digest.dkim.DkimSigner`) every message is signed
    right after it is filled.

    Raises DeliveryError when the SMTP server looks down (after releasing the claims,
    so nothing is lost); per-recipient failures are recorded, not raised.
    """
    worker = worker or worker_id()
    report = SendReport(edition_id=edition_id, slot=variants.slot)
    consecutive_conn_failures = 0
    while not should_stop():
        now = clock.now()
        with session_scope(engine) as session:
            ids = _claim(session, edition_id, now, settings.lease, worker, settings.batch_size)
        if not ids:
            break
        with session_scope(engine) as session:
            rows = session.exec(
                select(Delivery, Subscriber)
                .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
                .where(col(Delivery.id).in_(ids))
                .order_by(col(Delivery.id))
            ).all()
        results: list[dict[str, object]] = []
        bounced: list[int] = []
        breaker: DeliveryError | None = None
        for delivery, sub in rows:
            result: dict[str, object] = {"id": delivery.id, "claimed_by": None, "lease_until": None}
            results.append(result)
            if breaker is not None or should_stop():
                result["status"] = DeliveryStatus.QUEUED  # released untouched
                continue
            if sub.status != SubscriberStatus.ACTIVE:
                result.update(status=DeliveryStatus.SKIPPED, last_response="subscriber no longer active")
                report.skipped += 1
                continue
            prepared = variants.for_topics(sub.topics)
            if prepared is None:
                result.update(status=DeliveryStatus.SKIPPED, last_response="nothing new in the subscriber's topics")
                report.skipped += 1
                continue
            recipient = recipient_for(settings, sub)
            msgid = prepared.message_id(recipient)
            data = prepared.fill(recipient, clock.now(), msgid)
            if signer is not None:
                data = signer.sign(data)
            attempts = delivery.attempts + 1
            result.update(attempts=attempts, message_id=msgid)
            try:
                answer = transport.send(prepared.envelope_from, recipient.email, data)
            except TemporaryFailure as exc:
                conn_level = exc.code is None or exc.code == 421
                consecutive_conn_failures = consecutive_conn_failures + 1 if conn_level else 0
                too_old = now - delivery.created_at > settings.retry_max_age
                if consecutive_conn_failures >= CIRCUIT_BREAKER_FAILURES:
                    breaker = DeliveryError(f"SMTP server unavailable, stopping this run: {exc}")
                status = DeliveryStatus.FAILED_PERMANENT if too_old else DeliveryStatus.FAILED_TEMPORARY
                result.update(
                    status=status,
                    last_response=str(exc)[:1000],
                    next_attempt_at=None if too_old else clock.now() + backoff(settings, attempts),
                )
                if too_old:
                    report.failed_permanent += 1
                else:
                    report.failed_temporary += 1
                log.warning("delivery %s failed temporarily: %s", delivery.id, exc)
            except PermanentFailure as exc:
                consecutive_conn_failures = 0
                result.update(status=DeliveryStatus.FAILED_PERMANENT, last_response=str(exc)[:1000])
                report.failed_permanent += 1
                assert sub.id is not None
                bounced.append(sub.id)
                log.warning("delivery %s failed permanently: %s", delivery.id, exc)
            else:
                consecutive_conn_failures = 0
                result.update(status=DeliveryStatus.SENT, last_response=answer[:1000], sent_at=clock.now())
                report.sent += 1
                if progress:
                    progress(1)
        _record(engine, settings, results, bounced, clock.now())
        if breaker is not None:
            raise breaker
    report.variants = variants.prepared_count
    return report


def _record(
    engine: Engine, settings: Settings, results: Sequence[dict[str, object]], bounced: list[int], now: datetime
) -> None:
    """Write a batch of results in one transaction (bulk UPDATE by primary key)."""
    if not results:
        return
    with session_scope(engine) as session:
        # Group by key set: executemany needs the same columns in every row.
        groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for r in results:
            groups.setdefault(tuple(sorted(r)), []).append(r)
        for rows in groups.values():
            session.execute(update(Delivery), rows)
        for sub_id in bounced:
            sub = session.get(Subscriber, sub_id)
            if sub is None:
                continue
            sub.bounce_count += 1
            if sub.bounce_count >= settings.bounce_limit:
                sub.status = SubscriberStatus.BOUNCED
            sub.updated_at = now
            session.add(sub)


def delivery_counts(session: Session, edition_id: int) -> dict[str, int]:
    from sqlalchemy import func

    rows = session.exec(
        select(Delivery.status, func.count()).where(Delivery.edition_id == edition_id).group_by(Delivery.status)
    ).all()
    return {s: n for s, n in rows}


def finish_edition(engine: Engine, edition_id: int, now: datetime) -> str:
    """Mark the edition sent once nothing is left to send; return its status."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        counts = delivery_counts(session, edition_id)
        pending = sum(counts.get(s, 0) for s in DeliveryStatus.PENDING)
        if edition.status in (EditionStatus.READY, EditionStatus.SENDING):
            edition.status = EditionStatus.SENDING if pending else EditionStatus.SENT
            if not pending:
                edition.sent_at = now
            session.add(edition)
        return edition.status


def send_digest(
    engine: Engine,
    settings: Settings,
    name: str | None,
    transport: Transport,
    clock: Clock,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    inline: Callable[[str], str] = inline_css,
    signer: Signer | None = None,
) -> SendReport:
    """Build (or find) the current edition of a digest and deliver it to every active subscriber."""
    name, cfg = settings.digest(name)
    now = clock.now()
    edition, content, _ = get_or_build_edition(engine, settings, name, now)
    assert edition.id is not None
    report = SendReport(edition_id=edition.id, slot=edition.slot)
    if edition.status == EditionStatus.EMPTY:
        report.empty = True
        return report
    with session_scope(engine) as session:
        queue_deliveries(session, edition.id, now)
        counts = delivery_counts(session, edition.id)
    already = counts.get(DeliveryStatus.SENT, 0)
    due = sum(counts.get(s, 0) for s in DeliveryStatus.PENDING)
    if on_total:
        on_total(due)
    env = make_environment(settings.templates_dir)
    variants = Variants(settings, name, cfg, edition.slot, edition.built_at, content, env, inline)
    try:
        result = send_edition(
            engine, settings, variants, edition.id, transport, clock, progress=progress, signer=signer
        )
    finally:
        finish_edition(engine, edition.id, clock.now())
    result.already_sent = already
    result.queued = due
    return result


# ---------------------------------------------------------------- preview, dry-run, test copies


@dataclass
class TrialReport:
    """What a preview, dry-run or test send produced; nothing of it is recorded."""

    slot: str = ""
    sent: int = 0
    skipped: int = 0
    variants: int = 0
    warnings: list[str] = field(default_factory=list)


def current_content(
    session: Session, settings: Settings, name: str, now: datetime
) -> tuple[str, datetime, EditionContent]:
    """``(slot, built_at, content)`` of the edition due at ``now``, without storing anything.

    An edition already built for the slot is shown as stored, so a preview after a
    send shows exactly what went out.
    """
    _, cfg = settings.digest(name)
    slot = edition_slot(cfg, now)
    existing = find_edition(session, name, slot)
    if existing is not None:
        return slot, existing.built_at, load_content(session, settings, cfg, existing)
    return slot, now, compute_content(session, settings, name, cfg, now)


def send_test(
    session: Session,
    settings: Settings,
    name: str,
    emails: Sequence[str],
    transport: Transport,
    clock: Clock,
    signer: Signer | None = None,
) -> TrialReport:
    """Send the current edition to ``emails`` through ``transport``, recording nothing.

    The same variant preparation and per-recipient fill as a real send: a subscriber
    gets their own topics and links; any other address gets the full edition.
    """
    from digest.checks import check_html
    from digest.subscribers import find_subscriber

    now = clock.now()
    slot, built_at, content = current_content(session, settings, name, now)
    variants = make_variants(settings, name, slot, built_at, content)
    report = TrialReport(slot=slot)
    checked: set[int] = set()
    for email in emails:
        sub = find_subscriber(session, email)
        recipient = recipient_for(settings, sub) if sub else test_recipient(settings, email)
        prepared = variants.for_topics(sub.topics if sub else ())
        if prepared is None:
            report.skipped += 1
            continue
        data = prepared.fill(recipient, now)
        if signer is not None:
            data = signer.sign(data)
        transport.send(prepared.envelope_from, recipient.email, data)
        report.sent += 1
        if id(prepared) not in checked:
            checked.add(id(prepared))
            report.warnings += check_html(prepared.html, empty=not content.ranked)
    if not content.ranked and not report.warnings:
        report.warnings.append("the edition has no new articles")
    report.variants = variants.prepared_count
    return report


@dataclass
class PreviewResult:
    data: bytes
    html: str
    text: str
    warnings: list[str]


def preview_message(
    session: Session, settings: Settings, name: str, clock: Clock, email: str | None = None
) -> PreviewResult:
    """Exactly the message ``email`` (or a sample reader) would get now; records nothing."""
    import email as email_pkg
    from email import policy

    from digest.errors import NotFoundError
    from digest.subscribers import find_subscriber
    from digest.transport import MemoryTransport

    if email is not None and find_subscriber(session, email) is None:
        raise NotFoundError(f"no subscriber {email}")
    _, cfg = settings.digest(name)
    sink = MemoryTransport()
    # A sample reader sees everything; send_empty makes an empty edition previewable.
    if email is None:
        settings = settings.model_copy(deep=True)
        settings.digests[name] = cfg.model_copy(update={"send_empty": True})
    report = send_test(session, settings, name, [email or "reader@example.com"], sink, clock)
    if not sink.messages:
        raise NotFoundError(f"{email} would receive nothing: no new articles in their topics")
    data = sink.messages[0][2]
    msg = email_pkg.message_from_bytes(data, policy=policy.default)
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    return PreviewResult(
        data=data,
        html=html_part.get_content(),  # type: ignore[attr-defined]
        text=text_part.get_content(),  # type: ignore[attr-defined]
        warnings=report.warnings,
    )
