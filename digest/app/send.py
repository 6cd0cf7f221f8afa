"""Deliver: editions, the outbox of Delivery rows, and the send loop.

- An edition is created once per (digest, slot): the unique constraint, not a
  Python check, settles a race between two processes.
- Deliveries of an edition are created set-based (INSERT ... SELECT ... ON CONFLICT
  DO NOTHING), then claimed in batches with a lease, sent, and their results
  written back in batches. Running a send again claims only what is still due, so
  nobody gets the same edition twice.
- Rendering and CSS inlining run once per content variant (subscribers with the
  same topics and choice about breaking stories), never per subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

from sqlalchemy import and_, exists, false, func, or_, true
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from digest.app.planner import claim_today_and_queue, has_delivery, local_days, served_elsewhere
from digest.compose.dkim import Signer
from digest.compose.inline import inline_css
from digest.compose.recipients import recipient_for, test_recipient
from digest.compose.render import make_environment
from digest.compose.variants import Variants, make_variants
from digest.core.clock import Clock
from digest.core.errors import DigestPaused
from digest.core.settings import Settings
from digest.edition.build import (
    current_content,
    find_edition,
    get_or_build_edition,
)
from digest.edition.dedup import Cut, Drop
from digest.edition.select import alert_marks, edition_slot
from digest.outbox.drain import send_edition
from digest.outbox.journal import worker_id as worker_id
from digest.outbox.ledger import delivery_counts, finish_edition
from digest.outbox.loader import EditionVariants
from digest.outbox.sender import SendReport
from digest.outbox.warmup import WarmupUse, warmup_today
from digest.store.alerts import alerted_among
from digest.store.db import session_scope
from digest.store.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
    saved_id,
)
from digest.store.pauses import paused_digests
from digest.transport.pool import TransportFactory
from digest.transport.smtp import Transport

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- editions


# ---------------------------------------------------------------- variants


# ---------------------------------------------------------------- sending


@dataclass
class DigestSendReport(SendReport):
    """What :func:`send_digest` did: the engine's report, and the stories the edition left
    out because it was full, by name (``over_limit`` counts them)."""

    cut: list[Cut] = field(default_factory=list)
    # Today in the warm-up schedule, as this send's queueing left it; None: no cap today.
    warmup: WarmupUse | None = None


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
    also_served: bool = False,
) -> DigestSendReport:
    """Build (or find) the current edition of a digest and deliver it to every active subscriber.

    ``transport`` None sends over the configured pool (see :func:`send_edition`).
    Subscribers whose local day another edition already claimed are skipped and
    counted in ``served_today`` (sent to anyway with ``also_served``). During the
    warm-up schedule only today's allowance is queued (``warmup`` says how it stands).
    DigestPaused when the digest is paused (too many complaints): nothing is built or sent.
    """
    name, cfg = settings.digest(name)
    with engine.connect() as conn:
        pause = paused_digests(conn).get(name)
    if pause is not None:
        raise DigestPaused(f"digest {name} is paused: {pause.reason}; run `digest resume {name}` to send again")
    now = clock.now()
    edition, content, _ = get_or_build_edition(engine, settings, name, now)
    edition_id = saved_id(edition)
    report = DigestSendReport(edition_id=edition_id, slot=edition.slot)
    report.drops, report.over_limit, report.cut = list(content.drops), content.over_limit, list(content.cut)
    if edition.status == EditionStatus.EMPTY:
        report.empty = True
        return report
    queued, report.served_today = claim_today_and_queue(
        engine, settings, name, edition_id, now, also_served=also_served
    )
    report.warmup = queued.warmup
    with session_scope(engine) as session:
        counts = delivery_counts(session, edition_id)
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
            edition_id,
            transport,
            clock,
            progress=progress,
            signer=signer,
            transport_factory=transport_factory,
            processes=processes,
            should_stop=should_stop,
        )
    finally:
        finish_edition(engine, edition_id, clock.now())
    with session_scope(engine) as session:
        after = delivery_counts(session, edition_id)
    result.pending_after = sum(after.get(s, 0) for s in DeliveryStatus.PENDING)
    result.already_sent = already
    result.served_today = report.served_today
    result.queued = due
    result.drops, result.over_limit = report.drops, report.over_limit
    done = DigestSendReport(**{f.name: getattr(result, f.name) for f in fields(SendReport)})
    done.cut, done.warmup = report.cut, report.warmup
    return done


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
        variants = EditionVariants(engine, settings)(edition_id)
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
    articles: int = 0
    warnings: list[str] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    over_limit: int = 0
    cut: list[Cut] = field(default_factory=list)


@dataclass
class SendPlan:
    """Who a real ``send`` would deliver to now, as :func:`send_digest` decides it; read-only."""

    emails: list[str]
    already_sent: int = 0
    served_today: int = 0
    empty: bool = False  # the edition is stored as empty: send sends nothing
    # Today in the warm-up schedule as the send would leave it (used and waiting); None: no cap.
    warmup: WarmupUse | None = None


def send_plan(session: Session, settings: Settings, name: str, now: datetime, *, also_served: bool = False) -> SendPlan:
    """The subscribers :func:`send_digest` at ``now`` would deliver to, writing nothing.

    The same conditions as the real send: active, no finished delivery of the edition
    (sent, skipped, failed for good), and (unless ``also_served``) no other edition
    of the digest claimed their local day. A ``--dry-run`` built on this says 2 when
    the send would send 2, and 0 once everyone has it.
    """
    _, cfg = settings.digest(name)
    edition = find_edition(session, name, edition_slot(cfg, now))
    edition_id = edition.id if edition is not None else None
    served = served_elsewhere(cfg, name, edition_id, local_days(session, cfg, now))
    active = col(Subscriber.status) == SubscriberStatus.ACTIVE
    fresh: ColumnElement[bool]
    pending: ColumnElement[bool]
    if edition_id is None:
        fresh, pending, already = true(), false(), 0
    else:
        fresh = ~has_delivery(edition_id)
        pending = exists().where(
            col(Delivery.edition_id) == edition_id,
            col(Delivery.subscriber_id) == Subscriber.id,
            col(Delivery.status).in_(DeliveryStatus.PENDING),
        )
        already = delivery_counts(session, edition_id).get(DeliveryStatus.SENT, 0)
    new = fresh if also_served else and_(fresh, ~served)
    n_served = session.exec(select(func.count()).select_from(Subscriber).where(active, fresh, served)).one()
    plan = SendPlan(
        emails=[],
        already_sent=already,
        served_today=int(n_served),
        empty=edition is not None and edition.status == EditionStatus.EMPTY,
    )
    warmup = warmup_today(session.connection(), settings.delivery.warmup, now)
    if warmup is None:
        wanted = or_(pending, new)
        plan.emails = list(session.exec(select(Subscriber.email).where(active, wanted).order_by(col(Subscriber.id))))
        return plan
    # Queued already: counted in today's use. New ones: as many as today allows, longest-subscribed first.
    plan.emails = list(session.exec(select(Subscriber.email).where(active, pending).order_by(col(Subscriber.id))))
    newcomers = session.exec(
        select(Subscriber.email).where(active, new).order_by(col(Subscriber.created_at), col(Subscriber.id))
    ).all()
    room = warmup.left
    plan.emails += newcomers[:room]
    plan.warmup = replace(warmup, used=warmup.used + min(room, len(newcomers)), waiting=max(len(newcomers) - room, 0))
    return plan


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
    from digest.compose.checks import check_html, check_stories
    from digest.store.subscribers import find_subscriber

    now = clock.now()
    slot, built_at, content = current_content(session, settings, name, now)
    variants = make_variants(settings, name, slot, built_at, content)
    report = TrialReport(
        slot=slot,
        articles=len(content.ranked),
        warnings=check_stories(content.ranked),
        drops=list(content.drops),
        over_limit=content.over_limit,
        cut=list(content.cut),
    )
    checked: set[int] = set()
    for email in emails:
        sub = find_subscriber(session, email)
        recipient = recipient_for(settings, sub) if sub else test_recipient(settings, email)
        if sub:
            # What the real copy leaves out: the stories this reader already got as alerts.
            marks = alert_marks(*alerted_among(session.connection(), saved_id(sub), content.article_ids))
            prepared = variants.for_topics([*sub.topics, *marks], sub.breaking, sub.locale)
        else:
            prepared = variants.for_topics(())
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
    drops: list[Drop] = field(default_factory=list)
    over_limit: int = 0
    cut: list[Cut] = field(default_factory=list)


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
    if html_part is None or text_part is None:
        # compose builds every message with both parts: one missing is a bug there.
        raise ValueError("the preview message lacks its HTML or text part")
    return PreviewResult(
        data=data,
        html=html_part.get_content(),  # type: ignore[attr-defined]
        text=text_part.get_content(),  # type: ignore[attr-defined]
        warnings=report.warnings,
        drops=report.drops,
        over_limit=report.over_limit,
        cut=report.cut,
    )
