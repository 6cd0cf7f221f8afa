"""The journal of accepted messages and the recovery of what a sender left behind.

Crash safety. A sender notes each accepted message in its *journal* (one small
append to a local file, right after the server's 250 and before the next message
on that connection) and records the batch in the database afterwards. After a
``kill -9`` the next sender on the same host sees that the process is gone (its
worker id holds host, pid and the process start time), marks what the journal
says was accepted as sent, and releases the rest at once instead of waiting for
the lease to expire; a live sender whose batch could not be recorded (the database
was down) replays its own journal before it claims again. A journal that cannot be
written stops the sender before its next message (:class:`JournalError`). The only
duplicates left are messages whose SMTP transaction was in flight at the kill: at
most one per open connection. See docs/delivery.md.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine

from digest.core.errors import JournalError
from digest.outbox.ledger import release_worker
from digest.store.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- worker identity


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), or None where unknown.

    A zombie (killed, not yet reaped: in a container whose init never reaps, it stays
    one) reports ``"zombie"``: it holds its pid and start time but runs no more.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return "zombie"
    return fields[19]


_WORKER: str | None = None


def worker_id() -> str:
    """``host:pid:start``: unique to this process, and checkable for liveness on this host."""
    global _WORKER
    pid = os.getpid()
    if _WORKER is None or _WORKER.split(":")[1] != str(pid):  # recomputed in a forked child
        _WORKER = f"{socket.gethostname()}:{pid}:{_start_time(pid) or 0}"
    return _WORKER


def is_dead_here(worker: str) -> bool:
    """True when ``worker`` names a process of this host that no longer runs.

    A pid that now belongs to another process (reused) counts as dead: the start
    time differs. A worker of another host is never judged here: its lease expires.
    """
    host, _, rest = worker.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return False
    now_start = _start_time(pid)
    if now_start == "zombie":
        return True
    if now_start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        # No /proc here: a live pid is trusted.
        return False
    return bool(start) and start != "0" and now_start != start


# ---------------------------------------------------------------- the journal


class BatchJournal:
    """The accepted messages of one claimed batch, one line each: ``id message-id epoch``.

    Plain ``write`` on an ``O_APPEND`` descriptor: the bytes are in the kernel once
    the call returns, which is what survives a ``kill -9`` (a power cut needs fsync,
    which would cost a disk flush a message: see docs/delivery.md).

    While open, the file belongs to a batch still being sent or recorded; once
    closed without :meth:`discard` (recording failed), it is left for
    :func:`recover_journals` to replay, in this process too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with _OPEN_LOCK:
            _OPEN.add(path)

    def note(self, delivery_id: int, message_id: str, at: datetime) -> None:
        """Append one accepted message; raises OSError when the line cannot be written whole."""
        if self._fd is None:
            raise OSError(errno.EBADF, "journal of this batch is closed", str(self.path))
        line = f"{delivery_id} {message_id} {at.timestamp():.3f}\n".encode()
        if os.write(self._fd, line) != len(line):
            # A short write is a full disk by another name: the line is torn, and ignored on replay.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def close(self) -> None:
        """Stop writing; keep the file (its batch could not be recorded: it is replayed later)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        with _OPEN_LOCK:
            _OPEN.discard(self.path)

    def discard(self) -> None:
        """The batch is recorded in the database: the journal has done its job."""
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            # A read-only journal directory: the file stays and is replayed later, which
            # re-records as sent what is recorded as sent already.
            log.warning("could not remove the journal %s: %s", self.path, exc.strerror or exc)


# Journal files of batches of this process still being sent or recorded: any other
# file of this process is one whose batch could not be recorded.
_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()


class Journal:
    """Per-process journal directory: ``DIR/<host>/<pid>-<start>-<batch>.sent``."""

    def __init__(self, directory: str | Path, worker: str) -> None:
        host, pid, start = worker.split(":")[:3]
        self.directory = Path(directory) / host
        self.prefix = f"{pid}-{start}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: OSError) -> JournalError:
        """The one-line error for a journal write that failed with ``exc``."""
        return JournalError(self.directory, exc.strerror or str(exc))

    def check(self) -> None:
        """Create, write and remove a probe file: a journal that cannot be written stops a
        send before its first message, not after a message the journal cannot keep."""
        probe = self.directory / f"{self.prefix}-probe-{threading.get_ident()}.tmp"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                # As long as a real line, so a disk with room for nothing more fails here.
                line = b"0 <probe@digest> 0000000000.000\n"
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(probe))
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink()
            raise self.error(exc) from None

    def batch(self) -> BatchJournal:
        # Numbered per process, not per Journal: a file left by an earlier send of
        # this process (its batch could not be recorded) is never reused or deleted.
        try:
            return BatchJournal(self.directory / f"{self.prefix}-{next(_BATCH_NUMBERS)}.sent")
        except OSError as exc:
            raise self.error(exc) from None


_BATCH_NUMBERS = itertools.count(1)


def _read_journal(path: Path) -> list[tuple[int, str, datetime]]:
    out = []
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():  # a torn last line is ignored: never written whole
            try:
                out.append((int(parts[0]), parts[1], datetime.fromtimestamp(float(parts[2]), UTC)))
            except ValueError:
                continue
    return out


@dataclass
class Recovery:
    """What :func:`recover_journals` found: deliveries marked sent from journals, and released."""

    journalled: int = 0
    released: int = 0
    workers: int = 0


def recover_journals(engine: Engine, journal_dir: str | Path, now: datetime) -> Recovery:
    """Finish what senders of this host left behind; call it before claiming anything.

    1. Journals of dead processes, and this process's own journals of batches it
       could not record (the database was down): their deliveries were accepted by
       the server, so they are recorded as sent (whatever their row says now). A
       live process that skipped its own would send them again once their lease
       expired.
    2. Claims of dead processes of this host are released at once (no waiting for
       the lease to expire).

    The journal files of batches still being sent (in this or another live process)
    are left alone.
    """
    found = Recovery()
    host = socket.gethostname()
    for path in _journals_left(Path(journal_dir) / host, host):
        found.journalled += _replay(engine, path)
    for holder in _claim_holders(engine, host):
        if holder and is_dead_here(holder):
            released = release_worker(engine, holder)
            found.released += released
            found.workers += 1
            log.warning("released %s deliveries claimed by %s, which is no longer running", released, holder)
    if found.journalled:
        log.warning("recorded %d accepted deliveries from journals of batches left unrecorded", found.journalled)
    return found


def _journals_left(directory: Path, host: str) -> list[Path]:
    """The journals of dead processes of this host, and this process's own closed ones."""
    journals = sorted(directory.glob("*.sent")) if directory.is_dir() else []
    own = "-".join(worker_id().split(":")[1:3])
    with _OPEN_LOCK:
        open_now = set(_OPEN)
    dead: dict[str, bool] = {}
    out = []
    for path in journals:
        pid, start = path.name.split("-")[:2]
        prefix = f"{pid}-{start}"
        if prefix == own:
            if path not in open_now:
                out.append(path)
            continue
        if prefix not in dead:
            dead[prefix] = is_dead_here(f"{host}:{pid}:{start}")
        if dead[prefix]:
            out.append(path)
    return out


def _replay(engine: Engine, path: Path) -> int:
    """Record the journal's deliveries as sent, remove it; return how many it held."""
    entries = _read_journal(path)
    if entries:
        with engine.begin() as conn:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("_id"), D.c.status != DeliveryStatus.SENT)
                .values(
                    status=DeliveryStatus.SENT,
                    message_id=bindparam("_msgid"),
                    sent_at=bindparam("_at"),
                    attempts=D.c.attempts + 1,
                    claimed_by=None,
                    lease_until=None,
                    next_attempt_at=None,
                    last_response="250 accepted (recorded from the sender's journal)",
                ),
                [{"_id": i, "_msgid": m, "_at": at} for i, m, at in entries],
            )
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        # Read-only: replayed again next time, which changes nothing (sent stays sent).
        log.warning("could not remove the journal %s: %s", path, exc.strerror or exc)
    return len(entries)


def _claim_holders(engine: Engine, host: str) -> list[str]:
    """The workers of this host holding claims."""
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                select(D.c.claimed_by)
                .where(D.c.status == DeliveryStatus.CLAIMED, D.c.claimed_by.like(f"{host}:%"))
                .distinct()
            )
        ]
