"""``digest serve`` as a real process: a scheduled send into a real SMTP server, signals, restarts, takeover.

These start the service as a subprocess through its real entry point, with a
schedule a few seconds ahead (the six-field cron of digest.edition.schedule, seconds first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.ingest.feeds import add_feed
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, Edition
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SinkHandler, SmtpSink
from tests.conftest import draft
from tests.feedserver import FeedServer, Route, feed_server, item, rss

DIGEST = str(Path(sys.executable).parent / "digest")
pytestmark = pytest.mark.slow
E2E_SECRET_KEY = "e2e-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class SlowHandler(SinkHandler):
    """A sink that takes ``delay`` seconds to accept each message (an SMTP transaction in flight)."""

    delay: float = 0.0

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_sink() -> Iterator[Callable[[float], SmtpSink]]:
    started: list[SmtpSink] = []

    def make(delay: float) -> SmtpSink:
        sink = SmtpSink()
        sink.handler = SlowHandler(delay=delay)
        sink.controller = Controller(sink.handler, hostname=sink.host, port=sink.port, decode_data=False)
        started.append(sink.start())
        return sink

    yield make
    for s in started:
        s.stop()


@dataclass
class Proc:
    """A running ``digest serve`` whose JSON log lines are collected as they come."""

    popen: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def wait_for(self, name: str, timeout: float = 30.0, **match: object) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.events):
                if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name} event in time; log:\n{''.join(self.raw)}")

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """A failed test must not leave a service running (it would hold the test schema)."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with feed_server() as server:
        yield server


def start(env: dict[str, str], *args: str) -> Proc:
    popen = subprocess.Popen([DIGEST, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _STARTED.append(popen)
    proc = Proc(popen)
    threading.Thread(target=proc._read, daemon=True).start()
    return proc


def write_config(path: Path, db_url: str, smtp_url: str, digests: dict[str, str], **service: str) -> dict[str, str]:
    svc = {"tick": '"1s"', "outbox_interval": '"1s"', "leader_interval": '"1s"', "shutdown_timeout": '"10s"'}
    svc["feed_allow_private"] = "true"  # the test feed server is on loopback
    svc.update(service)
    text = f'database_url = "{db_url}"\nsmtp_url = "{smtp_url}"\nsecret_key = "{E2E_SECRET_KEY}"\n'
    text += 'lease = "4s"\nbatch_size = 2\n[service]\n' + "".join(f"{k} = {v}\n" for k, v in svc.items())
    for name, schedule in digests.items():
        text += f'[digests.{name}]\ntitle = "{name.title()}"\nschedule = "{schedule}"\ntimezone = "UTC"\n'
    path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") or k.startswith("DIGEST_TEST_")}
    env["DIGEST_CONFIG"] = str(path)
    return env


def cron_at(at: datetime) -> str:
    return f"{at.second} {at.minute} {at.hour} * * *"


def seed(engine: Engine, n: int) -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(n)]
    now = datetime.now(UTC)
    with session_scope(engine) as s:
        upsert_articles(s, [draft("Harbour cities agree storm pact", published_at=now - timedelta(minutes=5))], now)
        for e in emails:
            add_subscriber(s, e, now)
    return emails


def ran_yesterday(engine: Engine, *digests: str) -> None:
    """Record an earlier edition of each digest, so a slot that passed moments ago is caught up at start."""
    yesterday = datetime.now(UTC) - timedelta(days=2)  # never the slot of a run near midnight
    with session_scope(engine) as s:
        for name in digests:
            s.add(Edition(digest=name, slot=yesterday.date().isoformat(), built_at=yesterday, status="sent"))


def deliveries(engine: Engine) -> list[tuple[Delivery, Edition]]:
    with session_scope(engine) as s:
        return list(s.exec(select(Delivery, Edition).join(Edition, Edition.id == Delivery.edition_id)).all())  # type: ignore[arg-type]


def test_serve_sends_the_scheduled_edition_stops_on_sigterm_and_restarts_without_duplicates(
    engine: Engine, db_url: str, sink: SmtpSink, tmp_path: Path, feeds: FeedServer
) -> None:
    emails = seed(engine, 3)
    at = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)  # startup takes a few seconds
    env = write_config(tmp_path / "digest.toml", db_url, sink.url, {"daily": cron_at(at)})
    server = feeds
    server.routes["/wire.xml"] = Route(
        body=rss(item(1, "Feed story polled by the service", format_datetime(datetime.now(UTC), usegmt=True))),
        etag='"w1"',
    )
    with session_scope(engine) as s:
        add_feed(s, server.url("/wire.xml"), datetime.now(UTC), every=timedelta(minutes=15))

    proc = start(env, "--log-format", "json", "serve")  # the global position of --log-format
    started = proc.wait_for("service.started")
    assert datetime.fromisoformat(started["ts"]) < at, "the service must be up before the slot"
    deadline = time.monotonic() + 40
    while len(sink.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=30) == 0

    assert sorted(m.rcpt_tos[0] for m in sink.messages) == emails
    # The feed was polled by the service, and its entry made it into the edition.
    assert proc.wait_for("feed.polled")["status"] == "ok"
    assert all(b"Feed story polled by the service" in m.data for m in sink.messages)
    built = proc.wait_for("edition.built")
    assert built["slot"] == at.date().isoformat() and built["due"] == at.isoformat().replace("+00:00", "Z")
    assert built["articles"] == 2
    assert datetime.fromisoformat(sink_time := built["ts"]) >= at, sink_time  # fired by the cron, not before
    rows = deliveries(engine)
    assert sorted(d.status for d, _ in rows) == [DeliveryStatus.SENT] * 3
    assert {e.slot for _, e in rows} == {at.date().isoformat()}
    proc.wait_for("service.stopped", clean=True)
    log_text = "".join(proc.raw)
    assert "reader0@example.org" not in log_text and "e2e-secret-key-1234" not in log_text

    # A restart finds the slot done in the store: no second edition, no second mail.
    again = start(env, "serve", "--log-format", "json")  # the command's own --log-format
    again.wait_for("leader.acquired")
    time.sleep(2.5)  # a few ticks of the slots and outbox jobs
    again.popen.send_signal(signal.SIGTERM)
    assert again.popen.wait(timeout=30) == 0
    assert len(sink.messages) == 3 and again.named("edition.built") == []
    with session_scope(engine) as s:
        assert len(s.exec(select(Edition)).all()) == 1


def test_sigterm_while_sending_finishes_the_transaction_in_flight_and_releases_the_rest(
    engine: Engine, db_url: str, slow_sink: Callable[[float], SmtpSink], tmp_path: Path
) -> None:
    sink = slow_sink(0.4)
    # More readers than the default pool keeps in flight (2 processes x 2 batches of 2), so
    # that some are still waiting when the signal comes.
    readers = 40
    seed(engine, readers)
    ran_yesterday(engine, "daily")
    at = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)  # caught up at start
    env = write_config(tmp_path / "digest.toml", db_url, sink.url, {"daily": cron_at(at)})
    proc = start(env, "--log-format", "json", "serve")
    proc.wait_for("edition.queued", timeout=40)
    deadline = time.monotonic() + 30
    while not sink.messages and time.monotonic() < deadline:
        time.sleep(0.02)

    proc.popen.send_signal(signal.SIGTERM)

    assert proc.popen.wait(timeout=20) == 0
    rows = deliveries(engine)
    sent = [d for d, _ in rows if d.status == DeliveryStatus.SENT]
    assert 1 <= len(sent) < readers
    # Every message the server accepted is recorded as sent, and nothing is left claimed.
    assert len(sent) == len(sink.messages)
    assert sorted(d.status for d, _ in rows if d.status != DeliveryStatus.SENT) == [DeliveryStatus.QUEUED] * (
        readers - len(sent)
    )
    assert all(d.claimed_by is None for d, _ in rows)


def test_second_signal_exits_at_once(
    engine: Engine, db_url: str, slow_sink: Callable[[float], SmtpSink], tmp_path: Path
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one backend is enough for signal handling")
    sink = slow_sink(20.0)  # the transaction in flight would take 20 s
    seed(engine, 2)
    ran_yesterday(engine, "daily")
    at = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)  # caught up at start
    env = write_config(tmp_path / "digest.toml", db_url, sink.url, {"daily": cron_at(at)}, shutdown_timeout='"30s"')
    proc = start(env, "--log-format", "json", "serve")
    proc.wait_for("edition.queued", timeout=40)
    time.sleep(1.5)  # the outbox is inside the slow DATA command now
    proc.popen.send_signal(signal.SIGTERM)
    proc.wait_for("service.stopping")
    t0 = time.monotonic()

    proc.popen.send_signal(signal.SIGTERM)

    assert proc.popen.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 5
    proc.wait_for("service.killed")
    assert {d.status for d, _ in deliveries(engine)} <= {DeliveryStatus.CLAIMED, DeliveryStatus.QUEUED}
    assert sink.messages == []  # the transaction was cut off, not completed


@pytest.mark.postgres
def test_two_services_on_postgresql_one_scheduler_takeover_after_kill_9(
    engine: Engine, db_url: str, slow_sink: Callable[[float], SmtpSink], tmp_path: Path
) -> None:
    """Two real processes on one database; the scheduler holder is killed with SIGKILL.

    The first edition is a catch-up the first leader does at start. After the kill,
    eight new subscribers choose a send time that has just passed: only a live
    scheduler can notice that local-time slot, so its edition proves the takeover.
    """
    if engine.dialect.name != "postgresql":
        pytest.skip("several services share PostgreSQL only")
    sink = slow_sink(0.05)
    seed(engine, 8)
    ran_yesterday(engine, "daily")
    env = write_config(
        tmp_path / "digest.toml", db_url, sink.url, {"daily": cron_at(datetime.now(UTC) - timedelta(seconds=30))}
    )
    a = start(env, "--log-format", "json", "serve")
    a.wait_for("leader.acquired")
    b = start(env, "--log-format", "json", "serve")
    b.wait_for("service.started")
    time.sleep(1.5)
    assert b.named("leader.acquired") == []  # one scheduler at a time

    # The caught-up edition: built once by the leader; both processes send from the outbox.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        len(sink.messages) < 8 or any(d.status != DeliveryStatus.SENT for d, _ in deliveries(engine))
    ):
        time.sleep(0.1)
    assert len(sink.messages) == 8

    a.popen.kill()  # kill -9 the scheduler holder
    killed = time.monotonic()
    a.popen.wait(timeout=10)
    b.wait_for("leader.acquired", timeout=30)
    takeover = time.monotonic() - killed
    assert takeover < 10, takeover

    now = datetime.now(UTC)
    with session_scope(engine) as s:
        for i in range(8):
            add_subscriber(s, f"late{i}@example.org", now, timezone="UTC", send_time=f"{now:%H:%M}")
    local_slot = f"{now:%Y-%m-%d %H:%M} UTC"
    deadline = time.monotonic() + 60
    while len(sink.messages) < 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # anything extra would arrive now
    b.popen.send_signal(signal.SIGTERM)
    assert b.popen.wait(timeout=30) == 0

    rcpts = [m.rcpt_tos[0] for m in sink.messages]
    assert len(rcpts) == 16 and len(set(rcpts)) == 16  # each delivery sent once
    with session_scope(engine) as s:
        slots = sorted(e.slot for e in s.exec(select(Edition).where(Edition.built_at > now - timedelta(minutes=5))))
    assert slots == [now.date().isoformat(), local_slot]  # each edition once
    built = b.named("edition.built")
    assert [e["slot"] for e in built] == [local_slot]  # by the new leader
    rows = deliveries(engine)
    assert len(rows) == 16 and all(d.status == DeliveryStatus.SENT for d, _ in rows)
    print(f"takeover after kill -9: {takeover:.2f}s")


def test_serve_runs_the_web_app_when_enabled(engine: Engine, db_url: str, sink: SmtpSink, tmp_path: Path) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one backend is enough for the web wiring")
    import httpx

    from digest.transport.sink import free_port

    port = free_port()
    env = write_config(tmp_path / "digest.toml", db_url, sink.url, {"daily": "0 0 7 * * *"})
    env.update(DIGEST_WEB__ENABLED="true", DIGEST_WEB__PORT=str(port))
    proc = start(env, "--log-format", "json", "serve")
    started = proc.wait_for("web.started", timeout=40)
    proc.wait_for("service.started", timeout=40)

    response = httpx.get(f"{started['url']}/healthz", timeout=10)

    assert response.status_code == 200
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=30) == 0
