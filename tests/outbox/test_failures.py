"""Failures per recipient: temporary vs permanent, back-off, bouncing (a scripted real SMTP server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.bounces import record_bounce
from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.outbox.drain import drain_outbox
from digest.outbox.retry import backoff
from digest.store.db import session_scope
from digest.store.models import DeliveryStatus, SubscriberEvent, SubscriberEventKind, SubscriberStatus
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.outbox.support import readers, rows, subscriber
from tests.smtp_script import ScriptedSink

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


def test_a_5xx_while_sending_writes_the_bounce_event_an_inbound_bounce_writes(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    answer = "550 5.1.1 no such user"
    seed(engine, STANDARD_DRAFTS, readers(2))
    script.handler.rcpt_replies["r0@example.org"] = answer
    send_digest(engine, pool, "daily", None, clock)
    record_bounce(engine, pool, clock, "r1@example.org", permanent=True, ref="<dsn@mx>", detail=answer)

    at_smtp, inbound = events_of(engine, "r0@example.org"), events_of(engine, "r1@example.org")
    assert [(e.kind, e.created_at) for e in at_smtp] == [(e.kind, e.created_at) for e in inbound]
    assert [e.kind for e in at_smtp] == [SubscriberEventKind.BOUNCE_PERMANENT]
    assert subscriber(engine, "r0@example.org").bounce_count == subscriber(engine, "r1@example.org").bounce_count == 1
    # Where it came from: the sender, about the message it was sending, with the server's answer.
    assert (at_smtp[0].source, at_smtp[0].ref) == ("smtp", rows(engine)["r0@example.org"].message_id)
    assert answer in at_smtp[0].detail


def events_of(engine: Engine, email_addr: str) -> list[SubscriberEvent]:
    sub_id = subscriber(engine, email_addr).id
    with session_scope(engine) as s:
        return list(s.exec(select(SubscriberEvent).where(SubscriberEvent.subscriber_id == sub_id)).all())


def test_backoff_doubles_with_jitter_and_is_capped(settings: Settings) -> None:
    base = settings.retry_base
    for attempts in range(1, 6):
        delays = [backoff(settings, attempts) for _ in range(50)]
        assert all(base * 2 ** (attempts - 1) / 2 <= d <= base * 2 ** (attempts - 1) for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert backoff(settings, 40) <= settings.delivery.retry_max_delay
