"""The pool of SMTP connections: spreading, reconnects, breakers, rate limits, TLS and AUTH."""

from __future__ import annotations

import email
import time
from email import policy
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.errors import DeliveryError
from digest.core.settings import Settings
from digest.outbox import processes
from digest.outbox.sender import SendReport
from digest.store.models import DeliveryStatus
from digest.transport.pool import CircuitBreaker, RateLimiter
from digest.transport.sink import free_port
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers, rows, subscriber
from tests.smtp_script import ScriptedSink, self_signed

# ---------------------------------------------------------------- the pool


def test_pool_spreads_messages_over_its_connections(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 3
    seed(engine, STANDARD_DRAFTS, readers(60))
    report = send_digest(engine, pool, "daily", None, clock)
    assert report.sent == 60 and len(script.messages) == 60
    assert len(script.handler.sessions) == 3


def test_reconnects_after_the_servers_per_connection_limit(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 1
    script.handler.messages_per_connection = 4
    seed(engine, STANDARD_DRAFTS, readers(10))
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed) == (10, 0)
    assert len(script.handler.sessions) == 3


def test_max_per_connection_reconnects_before_the_server_objects(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 1
    pool.smtp_url = SecretStr(f"{script.url}?max_per_connection=3")
    seed(engine, STANDARD_DRAFTS, readers(7))
    report = send_digest(engine, pool, "daily", None, clock)
    assert report.sent == 7 and len(script.handler.sessions) == 3


def test_pipelining_server_gets_identical_messages(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    script.handler.pipelining = True
    script.handler.rcpt_replies["r1@example.org"] = "550 5.1.1 no such user"
    seed(engine, STANDARD_DRAFTS, readers(4))
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed_permanent) == (3, 1)
    for m in script.messages:
        msg = email.message_from_bytes(m.data, policy=policy.default)
        assert msg["To"].addresses[0].addr_spec == m.rcpt_tos[0]  # type: ignore[attr-defined]


def test_a_down_server_is_skipped_and_another_takes_its_messages(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    dead = f"smtp://127.0.0.1:{free_port()}"
    pool.delivery.servers = [SecretStr(dead), SecretStr(script.url)]
    seed(engine, STANDARD_DRAFTS, readers(12))
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed) == (12, 0)
    assert len(script.messages) == 12


def test_every_server_down_stops_the_run_and_loses_nothing(engine: Engine, pool: Settings, clock: FixedClock) -> None:
    pool.smtp_url = SecretStr(f"smtp://127.0.0.1:{free_port()}")
    seed(engine, STANDARD_DRAFTS, readers(20))
    with pytest.raises(DeliveryError, match="unavailable"):
        send_digest(engine, pool, "daily", None, clock)
    statuses = [d.status for d in rows(engine).values()]
    assert DeliveryStatus.SENT not in statuses and DeliveryStatus.CLAIMED not in statuses
    # Only the few messages tried before the breaker opened burned an attempt.
    assert statuses.count(DeliveryStatus.FAILED_TEMPORARY) <= pool.delivery.breaker_failures + pool.delivery.connections
    assert statuses.count(DeliveryStatus.QUEUED) >= 20 - 5


def test_breaker_opens_after_n_failures_and_lets_one_probe_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(3, 60, now=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.failure("refused")
    assert breaker.is_open and not breaker.allow()
    now[0] = 61
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.success()
    assert not breaker.is_open and breaker.allow()


def test_rate_limiter_spaces_messages_per_second() -> None:
    now = [100.0]
    limiter = RateLimiter(per_second=10, now=lambda: now[0])
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_rate_limiter_holds_the_hourly_limit_over_a_rolling_hour() -> None:
    now = [3600.0 * 10]
    limiter = RateLimiter(per_hour=100, now=lambda: now[0])
    assert all(limiter.reserve() == 0 for _ in range(100))
    wait = limiter.reserve()
    assert 3600 <= wait <= 3660


def test_rate_limit_is_honoured_across_the_connections_of_a_process(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 4
    pool.smtp_url = SecretStr(f"{script.url}?rate=20")
    seed(engine, STANDARD_DRAFTS, readers(21))
    started = time.monotonic()
    report = send_digest(engine, pool, "daily", None, clock)
    assert report.sent == 21
    assert time.monotonic() - started >= 0.95  # 21 messages at 20/s: at least a second apart end to end


# ---------------------------------------------------------------- TLS and AUTH


def tls_settings(pool: Settings, url: str, cert: Path) -> Settings:
    pool.smtp_url = SecretStr(f"{url}?cafile={cert}" + ("&starttls=true" if url.startswith("smtp:") else ""))
    return pool


# With implicit TLS the whole session is encrypted; aiosmtpd only knows STARTTLS as "TLS".
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_tls_with_a_verified_self_signed_certificate(
    engine: Engine, pool: Settings, clock: FixedClock, tmp_path: Path, implicit: bool
) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context, implicit_tls=implicit, users={"mailer": "s3cret"}) as server:
        url = server.url.replace("://", "://mailer:s3cret@")
        tls_settings(pool, url, cert)
        seed(engine, STANDARD_DRAFTS, readers(3))
        report = send_digest(engine, pool, "daily", None, clock)
    assert report.sent == 3 and len(server.messages) == 3


def test_tls_certificate_that_does_not_verify_sends_nothing(
    engine: Engine, pool: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    context, _ = self_signed(tmp_path)
    with ScriptedSink(tls=context) as server:
        pool.smtp_url = SecretStr(f"{server.url}?starttls=true")  # system CAs only
        seed(engine, STANDARD_DRAFTS, readers(6))
        with pytest.raises(DeliveryError, match="unavailable"):
            send_digest(engine, pool, "daily", None, clock)
        assert server.messages == []


def test_wrong_password_pauses_the_server_bounces_nobody_and_is_never_echoed(
    engine: Engine, pool: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context, users={"mailer": "right"}) as server:
        tls_settings(pool, server.url.replace("://", "://mailer:Wr0ngPassw0rd@"), cert)
        seed(engine, STANDARD_DRAFTS, readers(6))
        with pytest.raises(DeliveryError, match="authentication failed") as info:
            send_digest(engine, pool, "daily", None, clock)
    assert "Wr0ngPassw0rd" not in str(info.value)
    found = rows(engine)
    assert {d.status for d in found.values()} <= {DeliveryStatus.QUEUED, DeliveryStatus.FAILED_TEMPORARY}
    assert all("Wr0ngPassw0rd" not in (d.last_response or "") for d in found.values())
    assert subscriber(engine, "r0@example.org").bounce_count == 0


def test_a_sender_keeps_no_batch_once_it_is_recorded(
    engine: Engine, pool: Settings, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept, the batches of a million messages held their results to the end (370 MB a sender).
    held: list[int] = []

    class Watched(processes.Sender):
        def run(self, edition_ids: list[int]) -> SendReport:
            report = super().run(edition_ids)
            held.append(len(self._batches))
            return report

    monkeypatch.setattr(processes, "Sender", Watched)
    pool.batch_size = 5
    seed(engine, STANDARD_DRAFTS, readers(40))

    report = send_digest(engine, pool, "daily", None, clock)

    assert report.sent == 40
    assert held == [0]
