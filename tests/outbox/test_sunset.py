"""The sunset rule: a subscriber deferred (4xx) on N deliveries in a row is no longer mailed."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.outbox.drain import drain_outbox
from digest.store.db import session_scope
from digest.store.models import SubscriberEvent, SubscriberEventKind, SubscriberStatus
from tests.conftest import STANDARD_DRAFTS, draft, seed
from tests.outbox.support import readers, rows, subscriber
from tests.smtp_script import ScriptedSink

DEFERRED = "451 4.2.0 mailbox temporarily unavailable"


def next_edition(engine: Engine, pool: Settings, clock: FixedClock, day: int) -> None:
    """Send the next day's edition (day 0: the first one)."""
    if day:
        clock.advance(timedelta(days=1))
        seed(engine, [draft(f"News of day {day}", -day * 24 * 60 + 30)], [])
    send_digest(engine, pool, "daily", None, clock)


def sunset_events(engine: Engine, email_addr: str) -> list[SubscriberEvent]:
    sub_id = subscriber(engine, email_addr).id
    with session_scope(engine) as s:
        stmt = select(SubscriberEvent).where(
            SubscriberEvent.subscriber_id == sub_id, SubscriberEvent.kind == SubscriberEventKind.SUNSET
        )
        return list(s.exec(stmt).all())


def test_n_deliveries_deferred_in_a_row_stop_the_mailing(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool.sunset_soft_bounces = 3
    seed(engine, STANDARD_DRAFTS, readers(2))
    script.handler.rcpt_replies["r0@example.org"] = DEFERRED
    with caplog.at_level(logging.WARNING):
        for day in range(3):
            assert subscriber(engine, "r0@example.org").status == SubscriberStatus.ACTIVE
            next_edition(engine, pool, clock, day)
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.BOUNCED and sub.soft_bounce_streak == 3
    [event] = sunset_events(engine, "r0@example.org")
    assert event.source == "smtp" and DEFERRED in event.detail
    assert "r***@example.org" in caplog.text and "r0@example.org" not in caplog.text
    # The server accepts mail for them again, but they are no longer sent any.
    del script.handler.rcpt_replies["r0@example.org"]
    next_edition(engine, pool, clock, 3)
    assert script.handler.count() == {"r1@example.org": 4}


def test_an_accepted_delivery_resets_the_streak(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.sunset_soft_bounces = 3
    seed(engine, STANDARD_DRAFTS, readers(1))
    replies = script.handler.rcpt_replies
    for day, deferred in enumerate([True, True, False, True, True]):
        replies.pop("r0@example.org", None)
        if deferred:
            replies["r0@example.org"] = DEFERRED
        next_edition(engine, pool, clock, day)
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.ACTIVE and sub.soft_bounce_streak == 2
    assert sunset_events(engine, "r0@example.org") == []


def test_the_retries_of_one_delivery_count_once(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.sunset_soft_bounces = 2
    seed(engine, STANDARD_DRAFTS, readers(1))
    script.handler.rcpt_replies["r0@example.org"] = DEFERRED
    next_edition(engine, pool, clock, 0)
    for _ in range(3):
        clock.advance(pool.delivery.retry_max_delay + timedelta(minutes=1))
        drain_outbox(engine, pool, clock=clock)
    assert rows(engine)["r0@example.org"].attempts == 4
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.ACTIVE and sub.soft_bounce_streak == 1


def test_a_server_outage_is_no_soft_bounce(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.sunset_soft_bounces = 1
    seed(engine, STANDARD_DRAFTS, readers(1))
    # 421 before DATA: the server is closing the connection, nothing is said about the recipient.
    script.handler.rcpt_replies["r0@example.org"] = "421 4.3.2 shutting down"
    report = send_digest(engine, pool, "daily", None, clock)
    assert report.failed_temporary == 1
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.ACTIVE and sub.soft_bounce_streak == 0


def test_zero_turns_the_rule_off(engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock) -> None:
    pool.sunset_soft_bounces = 0
    seed(engine, STANDARD_DRAFTS, readers(1))
    script.handler.rcpt_replies["r0@example.org"] = DEFERRED
    for day in range(3):
        next_edition(engine, pool, clock, day)
    assert subscriber(engine, "r0@example.org").status == SubscriberStatus.ACTIVE


def test_taking_a_sunset_subscriber_back_starts_a_new_streak(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    from digest.store.subscribers import set_status

    pool.sunset_soft_bounces = 2
    seed(engine, STANDARD_DRAFTS, readers(1))
    script.handler.rcpt_replies["r0@example.org"] = DEFERRED
    for day in range(2):
        next_edition(engine, pool, clock, day)
    assert subscriber(engine, "r0@example.org").status == SubscriberStatus.BOUNCED
    with session_scope(engine) as s:
        set_status(s, "r0@example.org", SubscriberStatus.ACTIVE, clock.now())
    next_edition(engine, pool, clock, 2)
    sub = subscriber(engine, "r0@example.org")
    assert sub.status == SubscriberStatus.ACTIVE and sub.soft_bounce_streak == 1
