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

import base64
import functools
import hashlib
import hmac
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import insert, literal
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from digest.compose.inline import inline_css
from digest.compose.message import PreparedMessage, Recipient, address_domain
from digest.compose.render import Markers, build_context, make_environment, render_variant
from digest.core.clock import Clock
from digest.core.errors import DeliveryError
from digest.core.settings import DigestConfig, Settings
from digest.core.tokens import verp_tag
from digest.edition.select import EditionContent, edition_date, edition_slot, select_articles, to_story, window
from digest.outbox.ledger import worker_id as worker_id
from digest.outbox.sender import SendReport, run_send
from digest.store.articles import recent_articles
from digest.store.db import session_scope
from digest.store.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionArticle,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.transport.pool import Signer, TransportFactory
from digest.transport.smtp import Transport

log = logging.getLogger(__name__)

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


def queue_deliveries(
    session: Session, edition_id: int, now: datetime, *, only: ColumnElement[bool] | None = None
) -> int:
    """Create a queued Delivery for every active subscriber, in one statement.

    Existing deliveries are left alone (ON CONFLICT DO NOTHING on the unique
    (edition, subscriber) pair), so this is safe to run again and concurrently.
    ``only`` restricts the subscribers further (a condition on Subscriber rows), e.g.
    to those whose local send time the edition is for.
    """
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else insert
    source = sa_select(
        literal(edition_id),
        col(Subscriber.id),
        literal(DeliveryStatus.QUEUED),
        literal(0),
        literal(now, type_=Delivery.__table__.c.created_at.type),  # type: ignore[attr-defined]
    ).where(col(Subscriber.status) == SubscriberStatus.ACTIVE)
    if only is not None:
        source = source.where(only)
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
    assert sub.id is not None
    return recipient_values(settings, sub.id, sub.email, sub.email_key, sub.name)


def recipient_values(settings: Settings, subscriber_id: int, email: str, email_key: str, name: str) -> Recipient:
    """:func:`recipient_for` from the bare columns (the send loop reads no ORM objects)."""
    key = settings.secret_key.get_secret_value()
    tokens = _token_maker(key)
    unsub = tokens.make("unsubscribe", subscriber_id, email_key)
    prefs = tokens.make("preferences", subscriber_id, email_key)
    mailbox = settings.unsubscribe_address or _unsubscribe_mailbox(settings.from_addr)
    return Recipient(
        email=email,
        name=name,
        subscriber_id=subscriber_id,
        unsubscribe_url=f"{settings.base_url}/unsubscribe/{unsub}",
        preferences_url=f"{settings.base_url}/preferences/{prefs}",
        # The token is URL-safe already: only the space needs quoting (as quote() would).
        unsubscribe_mailto=f"mailto:{mailbox}?subject=unsubscribe%20{unsub}",
        bounce_tag=verp_tag(key, subscriber_id, email_key) if settings.verp else "",
    )


@functools.lru_cache(maxsize=16)
def _unsubscribe_mailbox(from_addr: str) -> str:
    return f"unsubscribe@{address_domain(from_addr)}"


class TokenMaker:
    """Exactly :func:`digest.core.tokens.make_token`'s tokens, at a tenth of the cost.

    itsdangerous derives the HMAC key and zlib-compresses the payload on every call
    (the zlib set-up alone is ~90 us); a million subscribers need two tokens each.
    Here the keys are derived once, and zlib runs only when the payload repeats a
    3-byte sequence: without one, deflate cannot make it shorter, so itsdangerous
    would not have used the compressed form either. ``tests/test_delivery_engine.py``
    checks the tokens against ``make_token`` and ``read_token``.
    """

    def __init__(self, secret_key: str) -> None:
        from digest.core.tokens import PURPOSES

        self._keys = {
            p: hashlib.sha1(f"digest.{p}".encode() + b"signer" + secret_key.encode()).digest() for p in PURPOSES
        }

    def make(self, purpose: str, subscriber_id: int, email_key: str, timestamp: int | None = None) -> str:
        from digest.core.tokens import address_hash

        # Compact JSON of [int, hex string], as itsdangerous writes it.
        raw = f'[{int(subscriber_id)},"{address_hash(email_key)}"]'.encode()
        body = _b64(raw)
        if len({raw[i : i + 3] for i in range(len(raw) - 2)}) < len(raw) - 2:
            compressed = zlib.compress(raw)
            if len(compressed) < len(raw) - 1:
                body = b"." + _b64(compressed)
        from digest.core.tokens import TIMED

        value = body
        if purpose in TIMED:
            ts = int(time.time()) if timestamp is None else timestamp
            value = body + b"." + _b64(ts.to_bytes(8, "big").lstrip(b"\x00"))
        signature = hmac.new(self._keys[purpose], value, hashlib.sha1).digest()
        return (value + b"." + _b64(signature)).decode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=4)
def _token_maker(secret_key: str) -> TokenMaker:
    return TokenMaker(secret_key)


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
    _keys: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def for_topics(self, topics: Iterable[str]) -> PreparedMessage | None:
        """The prepared message for subscribers with ``topics``; None when it would be empty."""
        topics = tuple(topics)
        key = self._keys.get(topics)
        if key is None:  # a million subscribers share a handful of topic lists
            key = self._keys[topics] = self.content.variant_key(topics)
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


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Exponential back-off with jitter: ``retry_base * 2^(attempts-1)``, capped, times 0.5-1.0.

    The jitter spreads the retries of a whole failed batch instead of sending them
    back to a struggling server at the same second.
    """
    cap = settings.delivery.retry_max_delay.total_seconds()
    base = settings.retry_base.total_seconds() * (2 ** min(max(attempts - 1, 0), 30))
    return timedelta(seconds=min(base, cap) * (0.5 + random.random() / 2))


def edition_variants(
    engine: Engine,
    settings: Settings,
    inline: Callable[[str], str] = inline_css,
    known: dict[int, Variants] | None = None,
) -> Callable[[int], Variants | None]:
    """``variants_for(edition_id)``: each edition's Variants, built from the store on first use.

    None for an edition whose digest is no longer configured (its deliveries stay queued).
    """
    cache: dict[int, Variants | None] = dict(known or {})
    env = make_environment(settings.templates_dir)

    def variants_for(edition_id: int) -> Variants | None:
        if edition_id not in cache:
            with session_scope(engine) as session:
                edition = session.get(Edition, edition_id)
                if edition is None or edition.digest not in settings.digests:
                    log.error("edition %s: its digest is not configured; its deliveries wait", edition_id)
                    cache[edition_id] = None
                    return None
                cfg = settings.digests[edition.digest]
                content = load_content(session, settings, cfg, edition)
            cache[edition_id] = Variants(
                settings, edition.digest, cfg, edition.slot, edition.built_at, content, env, inline
            )
        return cache[edition_id]

    return variants_for


def send_edition(
    engine: Engine,
    settings: Settings,
    variants: Variants,
    edition_id: int,
    transport: Transport | None,
    clock: Clock,
    *,
    progress: Callable[[int], None] | None = None,
    worker: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    signer: Signer | None = None,
    transport_factory: TransportFactory | None = None,
    processes: int | None = None,
) -> SendReport:
    """Send every due delivery of the edition, recording each result.

    With ``transport`` everything goes over that one connection in this process;
    with None, over the configured pool (``[delivery]``: servers, connections,
    processes), each connection made by ``transport_factory``. ``signer`` (DKIM) signs
    every filled message before it is handed over.

    Raises DeliveryError when every SMTP server is paused by its circuit breaker
    (after recording and releasing, so nothing is lost); per-recipient failures are
    recorded, not raised.
    """
    report = run_send(
        engine,
        settings,
        clock,
        [edition_id],
        edition_variants(engine, settings, variants.inline, {edition_id: variants}),
        transport=transport,
        transport_factory=transport_factory,
        processes=processes,
        signer=signer,
        should_stop=should_stop,
        progress=progress,
        worker=worker,
    )
    report.edition_id, report.slot = edition_id, variants.slot
    if report.paused and not should_stop():
        raise DeliveryError(f"SMTP server unavailable, stopping this run: {report.paused}")
    return report


def drain_outbox(
    engine: Engine,
    settings: Settings,
    transport_factory: TransportFactory | None = None,
    clock: Clock | None = None,
    worker: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    signer: Signer | None = None,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendReport:
    """Send whatever is due across all editions (new deliveries, retries, expired leases).

    For the service: call it from a scheduler job as often as you like, from as
    many processes and hosts as share the database. It returns when nothing is due,
    when ``should_stop()`` turns true (the messages in flight are finished, the rest
    released), or when every server is paused (``report.paused`` says why; nothing
    is raised). Editions with nothing left pending are marked sent.
    """
    from digest.core.clock import SystemClock
    from digest.outbox.ledger import editions_with_work

    clock = clock or SystemClock()
    editions = editions_with_work(engine)
    if not editions:
        return SendReport()
    report = run_send(
        engine,
        settings,
        clock,
        editions,
        edition_variants(engine, settings),
        transport_factory=transport_factory,
        processes=processes,
        signer=signer,
        should_stop=should_stop,
        progress=progress,
        worker=worker,
    )
    for edition_id in editions:
        finish_edition(engine, edition_id, clock.now())
    return report


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
    transport: Transport | None,
    clock: Clock,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    inline: Callable[[str], str] = inline_css,
    signer: Signer | None = None,
    transport_factory: TransportFactory | None = None,
    processes: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SendReport:
    """Build (or find) the current edition of a digest and deliver it to every active subscriber.

    ``transport`` None sends over the configured pool (see :func:`send_edition`).
    """
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
            engine,
            settings,
            variants,
            edition.id,
            transport,
            clock,
            progress=progress,
            signer=signer,
            transport_factory=transport_factory,
            processes=processes,
            should_stop=should_stop,
        )
    finally:
        finish_edition(engine, edition.id, clock.now())
    with session_scope(engine) as session:
        after = delivery_counts(session, edition.id)
    result.pending_after = sum(after.get(s, 0) for s in DeliveryStatus.PENDING)
    result.already_sent = already
    result.queued = due
    return result


def find_edition_ref(engine: Engine, settings: Settings, ref: str) -> Edition:
    """The edition named by ``ref``: its id, ``DIGEST:SLOT``, or a slot of the first digest."""
    from digest.core.errors import InputError, NotFoundError

    ref = ref.strip()
    with session_scope(engine) as session:
        if ref.isdigit():
            edition = session.get(Edition, int(ref))
        else:
            digest_name, _, slot = ref.rpartition(":")
            if not slot:
                raise InputError("EDITION", f"expected an id, DIGEST:SLOT or SLOT, not {ref!r}")
            name, _ = settings.digest(digest_name or None)
            edition = find_edition(session, name, slot)
    if edition is None:
        raise NotFoundError(f"no edition {ref}")
    return edition


def resend_failed(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    clock: Clock,
    *,
    transport: Transport | None = None,
    transport_factory: TransportFactory | None = None,
    signer: Signer | None = None,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendReport:
    """Retry now the failed deliveries of an edition (and only those); record the results."""
    from digest.outbox.ledger import requeue_failed

    requeued = requeue_failed(engine, edition_id)
    report = SendReport(edition_id=edition_id)
    if requeued:
        variants = edition_variants(engine, settings)(edition_id)
        if variants is None:
            from digest.core.errors import NotFoundError

            raise NotFoundError(f"edition {edition_id}: its digest is no longer configured")
        try:
            report = send_edition(
                engine, settings, variants, edition_id, transport, clock,
                signer=signer, transport_factory=transport_factory, processes=processes, progress=progress,
            )  # fmt: skip
        finally:
            finish_edition(engine, edition_id, clock.now())
    report.queued = requeued
    return report


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
    *,
    signer: Signer | None = None,
) -> TrialReport:
    """Send the current edition to ``emails`` through ``transport``, recording nothing.

    The same variant preparation and per-recipient fill (and ``signer``) as a real
    send: a subscriber gets their own topics and links; any other address gets the
    full edition.
    """
    from digest.compose.checks import check_html
    from digest.store.subscribers import find_subscriber

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
        transport.send(prepared.envelope_from_for(recipient), recipient.email, data)
        report.sent += 1
        if id(prepared) not in checked:
            checked.add(id(prepared))
            report.warnings += check_html(prepared.filled_html(recipient), empty=not content.ranked)
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

    from digest.core.errors import NotFoundError
    from digest.store.subscribers import find_subscriber
    from digest.transport.smtp import MemoryTransport

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
