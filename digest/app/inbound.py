"""Inbound mail: unsubscribe requests sent to the List-Unsubscribe mailto, and bounces.

``digest inbound`` feeds each message (from an MTA pipe, an mbox or a Maildir) to
:func:`process_message`, which decides, in this order:

1. The message carries a valid unsubscribe token, in the subject (the mailto
   link's ``subject=unsubscribe TOKEN``) or in the address it was sent to
   (``unsubscribe+TOKEN@domain``): that token's subscriber is unsubscribed.
2. A feedback report (ARF, RFC 5965: a subscriber marked our message as spam; see
   :mod:`digest.app.complaints`) whose quoted original is provably ours: that
   subscriber is suppressed and unsubscribed, and the complaint recorded.
3. flufl.bounce recognises a delivery status notification (RFC 3464, or one of
   the many non-standard formats it knows). It counts only when it is tied to a
   message we sent: it came back to the signed VERP return path of one
   subscriber's copy (``LOCAL+b-ID-SIG@domain``, see ``verp`` in the settings),
   or, with ``verp`` off, it quotes the Message-ID of a delivery we recorded for
   the failed address. A permanent failure counts towards ``bounce_limit``
   (then: bounced); a temporary one is recorded only. Any other report is ignored.
4. A request to unsubscribe without a valid token (a bare "unsubscribe" from
   some address) changes nothing: anyone can write any ``From:``. It is logged
   and not answered.
5. Anything else is ignored (never answered: no backscatter).

A message that cannot be parsed (no ``From:``, thousands of nested MIME parts,
broken encodings) is logged and reported as malformed; only an unreachable
store raises, so that an MTA keeps the message and retries. Processing the same
message twice changes nothing the second time.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import mailbox
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum
from pathlib import Path

from flufl.bounce import all_failures
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import col, select

from digest.app.bounces import BounceResult, record_bounce
from digest.app.complaints import ComplaintResult, included_headers, is_feedback_report, record_complaint
from digest.app.subscriptions import subscriber_from_token, unsubscribe
from digest.core.clock import Clock
from digest.core.errors import InputError, StoreUnavailable, TokenError
from digest.core.settings import Settings
from digest.core.text import mask_email
from digest.core.tokens import read_verp, verp_matches
from digest.store.db import session_scope
from digest.store.models import Delivery, Subscriber, saved_id
from digest.store.subscribers import find_subscriber

log = logging.getLogger(__name__)
# flufl.bounce logs every detector it runs (INFO) and the traceback of one that fails
# on a malformed message before re-raising it; process_message reports that failure
# in one line instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

_TOKEN_IN_SUBJECT = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_\-.]{20,})", re.IGNORECASE)
_TOKEN_IN_ADDRESS = re.compile(r"^unsubscribe\+([A-Za-z0-9_\-.]{20,})@", re.IGNORECASE)
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*(?:(?:re|aw|fwd?|wg)\s*:\s*)*unsubscribe\b", re.IGNORECASE)
# Headers that name the address a message was delivered to (the MTA's, or the
# reporting MTA's To: of a DSN, which is the return path of the failed message).
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")
# More multiparts than any real message has; the parser and the bounce detectors
# recurse once per level, so thousands nested is an attack on them.
MAX_MULTIPARTS = 100


class InboundKind(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    IGNORED = "ignored"
    MALFORMED = "malformed"


@dataclass
class InboundResult:
    """What one inbound message did (addresses masked: this is printed and logged)."""

    kind: InboundKind
    message_id: str | None
    lines: list[str] = field(default_factory=list)
    unsubscribed: list[int] = field(default_factory=list)
    bounces: dict[str, BounceResult] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(self.lines) if self.lines else self.kind.value


def message_ref(msg: Message, data: bytes) -> str:
    """The message's Message-ID, or a digest of its bytes when it has none (idempotency key)."""
    mid = str(msg.get("Message-ID") or "").strip()
    return mid[:300] if mid else f"sha256:{hashlib.sha256(data).hexdigest()[:40]}"


def _ref_of_bytes(data: bytes) -> str:
    """The Message-ID read from the raw header block (for messages the parser cannot take)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = re.search(rb"^message-id:[ \t]*(<[^>\r\n]{1,298}>)", head, re.IGNORECASE | re.MULTILINE)
    if m:
        return m.group(1).decode("ascii", "replace")
    return f"sha256:{hashlib.sha256(data).hexdigest()[:40]}"


def _multipart_count(data: bytes) -> int:
    """How many multipart parts the raw message declares (counted without the parser)."""
    return len(re.findall(rb"(?im)^content-type:[ \t]*multipart/", data))


def _subject(msg: Message) -> str:
    raw = msg.get("Subject", "")
    try:
        decoded = str(email.header.make_header(email.header.decode_header(str(raw))))
    except (ValueError, LookupError, UnicodeError):
        decoded = str(raw)
    return " ".join(decoded.split())


def _recipients(msg: Message, recipient: str | None) -> list[str]:
    """The addresses this message was delivered to, the MTA's own first."""
    values = [str(v) for name in _RECIPIENT_HEADERS for v in (msg.get_all(name) or [])]
    found = [addr for _, addr in getaddresses(values) if "@" in addr]
    return ([recipient] if recipient else []) + found


def process_message(
    engine: Engine, settings: Settings, clock: Clock, data: bytes, recipient: str | None = None
) -> InboundResult:
    """Classify one raw message and apply it to the store; never raises for a bad message.

    ``recipient`` is the envelope recipient when the MTA passes it (Postfix:
    ``$original_recipient``); without it the delivery headers are read. Raises
    :class:`StoreUnavailable` only when the database cannot be reached.
    """
    try:
        if _multipart_count(data) > MAX_MULTIPARTS:
            raise ValueError(f"more than {MAX_MULTIPARTS} multipart parts")
        return _process(engine, settings, clock, data, recipient)
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__) from exc
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the others
        ref = _ref_of_bytes(data)
        reason = f"{type(exc).__name__}: {str(exc)[:120]}" if isinstance(exc, ValueError) else type(exc).__name__
        log.warning("inbound %s: malformed message skipped (%s)", ref, reason)
        log.debug("inbound %s: malformed message", ref, exc_info=True)
        return InboundResult(InboundKind.MALFORMED, ref, [f"malformed message skipped ({reason})"])


def _process(engine: Engine, settings: Settings, clock: Clock, data: bytes, recipient: str | None) -> InboundResult:
    # flufl.bounce works on the classic (compat32) message model.
    msg = email.message_from_bytes(data)
    ref = message_ref(msg, data)
    subject = _subject(msg)
    now = clock.now()
    delivered_to = _recipients(msg, recipient)

    tokens = [m.group(1) for m in [_TOKEN_IN_SUBJECT.search(subject)] if m]
    tokens += [m.group(1) for m in (_TOKEN_IN_ADDRESS.match(a) for a in delivered_to) if m]
    for token in tokens:
        try:
            with session_scope(engine) as session:
                sub = subscriber_from_token(session, settings, "unsubscribe", token, now)
                changed = unsubscribe(session, sub, now, source="mailto", ref=ref)
                line = f"unsubscribed {mask_email(sub.email)}" if changed else f"{mask_email(sub.email)} already out"
                return InboundResult(InboundKind.UNSUBSCRIBE, ref, [line + " (token)"], [saved_id(sub)])
        except TokenError:
            log.info("inbound %s: unsubscribe token does not verify", ref)

    if is_feedback_report(msg):
        complaint = record_complaint(engine, settings, clock, msg, ref)
        if complaint.result == ComplaintResult.UNKNOWN:
            log.info("inbound %s: feedback report about no message of ours ignored", ref)
            return InboundResult(InboundKind.IGNORED, ref, ["feedback report about no message of ours: ignored"])
        line = f"complaint from {complaint.masked} (by {complaint.how}): {complaint.result.value}"
        if complaint.paused:
            line += f"; digest paused: {complaint.paused}"
        unsubscribed = [complaint.subscriber_id] if complaint.result == ComplaintResult.UNSUBSCRIBED else []
        return InboundResult(InboundKind.COMPLAINT, ref, [line], [i for i in unsubscribed if i is not None])

    if not msg.get("From"):
        # Every MTA writes From: on a report; its detectors cannot read a message without one.
        raise ValueError("no From: header")
    temporary, permanent = all_failures(msg)
    if temporary or permanent:
        return _bounce(engine, settings, clock, msg, ref, delivered_to, temporary, permanent)

    if tokens or _UNSUBSCRIBE_SUBJECT.search(subject):
        # Anyone can write any From:. Only the signed token of the mailto link (or
        # the web link) acts for a subscriber; this is not answered either, since
        # the sender may not be who it claims (no mail to a forged address).
        log.info("inbound %s: unsubscribe request without a valid token ignored", ref)
        return InboundResult(
            InboundKind.IGNORED, ref, ["unsubscribe request without a valid token: ignored (sender not trusted)"]
        )

    return InboundResult(InboundKind.IGNORED, ref, ["neither an unsubscribe request nor a bounce"])


def _addr(raw: bytes) -> str:
    return raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)


def _bounce(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    msg: Message,
    ref: str,
    delivered_to: Sequence[str],
    temporary: frozenset[bytes],
    permanent: frozenset[bytes],
) -> InboundResult:
    """Apply a DSN, but only to a subscriber it is provably about (see the module docstring)."""
    result = InboundResult(InboundKind.BOUNCE, ref)
    detail = str(msg.get("Subject") or "")[:200]
    is_permanent = bool(permanent)
    failed = sorted(_addr(a) for a in permanent) + sorted(_addr(a) for a in temporary)
    kind = "permanent" if is_permanent else "temporary"
    secret = settings.secret_key.get_secret_value()

    verp = next((v for v in (read_verp(a) for a in delivered_to) if v is not None), None)
    if verp is not None:
        sub_id, signature = verp
        with session_scope(engine) as session:
            sub = session.get(Subscriber, sub_id)
            email_key = sub.email_key if sub is not None else None
            email_addr = sub.email if sub is not None else ""
        if email_key is None or not verp_matches(secret, sub_id, email_key, signature):
            log.info("inbound %s: bounce to a return path we did not sign ignored", ref)
            return InboundResult(InboundKind.IGNORED, ref, ["bounce to a return path we did not sign: ignored"])
        outcome = record_bounce(
            engine, settings, clock, email_addr, permanent=is_permanent, ref=ref, detail=detail, subscriber_id=sub_id
        )
        result.bounces[email_addr] = outcome
        result.lines.append(f"{kind} failure for {mask_email(email_addr)} (return path): {outcome.value}")
        return result

    if settings.verp:
        masked = ", ".join(mask_email(a) for a in failed[:5])
        log.info("inbound %s: bounce not addressed to a VERP return path ignored (%s)", ref, masked)
        return InboundResult(
            InboundKind.IGNORED, ref, [f"bounce not sent to one of our return paths: ignored ({masked})"]
        )

    quoted = _returned_message_ids(msg)
    for addr, perm in [(a, True) for a in sorted(_addr(a) for a in permanent)] + [
        (a, False) for a in sorted(_addr(a) for a in temporary)
    ]:
        if not _delivery_quoted(engine, addr, quoted):
            result.bounces[addr] = BounceResult.UNKNOWN
            result.lines.append(
                f"{'permanent' if perm else 'temporary'} failure for {mask_email(addr)}: "
                "quotes no delivery of ours, ignored"
            )
            continue
        outcome = record_bounce(engine, settings, clock, addr, permanent=perm, ref=ref, detail=detail)
        result.bounces[addr] = outcome
        result.lines.append(f"{'permanent' if perm else 'temporary'} failure for {mask_email(addr)}: {outcome.value}")
    if not any(v != BounceResult.UNKNOWN for v in result.bounces.values()):
        log.info("inbound %s: bounce that quotes no delivery of ours ignored", ref)
        result.kind = InboundKind.IGNORED
    return result


def _returned_message_ids(msg: Message) -> set[str]:
    """The Message-IDs of the returned message(s) quoted in a DSN."""
    return {str(h.get("Message-ID")).strip() for h in included_headers(msg) if h.get("Message-ID")}


def _delivery_quoted(engine: Engine, address: str, message_ids: set[str]) -> bool:
    if not message_ids:
        return False
    with session_scope(engine) as session:
        sub = find_subscriber(session, address) if "@" in address else None
        if sub is None:
            return False
        found = session.exec(
            select(Delivery.id).where(
                Delivery.subscriber_id == sub.id, col(Delivery.message_id).in_(sorted(message_ids)[:20])
            )
        ).first()
        return found is not None


def read_mailbox(mbox: Path | None = None, maildir: Path | None = None) -> Iterator[bytes]:
    """The raw messages of an mbox file or a Maildir directory."""
    box: mailbox.Mailbox
    if mbox is not None:
        if not mbox.is_file():
            raise InputError(str(mbox), "no such mbox file")
        box = mailbox.mbox(mbox, create=False)
    elif maildir is not None:
        if not (maildir / "cur").is_dir() and not (maildir / "new").is_dir():
            raise InputError(str(maildir), "not a Maildir (no cur/ or new/)")
        box = mailbox.Maildir(maildir, factory=None, create=False)
    else:
        raise InputError("inbound", "give --mbox or --maildir")
    try:
        for key in box.iterkeys():
            try:
                data = box.get_bytes(key)
            except (OSError, KeyError) as exc:
                # Gone or unreadable (another reader moved it): skip it, keep the rest.
                log.warning("inbound: message %s of the mailbox unreadable (%s); skipped", key, type(exc).__name__)
                continue
            yield data
    finally:
        box.close()
