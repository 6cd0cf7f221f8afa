"""The one validation of a subscriber's fields: address, name, timezone, topics, send time, language, quiet hours.

Shared by ``subscribers add``, the CSV import, the web forms and the API
(:class:`SubscriberCheck`); addresses go through email-validator (no DNS), with a
fast path for plain dot-atom addresses that gives the same result, and each distinct
domain validated once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from functools import lru_cache
from typing import Any, NamedTuple

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from sqlmodel import Session, select

from digest.core.errors import InputError
from digest.core.settings import check_locale, check_timezone
from digest.core.text import one_line, parse_hhmm
from digest.store.models import Article, SubscriberStatus


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
