"""A relay that turns connections away and throttles: the pool adapts, loses and bounces nothing."""

from __future__ import annotations

import email
from collections import Counter
from datetime import timedelta
from email import policy

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.store.models import DeliveryStatus
from digest.transport.pool import configured_servers, server_state
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers, rows
from tests.smtp_script import CrowdedServer


def test_busy_relay_gets_fewer_connections_and_every_message_once_without_burning_retries(
    engine: Engine, settings: Settings, clock: FixedClock
) -> None:
    subscribers = 60
    with CrowdedServer(max_connections=3, burst=10, window=0.2) as relay:
        settings.smtp_url = SecretStr(relay.url)
        settings.delivery.connections = 8
        settings.delivery.throttle_pause = timedelta(seconds=0.2)
        seed(engine, STANDARD_DRAFTS, readers(subscribers))
        report = send_digest(engine, settings, "daily", None, clock)

    assert relay.refused > 0 and relay.throttled > 0  # the relay did push back
    assert (report.sent, report.failed) == (subscribers, 0)
    assert Counter(r for r, _ in relay.messages) == {f"r{i}@example.org": 1 for i in range(subscribers)}
    found = rows(engine).values()
    assert {d.status for d in found} == {DeliveryStatus.SENT}
    assert {d.attempts for d in found} == {1}  # neither throttling nor refusals counted as attempts
    window = server_state(configured_servers(settings)[0], settings).window
    assert window.limit < 8
    assert not server_state(configured_servers(settings)[0], settings).breaker.last_error


def test_pipelined_messages_arrive_once_and_intact(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    with CrowdedServer(max_connections=50, burst=10_000) as relay:
        settings.smtp_url = SecretStr(relay.url)
        settings.delivery.connections = 2
        seed(engine, STANDARD_DRAFTS, readers(40))
        report = send_digest(engine, settings, "daily", None, clock)
    assert report.sent == 40 and len(relay.messages) == 40
    for rcpt, data in relay.messages:
        msg = email.message_from_bytes(data, policy=policy.default)
        assert msg["To"].addresses[0].addr_spec == rcpt  # type: ignore[attr-defined]
        assert data.endswith(b"\r\n") and b"\r\n.\r\n" not in data
