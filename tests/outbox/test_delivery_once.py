"""A message the server accepted (250) is never sent again, whatever fails afterwards.

Faults after the 250, on every backend: the journal write (a full or read-only
tmpfs where the test may mount one, else an injected ENOSPC), the result write
(the database gone while a batch is recorded), the lease extension, and a
``kill -9``. Each subscriber must receive the edition exactly once, counted at a
real SMTP server, except a message in flight at a kill (at most one per open
connection). The PostgreSQL outage of ``digest serve`` is a TCP proxy the test cuts.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

import digest.outbox.sender as sender_module
from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.errors import JournalError
from digest.core.settings import DigestConfig, Settings
from digest.edition.build import get_or_build_edition
from digest.outbox.journal import BatchJournal, Journal, recover_journals, worker_id
from digest.outbox.ledger import claim_batch, queue_deliveries
from digest.service.runner import Service
from digest.store.db import make_engine, session_scope, upgrade
from digest.store.models import Delivery, DeliveryStatus
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from tests.cli.test_delivery_cli import digest
from tests.conftest import NOW, ROOT, STANDARD_DRAFTS, empty_database, seed
from tests.service.test_serve import SlowHandler

SUBSCRIBERS = 20


def readers(n: int = SUBSCRIBERS) -> list[tuple[str, str, str | None]]:
    return [(f"r{i}@example.org", f"Reader {i}", None) for i in range(n)]


def received(sink: SmtpSink) -> Counter[str]:
    with sink.handler.lock:
        return Counter(r for m in sink.messages for r in m.rcpt_tos)


def statuses(engine: Engine) -> Counter[str]:
    with session_scope(engine) as s:
        return Counter(s.exec(select(Delivery.status)).scalars())  # type: ignore[call-overload]


def journal_files(directory: str | Path) -> list[Path]:
    return list(Path(directory).rglob("*.sent"))


def everyone_once(n: int = SUBSCRIBERS) -> Counter[str]:
    return Counter({f"r{i}@example.org": 1 for i in range(n)})


# ---------------------------------------------------------------- real faults: a tmpfs for the journal


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """``tmpfs()``: a fresh 16 KiB tmpfs (four pages) with ``journal/<host>`` made; skips where mount is refused."""
    mounted: list[Path] = []

    def mount() -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(where)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        (where / "journal" / socket.gethostname()).mkdir(parents=True)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path, leave_pages: int = 0) -> Path:
    """Fill the tmpfs up to ENOSPC with one file, then give back ``leave_pages`` pages."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with suppress(OSError):
            while os.write(fd, b"x" * 4096) == 4096:
                pass
    finally:
        os.close(fd)
    if leave_pages:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave_pages * 4096))
    return filler


def write_config(
    tmp_path: Path, db_url: str, smtp_url: str, journal_dir: Path, batch_size: int = 5, processes: int = 1
) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(
        "\n".join(
            [
                f'database_url = "{db_url}"',
                f'smtp_url = "{smtp_url}"',
                'secret_key = "test-secret"',
                'base_url = "https://news.example.com"',
                'from_addr = "The Briefing <briefing@news.example.com>"',
                f"batch_size = {batch_size}",
                'retry_base = "1m"',
                "[delivery]",
                f'journal_dir = "{journal_dir}"',
                "connections = 1",
                f"processes = {processes}",
                "[digests.daily]",
                'title = "The Briefing"',
                'sections = ["World", "Business", "Science"]',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def hour(h: int) -> str:
    return f"2026-11-25T{h:02d}:00:00+00:00"


@pytest.mark.slow
def test_full_journal_disk_sends_nothing_and_stops_with_one_line_until_there_is_room(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, tmpfs: Callable[[], Path]
) -> None:
    fs = tmpfs()
    filler = fill(fs)
    config = write_config(tmp_path, db_url, sink.url, fs / "journal")
    seed(engine, STANDARD_DRAFTS, readers())
    runs = [digest(config, "send", "--at", hour(h)) for h in (6, 7, 8)]  # an hour apart: retries are due
    assert sum(received(sink).values()) == 0, f"{received(sink).total()} messages to {SUBSCRIBERS} subscribers"
    for run in runs:
        assert run.returncode == 74, run.stdout + run.stderr
        errors = [line for line in run.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "Traceback" not in run.stderr
        assert str(fs / "journal") in errors[0] and "No space left on device" in errors[0]

    filler.unlink()
    last = digest(config, "send", "--at", hour(9))
    assert last.returncode == 0, last.stderr
    assert received(sink) == everyone_once()
    assert statuses(engine) == {DeliveryStatus.SENT: SUBSCRIBERS}


@pytest.mark.slow
def test_journal_disk_filling_up_mid_send_stops_the_sender_and_repeats_nobody(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, tmpfs: Callable[[], Path]
) -> None:
    fs = tmpfs()
    # One page left: room for the probe and ~68 journal lines, fewer than a batch of 100.
    fill(fs, leave_pages=1)
    subscribers = 150
    config = write_config(tmp_path, db_url, sink.url, fs / "journal", batch_size=100)
    seed(engine, STANDARD_DRAFTS, readers(subscribers))
    codes = []
    for h in range(6, 14):
        run = digest(config, "send", "--at", hour(h))
        codes.append(run.returncode)
        if run.returncode == 0 and "still pending" not in run.stdout:
            break
    got = received(sink)
    assert got == everyone_once(subscribers), f"{got.total()} messages to {subscribers} subscribers; exit codes {codes}"
    assert codes[0] == 74 and codes[-1] == 0  # stopped mid-send, finished later
    assert statuses(engine) == {DeliveryStatus.SENT: subscribers}
    assert journal_files(fs) == []


@pytest.mark.slow
def test_journal_disk_filling_up_stops_every_sender_process(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, tmpfs: Callable[[], Path]
) -> None:
    fs = tmpfs()
    fill(fs, leave_pages=1)  # ~68 journal lines: no batch of 100 fits, whichever process gets the page
    subscribers = 300
    config = write_config(tmp_path, db_url, sink.url, fs / "journal", batch_size=100, processes=2)
    seed(engine, STANDARD_DRAFTS, readers(subscribers))
    first = digest(config, "send", "--at", hour(6))
    assert first.returncode == 74, first.stdout + first.stderr
    # Whichever process met the full disk first (the starting one sends too while the others start).
    assert str(fs / "journal") in first.stderr and "sending stopped" in first.stderr
    assert 0 < received(sink).total() < subscribers
    codes = [first.returncode]
    for h in range(7, 14):
        run = digest(config, "send", "--at", hour(h))
        codes.append(run.returncode)
        if run.returncode == 0 and "still pending" not in run.stdout:
            break
    got = received(sink)
    assert got == everyone_once(subscribers), f"{got.total()} messages to {subscribers} subscribers; exit codes {codes}"
    assert statuses(engine) == {DeliveryStatus.SENT: subscribers}


def test_read_only_journal_stops_send_before_the_first_message(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, tmpfs: Callable[[], Path]
) -> None:
    fs = tmpfs()
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    config = write_config(tmp_path, db_url, sink.url, fs / "journal")
    seed(engine, STANDARD_DRAFTS, readers())
    run = digest(config, "send", "--at", hour(6))
    assert run.returncode == 74
    assert "Read-only file system" in run.stderr and str(fs / "journal") in run.stderr
    assert received(sink).total() == 0
    assert statuses(engine) == {DeliveryStatus.QUEUED: SUBSCRIBERS}


@pytest.mark.parametrize("fault", ["full-tmpfs", "injected"])
def test_serve_with_a_full_journal_sends_nothing_says_so_once_and_resumes_when_there_is_room(
    engine: Engine,
    settings: Settings,
    sink: SmtpSink,
    clock: FixedClock,
    tmpfs: Callable[[], Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    full = True
    if fault == "full-tmpfs":
        fs = tmpfs()
        settings.delivery.journal_dir = str(fs / "journal")
        filler = fill(fs)
    else:
        check = Journal.check

        def failing_check(self: Journal) -> None:
            if full:
                raise self.error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
            check(self)

        monkeypatch.setattr(Journal, "check", failing_check)
    seed(engine, STANDARD_DRAFTS, readers())
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id, NOW)  # type: ignore[arg-type]
    service = Service(settings, engine, clock=clock)
    caplog.set_level("INFO", logger="digest")
    for _ in range(3):
        service.send()  # three drains of the outbox job
        clock.advance(timedelta(minutes=10))
    said = [r for r in caplog.records if r.getMessage() == "outbox.journal_unwritable"]
    assert received(sink).total() == 0
    assert len(said) == 1 and "No space left on device" in str(said[0].__dict__["fields"]["error"])
    assert statuses(engine) == {DeliveryStatus.QUEUED: SUBSCRIBERS}

    full = False
    if fault == "full-tmpfs":
        filler.unlink()
    service.send()
    assert received(sink) == everyone_once()
    assert [r.getMessage() for r in caplog.records].count("outbox.journal_writable") == 1


# ---------------------------------------------------------------- every step after the 250, by injection


def injected_outage() -> OperationalError:
    return OperationalError("UPDATE delivery", {}, ConnectionRefusedError("injected: the database is unreachable"))


FAULTS = ["journal-write", "result-write", "lease-extension"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_after_the_250_never_sends_again(
    engine: Engine,
    settings: Settings,
    sink: SmtpSink,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    """The fault is on for the first two sends of this process, then gone; later sends
    run after the lease and the retry back-off would have expired."""
    settings.batch_size = 5
    settings.delivery.connections = 1
    seed(engine, STANDARD_DRAFTS, readers())
    broken = True
    if fault == "journal-write":
        note, notes = BatchJournal.note, [0]

        def failing_note(self: BatchJournal, delivery_id: int, message_id: str, at: datetime) -> None:
            notes[0] += 1
            if broken and notes[0] >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            note(self, delivery_id, message_id, at)

        monkeypatch.setattr(BatchJournal, "note", failing_note)
    elif fault == "result-write":
        record = sender_module.record

        def failing_record(*args: object, **kw: object) -> None:
            if broken:
                raise injected_outage()
            record(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(sender_module, "record", failing_record)
    else:
        settings.lease = timedelta(milliseconds=30)  # extended every 10 ms of sending
        extend = sender_module.extend_leases

        def failing_extend(*args: object, **kw: object) -> None:
            if broken:
                raise injected_outage()
            extend(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(sender_module, "extend_leases", failing_extend)

    outcomes = []
    for run in range(6):
        broken = run < 2
        try:
            report = send_digest(engine, settings, "daily", None, clock)
        except (JournalError, OperationalError) as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append("done")
            if not report.pending_after:
                break
        clock.advance(timedelta(hours=1))
    got = received(sink)
    assert got == everyone_once(), f"{got.total()} messages to {SUBSCRIBERS} subscribers; runs: {outcomes}"
    assert outcomes[0] != "done", "the fault must have struck"
    assert statuses(engine) == {DeliveryStatus.SENT: SUBSCRIBERS}
    assert journal_files(settings.delivery.journal_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize(("point", "duplicates"), [("after-journal", 0), ("in-flight", 1)])
def test_a_kill_after_the_250_sends_again_only_the_message_in_flight(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, point: str, duplicates: int
) -> None:
    config = write_config(tmp_path, db_url, sink.url, tmp_path / "journal")
    seed(engine, STANDARD_DRAFTS, readers())
    killed = subprocess.run(
        [sys.executable, "-m", "tests.kill_sender", str(config), hour(6), point, "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    assert received(sink).total() == 7
    again = digest(config, "send", "--at", hour(6))
    assert again.returncode == 0, again.stderr
    got = received(sink)
    assert set(got) == set(everyone_once())
    assert got.total() - SUBSCRIBERS == duplicates, f"{got.total()} messages to {SUBSCRIBERS} subscribers"
    assert statuses(engine) == {DeliveryStatus.SENT: SUBSCRIBERS}


def test_recovery_replays_this_process_own_unrecorded_journal_but_never_an_open_one(
    engine: Engine, settings: Settings
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id, NOW)  # type: ignore[arg-type]
    mine = claim_batch(engine, worker_id(), NOW, settings.lease, 10, [edition.id])  # type: ignore[list-item]
    journal = Journal(settings.delivery.journal_dir, worker_id())
    unrecorded = journal.batch()  # its batch could not be recorded: closed, kept
    unrecorded.note(mine[0].delivery_id, "<a@x>", NOW)
    unrecorded.close()
    sending = journal.batch()  # a batch still being sent by this process
    sending.note(mine[1].delivery_id, "<b@x>", NOW)
    try:
        found = recover_journals(engine, settings.delivery.journal_dir, NOW)
        assert (found.journalled, found.released) == (1, 0)
        with session_scope(engine) as s:
            by_id = dict(s.exec(select(Delivery.id, Delivery.status)).all())  # type: ignore[call-overload]
        assert [by_id[c.delivery_id] for c in mine] == ["sent", "claimed", "claimed"]
        assert not unrecorded.path.exists() and sending.path.exists()
    finally:
        sending.discard()


# ---------------------------------------------------------------- digest serve and a PostgreSQL outage


class Proxy:
    """A TCP proxy on loopback to ``target`` that the test can cut (every connection
    dropped, new ones refused) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with empty_database("postgresql", tmp_path) as url:
        yield url


@pytest.mark.postgres
def test_serve_after_a_database_outage_records_what_it_sent_and_sends_it_never_again(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=pg_url,
        secret_key="test-secret",  # type: ignore[arg-type]
        base_url="https://news.example.com",
        from_addr="The Briefing <briefing@news.example.com>",
        digests={"daily": DigestConfig(title="The Briefing", sections=["World", "Business", "Science"])},
        # A table, not a DeliverySettings: DIGEST_DELIVERY__* variables merge into a table only.
        delivery={"journal_dir": str(tmp_path / "journal"), "processes": 1},  # type: ignore[arg-type]
    )
    direct = make_engine(pg_url)
    upgrade(direct)
    subscribers, batch = 60, 10
    seed(direct, STANDARD_DRAFTS, readers(subscribers))
    edition, _, _ = get_or_build_edition(direct, settings, "daily", NOW)
    with session_scope(direct) as s:
        queue_deliveries(s, edition.id, NOW)  # type: ignore[arg-type]

    url = make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    slow = SmtpSink()
    slow.handler = SlowHandler(delay=0.02)
    slow.controller = Controller(slow.handler, hostname=slow.host, port=slow.port, decode_data=False)
    slow.start()
    try:
        settings.batch_size = batch
        settings.delivery.connections = 1
        clock = FixedClock(NOW)
        service = Service(
            settings,
            proxied,
            clock=clock,
            transport_factory=lambda config, max_per_connection: SMTPTransport(parse_smtp_url(slow.url, 5)),
        )
        failed: list[BaseException] = []

        def drain() -> None:
            try:
                service.send()
            except BaseException as exc:  # noqa: BLE001 - the outage, seen by the job
                failed.append(exc)

        first = threading.Thread(target=drain)
        first.start()
        while len(slow.messages) < 15 and first.is_alive():
            threading.Event().wait(0.005)
        proxy.cut()
        first.join(30)
        assert failed and isinstance(failed[0], OperationalError), failed
        at_outage = len(slow.messages)
        assert 0 < at_outage < subscribers
        with pytest.raises(OperationalError):
            service.send()  # the next drain while the database is still down

        proxy.restore()
        clock.advance(settings.lease + timedelta(minutes=1))  # every lease of the first drain has expired
        for _ in range(3):
            service.send()
        got = received(slow)
        assert got == everyone_once(subscribers), f"{got.total()} messages to {subscribers} subscribers"
        assert statuses(direct) == {DeliveryStatus.SENT: subscribers}
        assert journal_files(settings.delivery.journal_dir) == []
    finally:
        slow.stop()
        proxied.dispose()
        proxy.close()
        direct.dispose()
