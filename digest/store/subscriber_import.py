"""``subscribers import``: a CSV file of subscribers, validated row by row, written set by set.

Each row is checked in Python (:meth:`~digest.store.subscriber_check.SubscriberCheck.fields`:
the address by email-validator, the timezone, the topics against the digests'
sections, status, send time, breaking), into a plain tuple. The good rows are written
a chunk at a time: the chunk's existing subscribers and suppressions looked up (one
query on PostgreSQL, which hashes the addresses itself; two on SQLite), then one bulk
insert of the new subscribers (``COPY`` on PostgreSQL, their values encoded once per
distinct value) and one executemany UPDATE of the existing ones. Within a chunk the
rows are applied in file order in memory, so the outcome is the one of adding them
one by one (:func:`~digest.store.subscribers.add_subscriber` with ``update``): a
later row for the same address updates the earlier one, an import never
re-subscribes someone who left, a suppressed address is refused unless the
operator allows it.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Connection
from sqlmodel import Session

from digest.core.errors import InputError
from digest.core.text import mask_email, one_line
from digest.store.bulk import RowEncoder, insert_encoder, insert_rows, rows_in
from digest.store.models import Subscriber, SubscriberStatus
from digest.store.subscriber_check import FIELD_COLUMNS, KnownTopics, SubscriberCheck
from digest.store.subscribers import SUPPRESSING
from digest.store.suppressions import T as SUPPRESSIONS
from digest.store.suppressions import email_hash, reasons_of_hashes, suppress_many

log = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]

CSV_COLUMNS = (
    "email", "name", "timezone", "topics", "status", "send_time", "breaking", "locale", "alerts", "quiet_start",
    "quiet_end",
)  # fmt: skip
_YES = ("true", "yes", "1")
_NO = ("false", "no", "0")
# Rows validated, then written, together: large enough that a statement's overhead
# is spread thin, small enough for one IN (...) list and a few MB of memory.
CHUNK_ROWS = 5000
# The columns an import sets on an existing subscriber.
_UPDATED = (
    "name", "timezone", "topics", "send_time", "locale", "quiet_start", "quiet_end", "breaking", "alerts", "status",
    "updated_at",
)  # fmt: skip
# A new subscriber's columns: a checked row's fields (SubscriberCheck.fields), its two
# flags, then the _SHARED columns every new row has alike.
_INSERTED = (
    "email", "email_key", "status", *FIELD_COLUMNS, "breaking", "alerts",
    "frequency", "bounce_count", "soft_bounce_streak", "created_at", "updated_at",
)  # fmt: skip
_STATUS, _TOPICS, _BREAKING, _ALERTS = (_INSERTED.index(c) for c in ("status", "topics", "breaking", "alerts"))
_FIELDS = _INSERTED.index(FIELD_COLUMNS[0])
_SHARED = _INSERTED.index("frequency")
_ACTIVE = SubscriberStatus.ACTIVE.value
_MEMO_SIZE = 10_000  # topic lists remembered encoded


@dataclass
class CsvReport:
    added: int = 0
    updated: int = 0
    problems: list[InputError] = field(default_factory=list)


def _yes_no(raw: str | None, where: str, column: str) -> bool | None:
    """``true``/``false`` (also yes/no, 1/0, any case) of a CSV cell; None when empty."""
    value = (raw or "").strip().lower()
    if not value:
        return None
    if value in _YES or value in _NO:
        return value in _YES
    raise InputError(where, f"{column} must be true or false, not {one_line(raw or '')[:40]!r}")


# A valid row: its checked fields (see SubscriberCheck.fields), its breaking and alerts
# cells (None: empty, the stored choice stays), and its first line in the file.
_Row = tuple[Any, ...]
_KEY = 1  # a _Row's address key


def import_csv(
    session: Session,
    text: str | Iterable[str],
    source: str,
    now: datetime,
    topics_known: KnownTopics | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    allow_suppressed: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> CsvReport:
    """Import subscribers from CSV with a header row (``email`` required).

    ``text``: the whole CSV, or its lines (an open text file, read as it goes: a file
    of a million rows is never held whole). Each bad row is reported by file and line
    and skipped; valid rows are kept. Existing addresses are updated. Nothing is
    committed here: the caller's one transaction holds every row of the file, so a
    database failure on any row (a full disk, a constraint) leaves none of them
    behind. ``progress(n)`` is called as rows are read. A suppressed address is a
    rejected row unless ``allow_suppressed`` (see :func:`~digest.store.subscribers.add_subscriber`).
    ``chunk_rows``: valid rows written together (the outcome does not depend on it).
    """
    report = CsvReport()
    reader = csv.reader(io.StringIO(text) if isinstance(text, str) else text)
    fields = [f.strip().lower() for f in next(reader, [])]
    if "email" not in fields:
        raise InputError(f"{source}:1", "CSV header must have an 'email' column")
    unknown = [f for f in fields if f not in CSV_COLUMNS]
    if unknown:
        raise InputError(f"{source}:1", f"unknown column(s): {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    # Each column's cell in a row padded with one empty cell, which stands for the absent
    # columns (and a short row's missing ones); a repeated column: its first.
    index = {name: i for i, name in reversed(list(enumerate(fields)))}
    width = len(fields)
    cells = itemgetter(*(index.get(name, width) for name in CSV_COLUMNS))
    check = SubscriberCheck(topics_known).fields
    problems = report.problems
    writer = _ChunkWriter(session.connection(), now, allow_suppressed, report, source)
    chunk: list[_Row] = []
    end = reader.line_num
    counted = read = 0
    with writer:
        for row in reader:
            # line_num is the record's LAST line (quoted fields may span lines): report the
            # first, as an editor shows it. A blank line is a record of no fields.
            start, end = end + 1, reader.line_num
            if not row:
                continue
            read += 1
            if len(row) != width:
                row = (row + [""] * width)[:width]
            row.append("")
            email, name, timezone, topics, status, send_time, breaking, locale, alerts, quiet_start, quiet_end = cells(
                row
            )
            where = f"{source}:{start}"
            try:
                yes = _yes_no(breaking, where, "breaking") if breaking else None
                alerted = _yes_no(alerts, where, "alerts") if alerts else None
                checked = check(
                    email.strip(),
                    name,
                    timezone or None,
                    topics or None,
                    status.strip().lower() or None,
                    send_time or None,
                    locale or None,
                    quiet_start or None,
                    quiet_end or None,
                    where,
                )
            except InputError as exc:
                problems.append(exc)
            else:
                chunk.append((*checked, yes, alerted, start))
            if len(chunk) >= chunk_rows:
                writer.submit(chunk)
                chunk = []
                if progress is not None:
                    progress(read - counted)
                    counted = read
        writer.submit(chunk)
        if progress is not None:
            progress(read - counted)
    problems.sort(key=lambda p: int(p.where.rpartition(":")[2]))
    return report


class _ChunkWriter:
    """Applies chunks of valid rows, in file order, with a few set-based statements each.

    A chunk is written in a thread of its own while the next one is read and checked:
    the database's work (the driver lets go of the GIL while SQLite or the server
    works) overlaps the validation. One chunk at a time, in order, on the caller's
    connection and transaction; its failure is raised in the caller's thread.
    """

    def __init__(self, conn: Connection, now: datetime, allow_suppressed: bool, report: CsvReport, source: str) -> None:
        self.conn = conn
        self.now = now
        self.allow_suppressed = allow_suppressed
        self.report = report
        self.source = source
        self.postgres = conn.dialect.name == "postgresql"
        mark = "%s" if self.postgres else "?"
        # An existing subscriber keeps each column the rows leave empty (NULL here).
        kept = ", ".join(f"{c} = COALESCE({mark}, {c})" for c in _UPDATED if c != "updated_at")
        self._update = f"UPDATE subscriber SET {kept}, updated_at = {mark} WHERE id = {mark}"
        self._encode = RowEncoder(conn, S, (*_UPDATED, "id")).encode
        # A new subscriber's row goes to the driver encoded: each distinct topic list and
        # flag once, the columns every new row shares once for the whole import.
        encoder = insert_encoder(conn, S, _INSERTED)
        self._topics = _Memo(functools.partial(encoder.value, "topics"))
        self._flag = {b: encoder.value("breaking", b) for b in (True, False)}
        self._tail = [encoder.value(c, v) for c, v in zip(_INSERTED[_SHARED:], ("daily", 0, 0, now, now), strict=True)]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="import-writer")
        self._pending: Future[None] | None = None

    def submit(self, rows: list[_Row]) -> None:
        """Write ``rows`` once the chunk before them is written (raising its failure, if any)."""
        self._wait()
        self._pending = self._pool.submit(self.write, rows)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                self._wait()
        finally:
            self._pool.shutdown(wait=True)  # never leave a write running on the connection

    def write(self, rows: list[_Row]) -> None:
        if not rows:
            return
        # The chunk's subscribers as they stand (id, status), then as the rows leave them
        # (status); the suppression list's reasons by address, as they stand and as the
        # rows leave them.
        ids, held = self._lookup({r[_KEY] for r in rows})
        status = {key: st for key, (_, st) in ids.items()}
        listed = dict(held)
        added: dict[str, tuple[str, str]] = {}  # key -> (address, reason) the rows put on the list
        new: dict[str, tuple[Any, ...]] = {}
        changes: dict[str, dict[str, Any]] = {}
        topics, flag, tail, allowed = self._topics, self._flag, self._tail, self.allow_suppressed
        for row in rows:
            email, key, st, *values, breaking, alerts, line = row
            was = status.get(key)
            if (st or was or _ACTIVE) == _ACTIVE and listed:
                reason = listed.get(key)
                if reason is not None and not allowed:
                    self.report.problems.append(
                        InputError(
                            f"{self.source}:{line}",
                            f"{mask_email(email)} is suppressed ({reason}): it needs a fresh confirmation "
                            "(or --allow-suppressed)",
                        )
                    )
                    continue
                if reason is not None:
                    del listed[key]
                    added.pop(key, None)
                    log.info("%s taken off the suppression list (allowed by the operator)", mask_email(email))
            if st in SUPPRESSING and key not in listed:
                # An import that says a person left (or bounced) puts them on the list as well.
                listed[key] = SUPPRESSING[st]
                added[key] = (email, SUPPRESSING[st])
            if was is None:
                status[key] = st = st or _ACTIVE
                name, tz, wanted, at, tag, quiet_start, quiet_end = values
                new[key] = (
                    email, key, st, name, tz, topics(wanted), at, tag, quiet_start, quiet_end,
                    flag[True if breaking is None else breaking], flag[bool(alerts)], *tail,
                )  # fmt: skip
                continue
            # As add_subscriber(update=True): what a row gives replaces, what it leaves empty stays.
            if st is not None:
                status[key] = st
            if key in new:  # added by an earlier row of this chunk: its row to insert changes
                earlier = list(new[key])
                for i, value in enumerate(values, _FIELDS):
                    if value:
                        earlier[i] = topics(value) if i == _TOPICS else value
                if breaking is not None:
                    earlier[_BREAKING] = flag[breaking]
                if alerts is not None:
                    earlier[_ALERTS] = flag[alerts]
                if st is not None:
                    earlier[_STATUS] = st
                new[key] = tuple(earlier)
            else:
                change = changes.setdefault(key, {})
                change.update((c, v) for c, v in zip(FIELD_COLUMNS, values, strict=True) if v)
                if breaking is not None:
                    change["breaking"] = breaking
                if alerts is not None:
                    change["alerts"] = alerts
                if st is not None:
                    change["status"] = st
            self.report.updated += 1
        self.report.added += len(new)
        self._suppressions(held, listed, added)
        insert_rows(self.conn, S, _INSERTED, new.values(), encoded=True)
        if changes:
            # A change holds only what the rows gave: a column it lacks is NULL, kept by COALESCE.
            now = self.now
            params = [self._encode([*(ch.get(c) for c in _UPDATED[:-1]), now, ids[k][0]]) for k, ch in changes.items()]
            self.conn.exec_driver_sql(self._update, params)

    def _lookup(self, keys: set[str]) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
        """The subscribers among ``keys`` (key -> id, status) and the suppressed ones (key -> reason)."""
        if self.postgres:
            # One query: the server hashes the addresses as email_hash does (SHA-256 of the key).
            found = self.conn.exec_driver_sql(
                "SELECT k.key, s.id, s.status, p.reason FROM unnest(%s::text[]) AS k (key) "
                "LEFT JOIN subscriber s ON s.email_key = k.key "
                "LEFT JOIN suppression p ON p.email_hash = encode(sha256(convert_to(k.key, 'UTF8')), 'hex') "
                "WHERE s.id IS NOT NULL OR p.reason IS NOT NULL",
                (list(keys),),
            )
            ids: dict[str, tuple[int, str]] = {}
            held: dict[str, str] = {}
            for key, sub_id, sub_status, reason in found:
                if sub_id is not None:
                    ids[key] = (sub_id, sub_status)
                if reason is not None:
                    held[key] = reason
            return ids, held
        found = rows_in(self.conn, "SELECT email_key, id, status FROM subscriber WHERE email_key {in}", list(keys))
        ids = {key: (sub_id, sub_status) for key, sub_id, sub_status in found}
        hashes = {email_hash(k): k for k in keys}
        return ids, {hashes[h]: reason for h, reason in reasons_of_hashes(self.conn, hashes).items()}

    def _suppressions(self, held: dict[str, str], listed: dict[str, str], added: dict[str, tuple[str, str]]) -> None:
        """Write the chunk's changes to the suppression list: the entries taken off, the ones put on."""
        gone = [email_hash(k) for k in held if k not in listed or k in added]
        if gone:
            self.conn.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email_hash.in_(gone)))
        suppress_many(self.conn, list(added.values()), "cli", self.now)


class _Memo:
    """``encode(value)``, each distinct value encoded once (a file repeats few topic lists)."""

    def __init__(self, encode: Callable[[Any], Any]) -> None:
        self._encode = encode
        self._seen: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        try:
            return self._seen[value]
        except KeyError:
            encoded = self._encode(value)
            if len(self._seen) < _MEMO_SIZE:
                self._seen[value] = encoded
            return encoded
