"""Inbound mail: unsubscribe requests sent to the List-Unsubscribe mailto, and bounces.

``digest inbound`` feeds each message (from an MTA pipe, an mbox or a Maildir) to
:func:`process_message`, which decides, in this order:

1. The subject carries a valid unsubscribe token (the mailto link's
   ``subject=unsubscribe TOKEN``): that token's subscriber is unsubscribed.
2. flufl.bounce recognises a delivery status notification (RFC 3464, or one of
   the many non-standard formats it knows): each permanently failed recipient
   counts towards ``bounce_limit`` (then: bounced); temporary failures are
   recorded only.
3. The subject asks to unsubscribe and the message is not automatic (RFC 3834
   ``Auto-Submitted``): the sender's address is unsubscribed.
4. Anything else is ignored (never answered: no backscatter).

Processing the same message twice changes nothing the second time.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path

from flufl.bounce import all_failures
from sqlalchemy.engine import Engine

from digest.clock import Clock
from digest.db import session_scope
from digest.errors import InputError
from digest.lifecycle import BounceResult, mask_email, record_bounce, subscriber_from_token, unsubscribe
from digest.settings import Settings
from digest.subscribers import find_subscriber
from digest.tokens import TokenError

log = logging.getLogger(__name__)

_TOKEN_IN_SUBJECT = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_\-.]{20,})", re.IGNORECASE)
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*(?:(?:re|aw|fwd?|wg)\s*:\s*)*unsubscribe\b", re.IGNORECASE)


class InboundKind(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    IGNORED = "ignored"


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
    mid = (msg.get("Message-ID") or "").strip()
    return mid[:300] if mid else f"sha256:{hashlib.sha256(data).hexdigest()[:40]}"


def _subject(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return " ".join(str(parsed.get("Subject", "")).split())


def process_message(engine: Engine, settings: Settings, clock: Clock, data: bytes) -> InboundResult:
    """Classify one raw message and apply it to the store."""
    # flufl.bounce works on the classic (compat32) message model.
    msg = email.message_from_bytes(data)
    ref = message_ref(msg, data)
    subject = _subject(data)
    now = clock.now()

    m = _TOKEN_IN_SUBJECT.search(subject)
    if m:
        try:
            with session_scope(engine) as session:
                sub = subscriber_from_token(session, settings, "unsubscribe", m.group(1), now)
                changed = unsubscribe(session, sub, now, source="mailto", ref=ref)
                assert sub.id is not None
                line = f"unsubscribed {mask_email(sub.email)}" if changed else f"{mask_email(sub.email)} already out"
                return InboundResult(InboundKind.UNSUBSCRIBE, ref, [line + " (token in subject)"], [sub.id])
        except TokenError:
            log.info("inbound %s: unsubscribe token does not verify; trying the sender", ref)

    temporary, permanent = all_failures(msg)
    if temporary or permanent:
        result = InboundResult(InboundKind.BOUNCE, ref)
        detail = (msg.get("Subject") or "")[:200]
        for raw, is_permanent in [(a, True) for a in sorted(permanent)] + [(a, False) for a in sorted(temporary)]:
            addr = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
            outcome = record_bounce(engine, settings, clock, addr, permanent=is_permanent, ref=ref, detail=detail)
            result.bounces[addr] = outcome
            kind = "permanent" if is_permanent else "temporary"
            result.lines.append(f"{kind} failure for {mask_email(addr)}: {outcome.value}")
        return result

    auto = (msg.get("Auto-Submitted") or "no").strip().lower()
    if m or _UNSUBSCRIBE_SUBJECT.search(subject):
        if auto != "no":
            return InboundResult(InboundKind.IGNORED, ref, ["automatic reply (Auto-Submitted): ignored"])
        sender = parseaddr(msg.get("From") or "")[1]
        with session_scope(engine) as session:
            found = find_subscriber(session, sender) if "@" in sender else None
            if found is None:
                return InboundResult(InboundKind.IGNORED, ref, ["unsubscribe request from an unknown sender"])
            changed = unsubscribe(session, found, now, source="mailto-sender", ref=ref)
            assert found.id is not None
            line = f"unsubscribed {mask_email(found.email)}" if changed else f"{mask_email(found.email)} already out"
            return InboundResult(InboundKind.UNSUBSCRIBE, ref, [line + " (by sender address)"], [found.id])

    return InboundResult(InboundKind.IGNORED, ref, ["neither an unsubscribe request nor a bounce"])


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
            yield box.get_bytes(key)
    finally:
        box.close()
