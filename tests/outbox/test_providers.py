"""Per-provider shaping end to end: a relay (aiosmtpd) passing on Gmail's and Microsoft's answers.

The relay answers ``421 4.7.28`` (Gmail's rate limit) for @gmail.com recipients and
``550 5.7.515`` (Microsoft's authentication requirement) for @outlook.com ones, as a
relay that passes the provider's answer on at RCPT does. Gmail pauses, Microsoft
pauses, everyone else is sent to, and nobody is bounced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.app.status import collect_status
from digest.core.clock import FixedClock
from digest.core.dns import make_resolver
from digest.core.settings import Settings
from digest.outbox.drain import drain_outbox
from digest.store.models import Delivery, DeliveryStatus, SubscriberStatus
from digest.transport import pool as pool_module
from digest.transport import providers as providers_module
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.dnsserver import Zone, dns_server
from tests.outbox.support import rows, subscriber
from tests.smtp_script import ScriptedSink

GMAIL_RATE = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP"
MS_AUTH = "550 5.7.515 Access denied, sending domain news.example.com does not meet the required authentication level"


@pytest.fixture(autouse=True)
def fresh_providers() -> Iterator[None]:
    """Provider pauses live as long as the process: no other test may inherit this one's."""
    pool_module._SHAPERS.clear()
    yield
    pool_module._SHAPERS.clear()


def test_a_deferral_pauses_its_provider_only_and_a_policy_rejection_bounces_nobody(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    gmail = [f"g{i}@gmail.com" for i in range(4)]
    outlook = [f"o{i}@outlook.com" for i in range(3)]
    others = [f"r{i}@example.org" for i in range(5)] + ["y0@yahoo.com"]
    seed(engine, STANDARD_DRAFTS, [(a, a, None) for a in gmail + outlook + others])
    script.handler.rcpt_replies.update({a: GMAIL_RATE for a in gmail} | {a: MS_AUTH for a in outlook})

    report = send_digest(engine, pool, "daily", None, clock)

    found = rows(engine)
    assert sorted(script.handler.count()) == sorted(others)
    assert (report.sent, report.failed_permanent) == (len(others), 0)
    for a in gmail:  # back to the outbox until Gmail's pause ends, no attempt counted
        assert (found[a].status, found[a].attempts) == (DeliveryStatus.FAILED_TEMPORARY, 0)
        assert found[a].next_attempt_at is not None
        assert NOW + timedelta(minutes=9) < found[a].next_attempt_at <= NOW + timedelta(minutes=10)
    tried = [a for a in outlook if found[a].attempts == 1]
    assert tried and all("5.7.515" in (found[a].last_response or "") for a in tried)
    for a in outlook:  # a temporary failure, retried after Microsoft's policy pause
        assert found[a].status == DeliveryStatus.FAILED_TEMPORARY
        assert found[a].next_attempt_at is not None and found[a].next_attempt_at > NOW + timedelta(minutes=59)
    for a in gmail + outlook:  # no bounce, no soft bounce: the address is fine
        sub = subscriber(engine, a)
        assert (sub.status, sub.bounce_count, sub.soft_bounce_streak) == (SubscriberStatus.ACTIVE, 0, 0)


def test_a_paused_provider_is_not_sent_to_by_the_next_drain(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [("g0@gmail.com", "G", None)])
    script.handler.rcpt_replies["g0@gmail.com"] = GMAIL_RATE
    send_digest(engine, pool, "daily", None, clock)
    del script.handler.rcpt_replies["g0@gmail.com"]

    # Due again by the database's clock, but Gmail still rests in this process.
    clock.advance(timedelta(minutes=11))
    report = drain_outbox(engine, pool, clock=clock)

    assert (report.sent, report.held) == (0, 1)
    assert script.handler.count() == {}


def test_a_message_a_provider_keeps_deferring_gives_up_after_retry_max_age_without_a_bounce(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [("g0@gmail.com", "G", None)])
    script.handler.rcpt_replies["g0@gmail.com"] = GMAIL_RATE
    send_digest(engine, pool, "daily", None, clock)

    clock.advance(pool.retry_max_age + timedelta(minutes=1))
    drain_outbox(engine, pool, clock=clock)

    d, sub = rows(engine)["g0@gmail.com"], subscriber(engine, "g0@gmail.com")
    assert (d.status, d.attempts) == (DeliveryStatus.FAILED_PERMANENT, 0)
    assert (sub.status, sub.bounce_count) == (SubscriberStatus.ACTIVE, 0)


def test_a_provider_at_its_cap_holds_only_its_own_messages_back(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    gmail = [f"g{i}@gmail.com" for i in range(4)]
    others = [f"r{i}@example.org" for i in range(6)]
    seed(engine, STANDARD_DRAFTS, [(a, a, None) for a in gmail + others])
    pool.delivery.providers["google"].connections = 1  # one Gmail message in flight at a time
    script.handler.stall.update({a: 0.3 for a in gmail})  # each Gmail RCPT takes 0.3 s
    arrived: list[tuple[float, str]] = []
    handle_data = script.handler.handle_DATA

    async def timed(server: Any, session: Any, envelope: Any) -> str:
        arrived.append((time.monotonic(), envelope.rcpt_tos[0]))
        return await handle_data(server, session, envelope)

    script.handler.handle_DATA = timed  # type: ignore[method-assign]

    report = send_digest(engine, pool, "daily", None, clock)

    assert report.sent == len(gmail + others)
    at = [t for t, a in arrived if a in gmail]
    # Two connections, but never two Gmail messages at once: each one's RCPT starts after the last one's data.
    assert all(later - earlier >= 0.29 for earlier, later in zip(at, at[1:], strict=False))
    # Meanwhile the other connection carried everyone else.
    assert max(i for i, (_, a) in enumerate(arrived) if a in others) < len(arrived) - 1


def test_a_domain_hosted_by_google_is_shaped_as_gmail(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, STANDARD_DRAFTS, [("ceo@workspace-shop.org", "CEO", None), ("r0@example.org", "R", None)])
    script.handler.rcpt_replies["ceo@workspace-shop.org"] = GMAIL_RATE
    pool.delivery.mx_lookup = True
    zone = Zone().mx("workspace-shop.org", "aspmx.l.google.com")
    with dns_server(zone) as port:
        # The process-wide map of these settings, asking the DNS server on loopback.
        resolver = make_resolver("127.0.0.1", port, timeout=2.0)
        monkeypatch.setitem(
            providers_module._MAPS, (True, pool.delivery.mx_lookup_timeout), providers_module.ProviderMap(resolver)
        )
        report = send_digest(engine, pool, "daily", None, clock)

    d = rows(engine)["ceo@workspace-shop.org"]
    assert (report.sent, report.held) == (1, 1)
    assert (d.status, d.attempts) == (DeliveryStatus.FAILED_TEMPORARY, 0)
    assert d.next_attempt_at is not None and d.next_attempt_at > NOW + timedelta(minutes=9)


def _due_again(engine: Engine, clock: FixedClock) -> None:
    """Every delivery waiting for a retry is due now, pause or not (as another sender's may be)."""
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.FAILED_TEMPORARY)  # type: ignore[arg-type]
            .values(next_attempt_at=clock.now())
        )


def _deferred_by_gmail_then_a_new_process(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    """g0@gmail.com deferred (Gmail pauses), r0@example.org refused once (no pause); then both are
    due again, the relay takes everything, and this process forgets its pauses like a second process."""
    seed(engine, STANDARD_DRAFTS, [("g0@gmail.com", "G", None), ("r0@example.org", "R", None)])
    script.handler.rcpt_replies.update({"g0@gmail.com": GMAIL_RATE, "r0@example.org": "451 4.3.0 Try again later"})
    first = send_digest(engine, pool, "daily", None, clock)
    assert (first.sent, first.held, first.failed_temporary) == (0, 1, 1)
    script.handler.rcpt_replies.clear()
    _due_again(engine, clock)
    pool_module._SHAPERS.clear()


def test_a_pause_one_sender_was_told_holds_back_a_sender_that_never_saw_the_deferral(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    _deferred_by_gmail_then_a_new_process(engine, pool, script, clock)

    report = drain_outbox(engine, pool, clock=clock)

    found = rows(engine)
    assert (report.sent, report.held) == (1, 1)
    assert script.handler.count() == {"r0@example.org": 1}
    assert (found["g0@gmail.com"].status, found["g0@gmail.com"].attempts) == (DeliveryStatus.FAILED_TEMPORARY, 0)
    assert found["r0@example.org"].status == DeliveryStatus.SENT


def test_an_expired_shared_pause_is_ignored(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    _deferred_by_gmail_then_a_new_process(engine, pool, script, clock)
    clock.advance(timedelta(minutes=11))  # Gmail's 10-minute pause is over by the database's clock

    report = drain_outbox(engine, pool, clock=clock)

    assert (report.sent, report.held) == (2, 0)
    assert script.handler.count() == {"g0@gmail.com": 1, "r0@example.org": 1}
    assert collect_status(engine, pool, clock.now())["provider_pauses"] == []


def test_status_shows_a_providers_pause_until_when_and_why_without_the_address(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [("gina.rossi@gmail.com", "G", None)])
    script.handler.rcpt_replies["gina.rossi@gmail.com"] = f"{GMAIL_RATE} to gina.rossi@gmail.com"
    send_digest(engine, pool, "daily", None, clock)

    (pause,) = collect_status(engine, pool, NOW)["provider_pauses"]

    assert pause["provider"] == "google"
    until = datetime.fromisoformat(pause["until"])
    assert NOW + timedelta(minutes=9) < until <= NOW + timedelta(minutes=10)
    assert pause["reason"].startswith("google gmail rate limit: 421 4.7.28 Our system has detected an unusual rate")
    assert "g***@gmail.com" in pause["reason"] and "gina.rossi" not in pause["reason"]
