"""Complaints: feedback reports (ARF, RFC 5965) from mailbox providers' feedback loops.

A subscriber who presses "this is spam" makes their provider send the list a
report: ``multipart/report; report-type=feedback-report`` with a
``message/feedback-report`` part (Feedback-Type, User-Agent, ...) and the original
message or its headers (Yahoo's Complaint Feedback Loop sends this), or, in
Microsoft's older JMRP layout, a plain message with the original attached
(``message/rfc822``, marked ``X-HmXmrOriginalRecipient``).

A report only counts when its included original is provably ours, by one of
(strongest first): the signed unsubscribe token of its List-Unsubscribe header,
the signed VERP return path of its Return-Path, or (with ``verp`` off only, as for
bounces: our Message-IDs are predictable, and a forged report would unsubscribe
someone) a Message-ID we recorded for a sent delivery. The subscriber it names is
then suppressed (reason ``complained``), unsubscribed, and a ``complaint`` event
records the report, with the edition it is about when known. Addresses in the
report are never trusted (providers redact them, and anyone can write one).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from enum import StrEnum
from urllib.parse import unquote

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from digest.app.subscriptions import record_event, subscriber_from_token, unsubscribe
from digest.core.clock import Clock
from digest.core.errors import TokenError
from digest.core.settings import Settings
from digest.core.text import mask_email, one_line
from digest.core.tokens import read_verp, verp_matches
from digest.store.db import session_scope
from digest.store.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionComplaint,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SuppressionReason,
    saved_id,
)
from digest.store.pauses import pause_digest
from digest.store.suppressions import suppress

log = logging.getLogger(__name__)

_UNSUBSCRIBE_URL_TOKEN = re.compile(r"/unsubscribe/([A-Za-z0-9_\-.]{20,})")
_UNSUBSCRIBE_MAILTO_TOKEN = re.compile(r"subject=unsubscribe(?:%20|\+|\s)+([A-Za-z0-9_\-.]{20,})", re.IGNORECASE)
# What the report part says; anything else is kept as given, cut to one short line.
_FIELDS = ("Feedback-Type", "User-Agent", "Source-IP", "Arrival-Date")


class ComplaintResult(StrEnum):
    """What one feedback report did."""

    UNSUBSCRIBED = "unsubscribed"  # the subscriber was unsubscribed and suppressed
    ALREADY_OUT = "already_out"  # recorded; they had left already (now suppressed too)
    DUPLICATE = "duplicate"  # this report was processed before
    UNKNOWN = "unknown"  # the original is not provably one of ours


@dataclass(frozen=True)
class Complaint:
    """The outcome of a report, for the inbound result line (address masked)."""

    result: ComplaintResult
    subscriber_id: int | None = None
    masked: str = ""
    how: str = ""
    edition_id: int | None = None
    # Why this complaint paused the edition's digest (None: it did not).
    paused: str | None = None


def is_feedback_report(msg: Message) -> bool:
    """True for an ARF report (any provider) or a Microsoft JMRP report."""
    if msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "") or "").lower() == "feedback-report"
    ):
        return True
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            return True
    return any(orig.get("X-HmXmrOriginalRecipient") for orig in included_headers(msg))


def included_headers(msg: Message) -> list[Message]:
    """The header blocks of the messages a report quotes (message/rfc822 or text/rfc822-headers)."""
    found: list[Message] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found.append(inner)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                found.append(BytesHeaderParser().parsebytes(raw))
    return found


def report_fields(msg: Message) -> dict[str, str]:
    """The machine-readable fields of the ``message/feedback-report`` part (empty for JMRP)."""
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        # The compat32 parser reads an unknown message/* body as one embedded message.
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            fields = payload[0]
        else:
            fields = HeaderParser().parsestr(str(payload))
        return {name: one_line(str(fields.get(name)))[:100] for name in _FIELDS if fields.get(name)}
    return {}


def _tokens(original: Message) -> list[str]:
    value = unquote(" ".join(str(v) for v in original.get_all("List-Unsubscribe") or []))
    return [m.group(1) for m in _UNSUBSCRIBE_URL_TOKEN.finditer(value)] + [
        m.group(1) for m in _UNSUBSCRIBE_MAILTO_TOKEN.finditer(value)
    ]


def _return_paths(original: Message) -> list[str]:
    values = [str(v) for v in original.get_all("Return-Path") or []]
    return [v.strip().strip("<>").strip() for v in values if v.strip()]


def _message_ids(original: Message) -> list[str]:
    return [str(v).strip()[:300] for v in original.get_all("Message-ID") or [] if str(v).strip()]


def _find_subscriber(
    session: Session, settings: Settings, originals: list[Message], now_clock: Clock
) -> tuple[Subscriber, str] | None:
    """The subscriber the quoted original was sent to, and how we know (token, return path, Message-ID)."""
    secret = settings.secret_key.get_secret_value()
    now = now_clock.now()
    for original in originals:
        for token in _tokens(original):
            try:
                return subscriber_from_token(session, settings, "unsubscribe", token, now), "unsubscribe token"
            except TokenError:
                continue
    for original in originals:
        for path in _return_paths(original):
            verp = read_verp(path)
            if verp is None:
                continue
            sub = session.get(Subscriber, verp[0])
            if sub is not None and verp_matches(secret, verp[0], sub.email_key, verp[1]):
                return sub, "return path"
    if settings.verp:
        return None
    for original in originals:
        ids = _message_ids(original)
        if not ids:
            continue
        delivery = session.exec(
            select(Delivery).where(col(Delivery.message_id).in_(ids), Delivery.status == DeliveryStatus.SENT)
        ).first()
        if delivery is not None:
            sub = session.get(Subscriber, delivery.subscriber_id)
            if sub is not None:
                return sub, "Message-ID"
    return None


def _edition_of(session: Session, sub_id: int, originals: list[Message]) -> int | None:
    """The edition the complained-about message belongs to: its Message-ID's delivery to this subscriber."""
    ids = [i for o in originals for i in _message_ids(o)]
    if not ids:
        return None
    return session.exec(
        select(Delivery.edition_id).where(Delivery.subscriber_id == sub_id, col(Delivery.message_id).in_(ids))
    ).first()


def record_complaint(engine: Engine, settings: Settings, clock: Clock, msg: Message, ref: str) -> Complaint:
    """Apply one feedback report (see the module docstring); ``ref`` (its Message-ID) makes it idempotent."""
    originals = included_headers(msg)
    fields = report_fields(msg)
    now = clock.now()
    with session_scope(engine) as session:
        found = _find_subscriber(session, settings, originals, clock)
        if found is None:
            return Complaint(ComplaintResult.UNKNOWN)
        sub, how = found
        sub_id = saved_id(sub)
        masked = mask_email(sub.email)
        seen = session.exec(
            select(SubscriberEvent.id).where(
                SubscriberEvent.subscriber_id == sub_id,
                SubscriberEvent.kind == SubscriberEventKind.COMPLAINT,
                SubscriberEvent.ref == ref,
            )
        ).first()
        if seen is not None:
            return Complaint(ComplaintResult.DUPLICATE, sub_id, masked, how)
        edition_id = _edition_of(session, sub_id, originals)
        detail = "; ".join(
            [f"edition={edition_id}" if edition_id is not None else "edition=unknown"]
            + [f"{k}={v}" for k, v in fields.items()]
        )
        record_event(session, sub, SubscriberEventKind.COMPLAINT, now, source="arf", ref=ref, detail=detail)
        suppress(session.connection(), sub.email, SuppressionReason.COMPLAINED, "arf", now)
        changed = unsubscribe(session, sub, now, source="complaint", ref=ref, reason=SuppressionReason.COMPLAINED)
        log.info("subscriber %s complained (%s, found by %s)", sub_id, fields.get("Feedback-Type", "jmrp"), how)
        paused = _judge_edition(session, settings, edition_id, sub_id, now) if edition_id is not None else None
        result = ComplaintResult.UNSUBSCRIBED if changed else ComplaintResult.ALREADY_OUT
        return Complaint(result, sub_id, masked, how, edition_id, paused)


def _judge_edition(session: Session, settings: Settings, edition_id: int, sub_id: int, now: datetime) -> str | None:
    """Count the complaint against its edition; pause the digest when the edition's rate is too high.

    The rate is complaints over messages sent, judged once ``complaint_min_sample``
    messages were sent; above ``complaint_pause_rate`` the digest is paused (the
    claim of any of its deliveries waits) until ``digest resume``. Returns the reason
    when this complaint paused it.
    """
    counted = session.exec(
        select(EditionComplaint.id).where(
            EditionComplaint.edition_id == edition_id, EditionComplaint.subscriber_id == sub_id
        )
    ).first()
    if counted is None:
        session.add(EditionComplaint(edition_id=edition_id, subscriber_id=sub_id, created_at=now))
        session.flush()
    complaints = session.exec(
        select(func.count()).select_from(EditionComplaint).where(EditionComplaint.edition_id == edition_id)
    ).one()
    sent = session.exec(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.SENT)
    ).one()
    if sent < settings.complaint_min_sample or complaints / sent <= settings.complaint_pause_rate:
        return None
    edition = session.get(Edition, edition_id)
    if edition is None:
        return None
    reason = (
        f"{complaints} complaint(s) in {sent} messages of edition {edition.slot} ({complaints / sent:.2%}), "
        f"above complaint_pause_rate {settings.complaint_pause_rate:.2%}"
    )
    if not pause_digest(session.connection(), edition.digest, reason, now, edition_id):
        return None
    log.warning("digest %s paused: %s; `digest resume %s` sends again", edition.digest, reason, edition.digest)
    return reason
