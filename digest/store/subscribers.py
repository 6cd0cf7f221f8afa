"""Subscribers: validate, add, import from CSV, list, change status, count bounces."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import get_close_matches
from functools import lru_cache
from typing import Any, NamedTuple

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from sqlalchemy import delete as delete_
from sqlalchemy import select as select_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, func, select

from digest.core.errors import InputError, NotFoundError
from digest.core.settings import check_locale, check_timezone
from digest.core.text import mask_email, one_line, parse_hhmm
from digest.store.models import (
    Article,
    Delivery,
    Edition,
    SlotClaim,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    SuppressionReason,
)
from digest.store.suppressions import T as SUPPRESSIONS
from digest.store.suppressions import email_hash, suppress, suppression_of, unsuppress
from digest.store.webhooks import subscriber_event

log = logging.getLogger(__name__)


def normalise_email(raw: str, where: str = "email") -> tuple[str, str]:
    """Return ``(email, email_key)`` for a valid address; raise InputError otherwise.

    Deliverability (DNS) is not checked: that would reach the network, and a digest
    learns about dead addresses from bounces anyway. The verdicts are email-validator's
    (see :func:`_fast_normal` for how most addresses skip most of its work).
    """
    address = raw.strip()
    email = _fast_normal(address)
    if email is None:
        try:
            email = _validate(address).normalized
        except EmailNotValidError as exc:
            raise InputError(where, f"invalid email address {address!r}: {exc}") from None
    return email, email.casefold()


def _validate(address: str) -> ValidatedEmail:
    return validate_email(address, check_deliverability=False, allow_smtputf8=False)


# email-validator's dot-atom local part (RFC 5322 3.2.3): ASCII, returned unchanged.
_DOT_ATOM = re.compile(r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
_RFC2142 = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_MAX_ADDRESS = 254  # octets, RFC 3696 errata 1690 (email-validator's EMAIL_MAX_LENGTH)


def _fast_normal(address: str) -> str | None:
    """email-validator's normalised form of a plain ``local@domain`` address, or None to ask it.

    Most of email-validator's time goes to the domain (IDNA), and a list of a million
    addresses has few distinct domains: each domain's verdict is asked once (with a
    stand-in local part) and remembered. The local part is taken only when it is a
    dot-atom, which email-validator returns as given (lower-cased for the RFC 2142 role
    names); the three lengths it checks are checked the same way. Anything else (a
    quoted local part, a display name, an internationalised local part, a bad domain,
    an address near the length limit) goes to email-validator itself, so its verdict
    and its message stand.
    """
    local, at, domain_part = address.partition("@")
    if not at or not _DOT_ATOM.match(local):
        return None
    known = _domain(domain_part)
    if known is None:
        return None
    domain, longest = known
    if len(local) <= _LONGEST_ROLE and local.lower() in _RFC2142:
        local = local.lower()
    return f"{local}@{domain}" if len(local) + 1 + longest <= _MAX_ADDRESS else None


_LONGEST_ROLE = max(map(len, _RFC2142))


@lru_cache(maxsize=65536)
def _domain(domain_part: str) -> tuple[str, int] | None:
    """A domain as email-validator normalises it, and the longest of its three forms in octets; None if refused.

    The three forms are those whose lengths email-validator checks with the local
    part: as given, normalised, and in ASCII (IDNA).
    """
    try:
        info = _validate(f"a@{domain_part}")
    except EmailNotValidError:
        return None
    return info.domain, max(len(domain_part.encode()), len(info.domain.encode()), len(info.ascii_domain))


def parse_topics(raw: str | Sequence[str] | None) -> list[str]:
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [one_line(t) for t in items if one_line(t)]


@dataclass(frozen=True)
class KnownTopics:
    """The sections a subscriber's topics may name.

    ``sections``: every digest's configured sections, then (when some digest takes
    every category, ``open``) the categories of the stored articles. A topic that
    matches none would quietly give its subscriber an empty edition, so it is an
    error, unless ``allow_new`` and the sections are open (a category yet to come).
    """

    sections: tuple[str, ...]
    open: bool = False
    allow_new: bool = False

    def check(self, topics: list[str], where: str) -> list[str]:
        """``topics`` spelt as their sections; InputError naming the unknown ones and the known ones."""
        known = {s.casefold(): s for s in self.sections}
        unknown = [t for t in topics if t.casefold() not in known]
        if unknown and not (self.open and self.allow_new):
            close = [m for t in unknown for m in get_close_matches(t, self.sections, n=1, cutoff=0.6)]
            problem = f"unknown topic(s): {', '.join(unknown)}"
            if close:
                problem += f" (did you mean {', '.join(close)}?)"
            problem += f"; known sections: {', '.join(self.sections) or 'none yet'}"
            if self.open:
                problem += "; --allow-new-topics takes a section no article has yet"
            elif self.allow_new:
                problem += " (every digest lists its sections: a new topic would match nothing)"
            raise InputError(where, problem)
        return [known.get(t.casefold(), t) for t in topics]


def known_topics(session: Session, digests: Sequence[Sequence[str]], allow_new: bool = False) -> KnownTopics:
    """The :class:`KnownTopics` of the digests' ``sections`` lists (an empty one: every category)."""
    sections = list(dict.fromkeys(s for d in digests for s in d))
    is_open = any(not d for d in digests)
    if is_open:
        seen = {s.casefold() for s in sections}
        stored = session.exec(select(Article.category).distinct().order_by(Article.category)).all()
        sections += [c for c in stored if c and c.casefold() not in seen]
    return KnownTopics(tuple(sections), is_open, allow_new)


def validate_timezone(tz: str | None, where: str) -> str | None:
    if not tz:
        return None
    try:
        return check_timezone(tz.strip())
    except ValueError as exc:
        raise InputError(where, str(exc)) from None


def validate_locale(value: str | None, where: str) -> str | None:
    """A subscriber's locale as a BCP 47 tag (``de``, ``pt-BR``); empty: None (the digest's language)."""
    if not value or not value.strip():
        return None
    try:
        return check_locale(value)
    except ValueError as exc:
        raise InputError(where, str(exc)) from None


def validate_send_time(value: str | None, where: str) -> str | None:
    if not value:
        return None
    try:
        at = parse_hhmm(value)
    except ValueError as exc:
        raise InputError(where, str(exc)) from None
    return f"{at.hour:02d}:{at.minute:02d}"


def validate_quiet_hours(start: str | None, end: str | None, where: str) -> tuple[str | None, str | None]:
    """Quiet hours as stored: both local ``HH:MM`` times zero-padded (they compare as text), or neither."""
    start, end = (start or "").strip() or None, (end or "").strip() or None
    if (start is None) != (end is None):
        raise InputError(where, "quiet hours need both a start and an end (HH:MM), or neither")
    times = []
    for name, value in (("quiet_start", start), ("quiet_end", end)):
        if value is None:
            return None, None
        try:
            times.append(parse_hhmm(value).strftime("%H:%M"))
        except ValueError:
            raise InputError(where, f"{name} must be a local time HH:MM, got {one_line(value)[:20]!r}") from None
    if times[0] == times[1]:
        raise InputError(where, "quiet hours must not start and end at the same time")
    return times[0], times[1]


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email_key == email.strip().casefold())).first()


class Checked(NamedTuple):
    """A subscriber's fields, validated: the address, its key, and the columns ``values``."""

    email: str
    key: str
    # name, timezone, topics, send_time, locale, quiet hours: an empty one leaves an existing subscriber's as it is.
    values: dict[str, Any]
    status: str | None


# A value's check: the clean value, or the problem (an InputError's, without its where).
_Verdict = tuple[Any, str | None]

# The columns of :meth:`SubscriberCheck.fields` after the address, its key and the status, in order.
FIELD_COLUMNS = ("name", "timezone", "topics", "send_time", "locale", "quiet_start", "quiet_end")
# (email, key, status, then FIELD_COLUMNS: topics a tuple); an empty one leaves an existing subscriber's as it is.
Fields = tuple[str, str, str | None, str, str | None, tuple[str, ...], str | None, str | None, str | None, str | None]


class SubscriberCheck:
    """The one validation of a subscriber's fields (add, import), naming ``where`` in its InputError.

    Rows of a large import repeat a few timezones, topic lists and send times: each
    distinct value is checked once, and its verdict (the clean value, or the problem)
    is remembered for the life of the object.
    """

    _MEMO_SIZE = 10_000  # values per field remembered (a file of distinct values gains nothing)

    def __init__(self, topics_known: KnownTopics | None = None) -> None:
        self.topics_known = topics_known
        self._zones: dict[str, _Verdict] = {}
        self._topic_lists: dict[str, _Verdict] = {}
        self._times: dict[str, _Verdict] = {}
        self._locales: dict[str, _Verdict] = {}

    def __call__(
        self,
        email: str,
        *,
        name: str = "",
        timezone: str | None = None,
        topics: str | Sequence[str] | None = None,
        status: str | None = None,
        send_time: str | None = None,
        locale: str | None = None,
        quiet_start: str | None = None,
        quiet_end: str | None = None,
        where: str = "email",
    ) -> Checked:
        addr, key, status, name, tz, wanted, at, tag, start, end = self.fields(
            email, name, timezone, topics, status, send_time, locale, quiet_start, quiet_end, where
        )
        values = {"name": name, "timezone": tz, "topics": list(wanted), "send_time": at, "locale": tag}
        if start is not None:  # set when both are given; none keeps an existing subscriber's
            values.update(quiet_start=start, quiet_end=end)
        return Checked(addr, key, values, status)

    def fields(
        self,
        email: str,
        name: str,
        timezone: str | None,
        topics: str | Sequence[str] | None,
        status: str | None,
        send_time: str | None,
        locale: str | None,
        quiet_start: str | None,
        quiet_end: str | None,
        where: str,
    ) -> Fields:
        """The checks of :meth:`__call__`, as a plain tuple (:data:`Fields`): an import makes a million."""
        addr, key = normalise_email(email, where)
        tz = self._remembered(self._zones, timezone, where, validate_timezone) if timezone else None
        if topics is None or isinstance(topics, str):
            wanted = self._remembered(self._topic_lists, topics or "", where, self._topics)
        else:
            wanted = self._topics(topics, where)
        if status is not None and status not in SubscriberStatus.ALL:
            raise InputError(where, f"status must be one of {', '.join(SubscriberStatus.ALL)}")
        at = self._remembered(self._times, send_time, where, validate_send_time) if send_time else None
        tag = self._remembered(self._locales, locale, where, validate_locale) if locale else None
        # Both empty (nearly every row): nothing to check, as validate_quiet_hours would find.
        start, end = validate_quiet_hours(quiet_start, quiet_end, where) if quiet_start or quiet_end else (None, None)
        return addr, key, status, one_line(name)[:200], tz, wanted, at, tag, start, end

    def _topics(self, raw: str | Sequence[str] | None, where: str) -> tuple[str, ...]:
        wanted = parse_topics(raw)
        if self.topics_known is not None:
            wanted = self.topics_known.check(wanted, where)
        return tuple(wanted)

    def _remembered(self, memo: dict[str, _Verdict], raw: str, where: str, check: Callable[[str, str], Any]) -> Any:
        verdict = memo.get(raw)
        if verdict is None:
            try:
                verdict = (check(raw, where), None)
            except InputError as exc:
                verdict = (None, exc.problem)
            if len(memo) < self._MEMO_SIZE:
                memo[raw] = verdict
        if verdict[1] is not None:
            raise InputError(where, verdict[1])
        return verdict[0]


# The statuses an operator sets that put the address on the suppression list.
SUPPRESSING: dict[str, str] = {
    SubscriberStatus.UNSUBSCRIBED: SuppressionReason.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED: SuppressionReason.BOUNCED,
}


def add_subscriber(
    session: Session,
    email: str,
    now: datetime,
    *,
    name: str = "",
    timezone: str | None = None,
    topics: str | Sequence[str] | None = None,
    status: str | None = None,
    send_time: str | None = None,
    frequency: str | None = None,
    weekday: int | None = None,
    where: str = "email",
    update: bool = False,
    topics_known: KnownTopics | None = None,
    allow_suppressed: bool = False,
    breaking: bool | None = None,
    locale: str | None = None,
    alerts: bool | None = None,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
) -> tuple[Subscriber, bool]:
    """Add a subscriber (or, with ``update``, change an existing one).

    Returns ``(subscriber, created)``. An existing address without ``update`` is an
    InputError. ``status`` defaults to active for a new subscriber; an existing one
    keeps theirs unless ``status`` is given (an import never re-subscribes by mistake).
    ``topics_known``: the topics must name known sections (see :class:`KnownTopics`).
    ``frequency`` and ``weekday`` (0 = Monday) are stored as given, when given.
    ``breaking``: breaking stories outside the topics too (a new subscriber's default:
    yes); None keeps an existing subscriber's choice. ``locale``: their language (BCP 47, validated
    here); None keeps an existing subscriber's and gives a new one the digest's language. ``alerts``
    (breaking alerts by email, a new subscriber's default: no) likewise; quiet hours (no alerts between
    ``quiet_start`` and ``quiet_end``, local times) are set when both are given.

    An address on the suppression list is not made active (InputError) unless
    ``allow_suppressed``: the operator then vouches for a fresh confirmation, and the
    address leaves the list.
    """
    checked = SubscriberCheck(topics_known)(
        email,
        name=name,
        timezone=timezone,
        topics=topics,
        status=status,
        send_time=send_time,
        locale=locale,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        where=where,
    )
    addr, key, values = checked.email, checked.key, checked.values
    if frequency is not None:  # validated by the caller (digest.app.subscriptions.parse_frequency)
        values.update(frequency=frequency, weekday=weekday)
    existing = find_subscriber(session, key)
    activates = (status or (existing.status if existing is not None else SubscriberStatus.ACTIVE)) == (
        SubscriberStatus.ACTIVE
    )
    if activates:
        held = suppression_of(session.connection(), key)
        if held is not None and not allow_suppressed:
            raise InputError(
                where,
                f"{mask_email(addr)} is suppressed ({held.reason}): it needs a fresh confirmation "
                "(or --allow-suppressed)",
            )
        if held is not None:
            unsuppress(session.connection(), key)
            log.info("%s taken off the suppression list (allowed by the operator)", mask_email(addr))
    if status in SUPPRESSING:
        # An import that says a person left (or bounced) puts them on the list as well.
        suppress(session.connection(), addr, SUPPRESSING[status], "cli", now)
    if existing is not None:
        if not update:
            raise InputError(where, f"{addr} is already subscribed")
        for k, v in values.items():
            if v:
                setattr(existing, k, v)
        if breaking is not None:
            existing.breaking = breaking
        if alerts is not None:
            existing.alerts = alerts
        if status is not None:
            existing.status = status
        existing.updated_at = now
        session.add(existing)
        session.flush()
        return existing, False
    status = status or SubscriberStatus.ACTIVE
    sub = Subscriber(email=addr, email_key=key, status=status, created_at=now, updated_at=now, **values)
    if breaking is not None:
        sub.breaking = breaking
    if alerts is not None:
        sub.alerts = alerts
    session.add(sub)
    session.flush()
    return sub, True


def list_subscribers(session: Session, status: str | None = None, limit: int | None = None) -> Sequence[Subscriber]:
    """Subscribers in the order they were added (the first ``limit``), only those of ``status`` if given."""
    stmt = select(Subscriber).order_by(col(Subscriber.id)).limit(limit)
    if status:
        stmt = stmt.where(Subscriber.status == status)
    return session.exec(stmt).all()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    return {s: n for s, n in rows}


def set_status(session: Session, email: str, status: str, now: datetime) -> Subscriber:
    """Set a subscriber's status; unsubscribed and bounced also suppress the address."""
    sub = find_subscriber(session, email)
    if sub is None:
        raise NotFoundError(f"no subscriber {email}")
    if status in SUPPRESSING:
        suppress(session.connection(), sub.email, SUPPRESSING[status], "cli", now)
    if status == SubscriberStatus.UNSUBSCRIBED and sub.status != status and sub.id is not None:
        # The webhooks that listen hear of an operator's unsubscribe too (the trail keeps the subscriber's own acts).
        subscriber_event(session.connection(), SubscriberEventKind.UNSUBSCRIBED, sub.id, sub.email, now, source="cli")
    sub.status = status
    if status == SubscriberStatus.ACTIVE:
        # Taken back by hand: the sunset rule counts afresh from here.
        sub.soft_bounce_streak = 0
    sub.updated_at = now
    session.add(sub)
    session.flush()
    return sub


def remove_subscriber(session: Session, email: str) -> None:
    """Delete a subscriber and their delivery records (GDPR erasure)."""
    from sqlmodel import delete

    from digest.store.models import Delivery

    sub = find_subscriber(session, email)
    if sub is None:
        raise NotFoundError(f"no subscriber {email}")
    session.exec(delete(Delivery).where(col(Delivery.subscriber_id) == sub.id))  # type: ignore[call-overload]
    session.delete(sub)
    session.flush()


def _plain(value: object) -> object:
    """A column value as JSON has it: times in ISO 8601 (UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def subscriber_data(conn: Connection, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber, as JSON-ready data (GDPR access); None if gone.

    Their row, their events, their deliveries (which edition, its status, when it
    was sent) and the suppression entry of their address. Every query is keyed by
    their id or their address hash: nothing about anyone else.
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    row = conn.execute(select_(subs).where(subs.c.id == subscriber_id)).first()
    if row is None:
        return None
    events = SubscriberEvent.__table__  # type: ignore[attr-defined]
    deliveries, editions = Delivery.__table__, Edition.__table__  # type: ignore[attr-defined]
    event_rows = conn.execute(
        select_(events.c.kind, events.c.source, events.c.ref, events.c.detail, events.c.created_at)
        .where(events.c.subscriber_id == subscriber_id)
        .order_by(events.c.id)
    )
    delivery_rows = conn.execute(
        select_(editions.c.digest, editions.c.slot, deliveries.c.edition_id, deliveries.c.status, deliveries.c.sent_at)
        .join(editions, editions.c.id == deliveries.c.edition_id)
        .where(deliveries.c.subscriber_id == subscriber_id)
        .order_by(deliveries.c.id)
    )
    suppressed = suppression_of(conn, row.email_key)
    return {
        "subscriber": {k: _plain(v) for k, v in row._mapping.items() if k != "email_key"},
        "events": [{k: _plain(v) for k, v in r._mapping.items()} for r in event_rows],
        "deliveries": [{k: _plain(v) for k, v in r._mapping.items()} for r in delivery_rows],
        "suppression": None
        if suppressed is None
        else {"email": suppressed.email, "reason": suppressed.reason, "since": _plain(suppressed.created_at)},
    }


def erase_subscriber(conn: Connection, subscriber_id: int, now: datetime) -> bool:
    """Erase a subscriber (GDPR): their row, deliveries, events and slot claims; False if gone.

    Only the suppression list's hash of the address stays (added if it was not
    there, its stored address blanked), so the address is never mailed again
    and a re-import or a new sign-up needs a fresh confirmation.
    """
    subs = Subscriber.__table__  # type: ignore[attr-defined]
    key = conn.execute(select_(subs.c.email_key).where(subs.c.id == subscriber_id)).scalar_one_or_none()
    if key is None:
        return False
    suppress(conn, key, SuppressionReason.UNSUBSCRIBED, "erasure", now)
    conn.execute(update(SUPPRESSIONS).where(SUPPRESSIONS.c.email_hash == email_hash(key)).values(email=""))
    # Explicit deletes, not ON DELETE CASCADE: SQLite enforces foreign keys only when told to.
    for table in (Delivery.__table__, SubscriberEvent.__table__, SlotClaim.__table__):  # type: ignore[attr-defined]
        conn.execute(delete_(table).where(table.c.subscriber_id == subscriber_id))
    conn.execute(delete_(subs).where(subs.c.id == subscriber_id))
    log.info("subscriber %s erased at their request", subscriber_id)
    return True
