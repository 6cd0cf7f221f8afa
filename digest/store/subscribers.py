"""Subscribers: validate, add, import from CSV, list, change status, count bounces."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import get_close_matches
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete as delete_
from sqlalchemy import select as select_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, func, select

from digest.core.errors import InputError, NotFoundError
from digest.core.settings import check_timezone
from digest.core.text import mask_email, one_line, parse_hhmm
from digest.store.models import (
    Article,
    Delivery,
    Edition,
    SlotClaim,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    SuppressionReason,
)
from digest.store.suppressions import T as SUPPRESSIONS
from digest.store.suppressions import email_hash, suppress, suppression_of, unsuppress

log = logging.getLogger(__name__)


def normalise_email(raw: str, where: str = "email") -> tuple[str, str]:
    """Return ``(email, email_key)`` for a valid address; raise InputError otherwise.

    Deliverability (DNS) is not checked: that would reach the network, and a digest
    learns about dead addresses from bounces anyway.
    """
    try:
        info = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InputError(where, f"invalid email address {raw.strip()!r}: {exc}") from None
    email = info.normalized
    return email, email.casefold()


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


# The statuses an operator sets that put the address on the suppression list.
_SUPPRESSING: dict[str, str] = {
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
    yes); None keeps an existing subscriber's choice. ``alerts`` (breaking alerts by
    email, a new subscriber's default: no) likewise; quiet hours (no alerts between
    ``quiet_start`` and ``quiet_end``, local times) are set when both are given.

    An address on the suppression list is not made active (InputError) unless
    ``allow_suppressed``: the operator then vouches for a fresh confirmation, and the
    address leaves the list.
    """
    addr, key = normalise_email(email, where)
    tz = validate_timezone(timezone, where)
    wanted = parse_topics(topics)
    if topics_known is not None:
        wanted = topics_known.check(wanted, where)
    if status is not None and status not in SubscriberStatus.ALL:
        raise InputError(where, f"status must be one of {', '.join(SubscriberStatus.ALL)}")
    values: dict[str, Any] = {
        "name": one_line(name)[:200],
        "timezone": tz,
        "topics": wanted,
        "send_time": validate_send_time(send_time, where),
    }
    quiet = validate_quiet_hours(quiet_start, quiet_end, where)
    if quiet[0] is not None:
        values.update(quiet_start=quiet[0], quiet_end=quiet[1])
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
    if status in _SUPPRESSING:
        # An import that says a person left (or bounced) puts them on the list as well.
        suppress(session.connection(), addr, _SUPPRESSING[status], "cli", now)
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


@dataclass
class CsvReport:
    added: int = 0
    updated: int = 0
    problems: list[InputError] = field(default_factory=list)


CSV_COLUMNS = (
    "email",
    "name",
    "timezone",
    "topics",
    "status",
    "send_time",
    "breaking",
    "alerts",
    "quiet_start",
    "quiet_end",
)
_YES = ("true", "yes", "1")
_NO = ("false", "no", "0")


def _yes_no(raw: str | None, where: str, column: str) -> bool | None:
    """``true``/``false`` (also yes/no, 1/0, any case) of a CSV cell; None when empty."""
    value = (raw or "").strip().lower()
    if not value:
        return None
    if value in _YES or value in _NO:
        return value in _YES
    raise InputError(where, f"{column} must be true or false, not {one_line(raw or '')[:40]!r}")


def import_csv(
    session: Session,
    text: str,
    source: str,
    now: datetime,
    topics_known: KnownTopics | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    allow_suppressed: bool = False,
) -> CsvReport:
    """Import subscribers from CSV text with a header row (``email`` required).

    Each bad row is reported by file and line and skipped; valid rows are kept.
    Existing addresses are updated. Nothing is committed here: the caller's one
    transaction holds every row of the file, so a database failure on any row (a full
    disk, a constraint) leaves none of them behind. ``progress(1)`` is called for
    each row, as it is read. A suppressed address is a rejected
    row unless ``allow_suppressed`` (see :func:`add_subscriber`).
    """
    report = CsvReport()
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "email" not in fields:
        raise InputError(f"{source}:1", "CSV header must have an 'email' column")
    unknown = [f for f in fields if f not in CSV_COLUMNS]
    if unknown:
        raise InputError(f"{source}:1", f"unknown column(s): {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = fields
    lines = text.splitlines()
    end = reader.line_num
    for row in reader:
        # line_num is the record's LAST line (quoted fields may span lines): report the
        # first, as an editor shows it; blank lines in between are skipped by csv.
        start, end = end + 1, reader.line_num
        while start < end and not lines[start - 1].strip():
            start += 1
        where = f"{source}:{start}"
        if progress is not None:
            progress(1)
        # No savepoint per row: add_subscriber validates everything before it writes, so
        # a bad row leaves nothing behind. And on SQLite a savepoint opened outside a
        # transaction becomes the transaction: releasing it committed each row alone.
        try:
            breaking = _yes_no(row.get("breaking"), where, "breaking")
            alerts = _yes_no(row.get("alerts"), where, "alerts")
            _, created = add_subscriber(
                session,
                (row.get("email") or "").strip(),
                now,
                name=row.get("name") or "",
                timezone=row.get("timezone") or None,
                topics=row.get("topics") or None,
                status=(row.get("status") or "").strip().lower() or None,
                send_time=row.get("send_time") or None,
                where=where,
                update=True,
                topics_known=topics_known,
                allow_suppressed=allow_suppressed,
                breaking=breaking,
                alerts=alerts,
                quiet_start=row.get("quiet_start") or None,
                quiet_end=row.get("quiet_end") or None,
            )
        except InputError as exc:
            report.problems.append(exc)
            continue
        if created:
            report.added += 1
        else:
            report.updated += 1
    return report


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
    if status in _SUPPRESSING:
        suppress(session.connection(), sub.email, _SUPPRESSING[status], "cli", now)
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
