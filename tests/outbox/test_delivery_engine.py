"""The delivery engine against real SMTP servers (aiosmtpd) on loopback, on every backend.

Failure classes, the connection pool, TLS and AUTH, rate limits, the circuit
breaker, leases and the journal, drain_outbox, the DKIM signer hook.
"""

from __future__ import annotations

import email
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from digest.app.send import send_digest, send_test
from digest.core.clock import FixedClock
from digest.core.errors import DeliveryError
from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.outbox.drain import drain_outbox
from digest.outbox.journal import Journal, recover_journals, worker_id
from digest.outbox.ledger import claim_batch, queue_deliveries
from digest.outbox.retry import backoff
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.transport.pool import CircuitBreaker, RateLimiter
from digest.transport.sink import free_port
from digest.transport.smtp import MemoryTransport, SMTPConfig, SMTPTransport, parse_smtp_url
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.smtp_script import ScriptedSink, self_signed

D = Delivery.__table__  # type: ignore[attr-defined]


@pytest.fixture
def script() -> Iterator[ScriptedSink]:
    with ScriptedSink() as s:
        yield s


@pytest.fixture
def pool(settings: Settings, script: ScriptedSink) -> Settings:
    """Settings that send over a pool of two connections to the scripted server."""
    settings.smtp_url = SecretStr(script.url)
    settings.smtp_timeout = 2.0
    settings.delivery.connections = 2
    return settings


def readers(n: int) -> list[tuple[str, str, str | None]]:
    return [(f"r{i}@example.org", f"Reader {i}", None) for i in range(n)]


def rows(engine: Engine) -> dict[str, Delivery]:
    with session_scope(engine) as s:
        found = s.exec(select(Delivery, Subscriber).join(Subscriber)).all()  # type: ignore[call-overload]
        return {sub.email: d for d, sub in found}


def subscriber(engine: Engine, email_addr: str) -> Subscriber:
    with session_scope(engine) as s:
        return s.exec(select(Subscriber).where(Subscriber.email_key == email_addr)).scalars().one()  # type: ignore[call-overload]


# ---------------------------------------------------------------- failure classes


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try later", "452 4.2.2 mailbox full"])
def test_4xx_at_rcpt_is_temporary_and_retried_after_a_backoff(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock, reply: str
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(4))
    script.handler.rcpt_replies["r1@example.org"] = reply
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed_temporary, report.failed_permanent) == (3, 1, 0)
    d = rows(engine)["r1@example.org"]
    assert d.status == DeliveryStatus.FAILED_TEMPORARY and d.attempts == 1
    assert d.last_response and d.last_response.startswith(reply[:3])
    assert NOW + pool.retry_base / 2 <= d.next_attempt_at <= NOW + pool.retry_base  # type: ignore[operator]
    assert sorted(script.handler.count()) == ["r0@example.org", "r2@example.org", "r3@example.org"]


@pytest.mark.parametrize(
    ("where", "reply"), [("rcpt", "550 5.1.1 no such user"), ("data", "552 5.3.4 message too big")]
)
def test_5xx_is_permanent_and_counts_towards_bouncing(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock, where: str, reply: str
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    replies = script.handler.rcpt_replies if where == "rcpt" else script.handler.data_replies
    replies["r1@example.org"] = reply
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed_permanent) == (2, 1)
    d = rows(engine)["r1@example.org"]
    assert d.status == DeliveryStatus.FAILED_PERMANENT and d.next_attempt_at is None
    assert d.last_response and d.last_response.startswith(reply[:3])
    sub = subscriber(engine, "r1@example.org")
    assert sub.bounce_count == 1 and sub.status == SubscriberStatus.ACTIVE


def test_connection_dropped_after_data_is_temporary_and_the_rest_still_go(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(5))
    script.handler.drop_after_data.add("r2@example.org")
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed_temporary) == (4, 1)
    d = rows(engine)["r2@example.org"]
    assert d.status == DeliveryStatus.FAILED_TEMPORARY and "after DATA" in (d.last_response or "")
    assert len(script.messages) == 4


def test_stalled_server_times_out_as_temporary(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.smtp_timeout = 0.5
    seed(engine, STANDARD_DRAFTS, readers(3))
    script.handler.stall["r0@example.org"] = 3.0
    report = send_digest(engine, pool, "daily", None, clock)
    assert (report.sent, report.failed_temporary) == (2, 1)
    assert "timed out" in (rows(engine)["r0@example.org"].last_response or "")


def test_temporary_failure_past_max_age_becomes_permanent(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(1))
    script.handler.rcpt_replies["r0@example.org"] = "451 4.3.0 try later"
    send_digest(engine, pool, "daily", None, clock)
    clock.advance(pool.retry_max_age + timedelta(minutes=1))
    edition_id = rows(engine)["r0@example.org"].edition_id
    report = drain_outbox(engine, pool, clock=clock)
    assert report.failed_permanent == 1 and edition_id in report.editions
    d = rows(engine)["r0@example.org"]
    assert d.status == DeliveryStatus.FAILED_PERMANENT and d.attempts == 2


def test_subscriber_is_bounced_after_bounce_limit_permanent_failures(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    from tests.conftest import draft

    pool.bounce_limit = 2
    seed(engine, STANDARD_DRAFTS, readers(2))
    script.handler.rcpt_replies["r0@example.org"] = "550 5.1.1 no such user"
    send_digest(engine, pool, "daily", None, clock)
    assert subscriber(engine, "r0@example.org").status == SubscriberStatus.ACTIVE
    clock.advance(timedelta(days=1))
    seed(engine, [draft("Next day news", -24 * 60 + 30)], [])
    send_digest(engine, pool, "daily", None, clock)
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.BOUNCED and sub.bounce_count == 2


def test_backoff_doubles_with_jitter_and_is_capped(settings: Settings) -> None:
    base = settings.retry_base
    for attempts in range(1, 6):
        delays = [backoff(settings, attempts) for _ in range(50)]
        assert all(base * 2 ** (attempts - 1) / 2 <= d <= base * 2 ** (attempts - 1) for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert backoff(settings, 40) <= settings.delivery.retry_max_delay


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


def test_every_server_down_stops_the_run_and_loses_nothing(
    engine: Engine, pool: Settings, clock: FixedClock
) -> None:
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


# ---------------------------------------------------------------- the outbox


def edition_of(engine: Engine, settings: Settings) -> int:
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    assert edition.id is not None
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id, NOW)
    return edition.id


def test_claims_of_concurrent_workers_never_overlap(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(200))
    edition_id = edition_of(engine, settings)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := claim_batch(engine, name, NOW, timedelta(minutes=5), 7, [edition_id]):
            mine += [c.delivery_id for c in batch]
        got[name] = mine

    threads = [threading.Thread(target=claim, args=(f"host:{i}:1",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == len(set(claimed)) == 200


def test_expired_lease_is_claimed_again(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition_id = edition_of(engine, settings)
    first = claim_batch(engine, "elsewhere:1:1", NOW, timedelta(minutes=5), 10, [edition_id])
    assert len(first) == 3
    assert claim_batch(engine, "here:2:2", NOW + timedelta(minutes=4), timedelta(minutes=5), 10, [edition_id]) == []
    again = claim_batch(engine, "here:2:2", NOW + timedelta(minutes=6), timedelta(minutes=5), 10, [edition_id])
    assert len(again) == 3


def dead_worker() -> str:
    """The worker id of a process of this host that has exited."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:1"


def test_claims_of_a_dead_process_on_this_host_are_released_at_once(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(4))
    edition_id = edition_of(engine, settings)
    dead = dead_worker()
    claim_batch(engine, dead, NOW, timedelta(minutes=5), 10, [edition_id])
    claim_batch(engine, "otherhost:1:1", NOW, timedelta(minutes=5), 10, [edition_id])  # nothing left for it
    found = recover_journals(engine, settings.delivery.journal_dir, NOW)
    assert found.released == 4
    with session_scope(engine) as s:
        assert set(s.exec(select(D.c.status)).scalars()) == {DeliveryStatus.QUEUED}  # type: ignore[call-overload]


def test_claims_of_a_live_process_are_left_alone(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(2))
    edition_id = edition_of(engine, settings)
    claim_batch(engine, worker_id(), NOW, timedelta(minutes=5), 10, [edition_id])
    assert recover_journals(engine, settings.delivery.journal_dir, NOW).released == 0


def test_journal_of_a_dead_sender_marks_its_accepted_messages_sent(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(5))
    edition_id = edition_of(engine, settings)
    dead = dead_worker()
    claimed = claim_batch(engine, dead, NOW, timedelta(minutes=5), 10, [edition_id])
    log = Journal(settings.delivery.journal_dir, dead).batch()
    for c in claimed[:2]:
        log.note(c.delivery_id, f"<m{c.delivery_id}@x>", NOW)
    found = recover_journals(engine, settings.delivery.journal_dir, NOW)
    assert (found.journalled, found.released) == (2, 3)
    by_id = {d.id: d for d in rows(engine).values()}
    assert [by_id[c.delivery_id].status for c in claimed] == ["sent"] * 2 + ["queued"] * 3
    assert by_id[claimed[0].delivery_id].message_id == f"<m{claimed[0].delivery_id}@x>"
    assert list(Path(settings.delivery.journal_dir).rglob("*.sent")) == []


def test_drain_outbox_sends_what_is_due_across_editions(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    from digest.core.settings import DigestConfig

    pool.digests["evening"] = DigestConfig(title="Evening", sections=["World"])
    seed(engine, STANDARD_DRAFTS, readers(3))
    for name in ("daily", "evening"):
        edition, _, _ = get_or_build_edition(engine, pool, name, NOW)
        with session_scope(engine) as s:
            queue_deliveries(s, edition.id, NOW)  # type: ignore[arg-type]
    report = drain_outbox(engine, pool, clock=clock)
    assert report.sent == 6 and len(report.editions) == 2
    with session_scope(engine) as s:
        assert {e.status for e in s.exec(select(Edition)).scalars()} == {EditionStatus.SENT}  # type: ignore[call-overload]
    assert drain_outbox(engine, pool, clock=clock).sent == 0


def test_drain_outbox_stops_when_asked_and_releases_the_rest(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 1
    pool.batch_size = 5
    seed(engine, STANDARD_DRAFTS, readers(30))
    edition_of(engine, pool)
    sent_before_stop = 3
    report = drain_outbox(engine, pool, clock=clock, should_stop=lambda: len(script.messages) >= sent_before_stop)
    assert sent_before_stop <= report.sent < 30
    counts = {s: n for s, n in _status_counts(engine).items()}
    assert counts.get(DeliveryStatus.CLAIMED, 0) == 0
    assert counts[DeliveryStatus.SENT] == report.sent == len(script.messages)
    assert counts[DeliveryStatus.QUEUED] == 30 - report.sent
    assert drain_outbox(engine, pool, clock=clock).sent == 30 - report.sent


def _status_counts(engine: Engine) -> dict[str, int]:
    from collections import Counter

    with session_scope(engine) as s:
        return dict(Counter(s.exec(select(D.c.status)).scalars()))  # type: ignore[call-overload]


def test_bounced_or_unsubscribed_after_queueing_is_skipped(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition_of(engine, pool)
    with session_scope(engine) as s:
        s.execute(
            update(Subscriber).where(Subscriber.email_key == "r1@example.org").values(status=SubscriberStatus.BOUNCED)
        )
    report = drain_outbox(engine, pool, clock=clock)
    assert (report.sent, report.skipped) == (2, 1)
    assert rows(engine)["r1@example.org"].status == DeliveryStatus.SKIPPED


# ---------------------------------------------------------------- signing, tokens


class PrependSigner:
    """Stands in for DKIM: prepends a DKIM-Signature header (picklable, for worker processes)."""

    def sign(self, message: bytes) -> bytes:
        return b"DKIM-Signature: v=1; test=" + str(len(message)).encode() + b"\r\n" + message


def test_signer_signs_every_filled_message(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    send_digest(engine, pool, "daily", None, clock, signer=PrependSigner())
    assert len(script.messages) == 3
    for m in script.messages:
        first, _, rest = m.data.partition(b"\r\n")
        assert first == b"DKIM-Signature: v=1; test=" + str(len(rest)).encode()


def test_signer_signs_test_copies(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    seed(engine, STANDARD_DRAFTS, readers(1))
    sink = MemoryTransport()
    with session_scope(engine) as s:
        send_test(s, settings, "daily", ["r0@example.org"], sink, clock, signer=PrependSigner())
    assert sink.messages[0][2].startswith(b"DKIM-Signature: ")


def test_signer_reaches_worker_processes(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pickle.dumps(PrependSigner())
    pool.delivery.processes = 2
    pool.batch_size = 4  # more due than one batch: worth starting the processes
    seed(engine, STANDARD_DRAFTS, readers(10))
    report = send_digest(engine, pool, "daily", None, clock, signer=PrependSigner())
    assert (report.sent, report.workers) == (10, 2) and len(script.messages) == 10
    assert all(m.data.startswith(b"DKIM-Signature: ") for m in script.messages)


def test_single_transport_still_works_for_callers_that_pass_one(
    engine: Engine, settings: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    with SMTPTransport(parse_smtp_url(script.url)) as t:
        report = send_digest(engine, settings, "daily", t, clock)
        assert t.connections_opened == 1
    assert report.sent == 3


def test_transport_factory_gets_each_connections_server_config(
    engine: Engine, pool: Settings, clock: FixedClock
) -> None:
    kept = MemoryTransport()
    configs = []

    def factory(config: SMTPConfig, max_per_connection: int) -> MemoryTransport:
        configs.append((config.host, config.port, max_per_connection))
        return kept

    seed(engine, STANDARD_DRAFTS, readers(3))
    send_digest(engine, pool, "daily", None, clock, transport_factory=factory)

    server = parse_smtp_url(pool.smtp_url.get_secret_value())
    assert len(kept.messages) == 3
    assert configs == [(server.host, server.port, pool.delivery.max_per_connection)] * pool.delivery.connections


def test_a_killed_but_unreaped_process_counts_as_dead() -> None:
    import subprocess
    import sys

    from digest.outbox.journal import _start_time, is_dead_here

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    start = _start_time(proc.pid)
    worker = f"{socket.gethostname()}:{proc.pid}:{start}"
    assert not is_dead_here(worker)
    proc.kill()
    deadline = time.monotonic() + 5
    while _start_time(proc.pid) != "zombie" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert is_dead_here(worker)  # a zombie: pid and start time still there, nothing runs
    proc.wait()
    assert is_dead_here(worker)
