"""``subscribers import``: a CSV file of subscribers, validated row by row, written set by set.

Each row is checked in Python (:class:`~digest.store.subscribers.SubscriberCheck`:
the address by email-validator, the timezone, the topics against the digests'
sections, status, send time, breaking). The good rows are written a chunk at a time:
one query for the chunk's existing subscribers and one for their suppressions, then
one multi-row INSERT of the new subscribers and one executemany UPDATE of the
existing ones. Within a chunk the rows are applied in file order in memory, so the
outcome is the one of adding them one by one (:func:`~digest.store.subscribers.add_subscriber`
with ``update``): a later row for the same address updates the earlier one, an
import never re-subscribes someone who left, a suppressed address is refused unless
the operator allows it.
"""

from __future__ import annotations

import csv
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
from digest.store.bulk import RowEncoder, insert_rows, rows_in
from digest.store.models import Subscriber, SubscriberStatus
from digest.store.subscribers import SUPPRESSING, Checked, KnownTopics, SubscriberCheck
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
_INSERTED = (
    "email", "email_key", "name", "status", "timezone", "topics", "breaking", "send_time", "locale", "alerts",
    "quiet_start", "quiet_end", "frequency",
    "bounce_count", "soft_bounce_streak", "created_at", "updated_at",
)  # fmt: skip


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


# A valid row: where it is (file:line), its checked fields, its breaking cell (None: empty).
# A valid row's breaking and alerts cells (None: empty, the stored choice stays).
_Row = tuple[str, Checked, bool | None, bool | None]


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
    check = SubscriberCheck(topics_known)
    writer = _ChunkWriter(session.connection(), now, allow_suppressed, report)
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
                    name=name,
                    timezone=timezone or None,
                    topics=topics or None,
                    status=status.strip().lower() or None,
                    send_time=send_time or None,
                    locale=locale or None,
                    quiet_start=quiet_start or None,
                    quiet_end=quiet_end or None,
                    where=where,
                )
            except InputError as exc:
                report.problems.append(exc)
            else:
                chunk.append((where, checked, yes, alerted))
            if len(chunk) >= chunk_rows:
                writer.submit(chunk)
                chunk = []
                if progress is not None:
                    progress(read - counted)
                    counted = read
        writer.submit(chunk)
        if progress is not None:
            progress(read - counted)
    report.problems.sort(key=lambda p: int(p.where.rpartition(":")[2]))
    return report


class _ChunkWriter:
    """Applies chunks of valid rows, in file order, with a few set-based statements each.

    A chunk is written in a thread of its own while the next one is read and checked:
    the database's work (the driver lets go of the GIL while SQLite or the server
    works) overlaps the validation. One chunk at a time, in order, on the caller's
    connection and transaction; its failure is raised in the caller's thread.
    """

    def __init__(self, conn: Connection, now: datetime, allow_suppressed: bool, report: CsvReport) -> None:
        self.conn = conn
        self.now = now
        self.allow_suppressed = allow_suppressed
        self.report = report
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        # An existing subscriber keeps each column the rows leave empty (NULL here).
        kept = ", ".join(f"{c} = COALESCE({mark}, {c})" for c in _UPDATED if c != "updated_at")
        self._update = f"UPDATE subscriber SET {kept}, updated_at = {mark} WHERE id = {mark}"
        self._encode = RowEncoder(conn, S, (*_UPDATED, "id")).encode
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
        hashes = {c.key: email_hash(c.key) for _, c, _, _ in rows}
        found = rows_in(self.conn, "SELECT id, email_key, status FROM subscriber WHERE email_key {in}", list(hashes))
        # The chunk's subscribers as they stand, then as the rows leave them: the status of
        # an existing one (and what the rows change), the whole row of a new one.
        status: dict[str, str] = {}
        ids: dict[str, int] = {}
        for sub_id, key, sub_status in found:
            ids[key], status[key] = sub_id, sub_status
        held = reasons_of_hashes(self.conn, hashes.values())
        listed = dict(held)  # hash -> reason, as the rows leave the list
        added: dict[str, tuple[str, str]] = {}  # hash -> (address, reason) the rows put on the list
        new: dict[str, dict[str, Any]] = {}
        changes: dict[str, dict[str, Any]] = {}
        for where, c, breaking, alerts in rows:
            h = hashes[c.key]
            if (c.status or status.get(c.key, SubscriberStatus.ACTIVE)) == SubscriberStatus.ACTIVE:
                reason = listed.get(h)
                if reason is not None and not self.allow_suppressed:
                    self.report.problems.append(
                        InputError(
                            where,
                            f"{mask_email(c.email)} is suppressed ({reason}): it needs a fresh confirmation "
                            "(or --allow-suppressed)",
                        )
                    )
                    continue
                if reason is not None:
                    del listed[h]
                    added.pop(h, None)
                    log.info("%s taken off the suppression list (allowed by the operator)", mask_email(c.email))
            if c.status in SUPPRESSING and h not in listed:
                # An import that says a person left (or bounced) puts them on the list as well.
                listed[h] = SUPPRESSING[c.status]
                added[h] = (c.email, SUPPRESSING[c.status])
            if c.key not in status:
                status[c.key] = c.status or SubscriberStatus.ACTIVE
                new[c.key] = {
                    **c.values,
                    "email": c.email,
                    "status": status[c.key],
                    "breaking": True if breaking is None else breaking,
                    "alerts": bool(alerts),
                }
                self.report.added += 1
                continue
            # As add_subscriber(update=True): what a row gives replaces, what it leaves empty stays.
            change = new.get(c.key) or changes.setdefault(c.key, {})
            change.update({k: v for k, v in c.values.items() if v})
            if breaking is not None:
                change["breaking"] = breaking
            if alerts is not None:
                change["alerts"] = alerts
            if c.status is not None:
                change["status"] = status[c.key] = c.status
            self.report.updated += 1
        self._suppressions(held, listed, added)
        now = self.now
        insert_rows(
            self.conn,
            S,
            _INSERTED,
            (
                (v["email"], key, v["name"], v["status"], v["timezone"], v["topics"], v["breaking"],
                 v["send_time"], v["locale"], v["alerts"], v.get("quiet_start"), v.get("quiet_end"), "daily", 0, 0,
                 now, now)
                for key, v in new.items()
            ),
        )  # fmt: skip
        if changes:
            # A change holds only what the rows gave: a column it lacks is NULL, kept by COALESCE.
            params = [self._encode([*(ch.get(c) for c in _UPDATED[:-1]), now, ids[k]]) for k, ch in changes.items()]
            self.conn.exec_driver_sql(self._update, params)

    def _suppressions(self, held: dict[str, str], listed: dict[str, str], added: dict[str, tuple[str, str]]) -> None:
        """Write the chunk's changes to the suppression list: the entries taken off, the ones put on."""
        gone = [h for h in held if h not in listed or h in added]
        if gone:
            self.conn.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email_hash.in_(gone)))
        suppress_many(self.conn, list(added.values()), "cli", self.now)
