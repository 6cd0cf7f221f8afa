"""Webhooks out, end to end: a real send, a real receiver on loopback verifying signatures, restarts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.app.subscriptions import unsubscribe
from digest.app.webhooks import add_webhook, deliver_due, enable_webhook, list_webhooks, parse_events
from digest.core.clock import FixedClock
from digest.core.errors import InputError
from digest.core.settings import Settings, WebhooksSettings
from digest.outbox.drain import drain_outbox
from digest.store.db import make_engine, session_scope
from digest.store.models import Subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers
from tests.outbox.test_ledger import edition_of
from tests.webhook_receiver import Receiver


@pytest.fixture
def now() -> FixedClock:
    """The real time: receivers check the signed timestamp against their own clock (a 5-minute window)."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def hooks_settings(settings: Settings) -> Settings:
    settings.webhooks = WebhooksSettings(retry_base=timedelta(seconds=2), retry_max=timedelta(seconds=4), timeout=2)
    return settings


def unsubscribe_all(engine: Engine, clock: FixedClock) -> None:
    with session_scope(engine) as session:
        for sub in session.exec(select(Subscriber)).scalars():  # type: ignore[call-overload]
            unsubscribe(session, sub, clock.now(), source="web")


def test_events_arrive_signed_and_verify(
    engine: Engine, hooks_settings: Settings, now: FixedClock, receiver: Receiver
) -> None:
    seed(engine, [], [("ana@example.org", "Ana", None)])
    added = add_webhook(engine, now, receiver.url, ["subscriber.unsubscribed"])
    receiver.secret = added.secret
    receiver.start()
    unsubscribe_all(engine, now)

    report = deliver_due(engine, hooks_settings, now, "w1")

    assert report.delivered == 1
    [got] = receiver.received
    assert got.verified
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["webhook-timestamp"] == str(int(now.now().timestamp()))
    assert got.payload["type"] == "subscriber.unsubscribed"
    assert got.payload["data"]["subscriber"]["email"] == "ana@example.org"
    assert list_webhooks(engine)[0].last_success_at == now.now()


def test_an_event_survives_a_down_receiver_and_a_restart_and_arrives_once(
    db_url: str, engine: Engine, hooks_settings: Settings, now: FixedClock, receiver: Receiver
) -> None:
    seed(engine, [], [("ana@example.org", "Ana", None)])
    receiver.secret = add_webhook(engine, now, receiver.url, ["subscriber.unsubscribed"]).secret
    unsubscribe_all(engine, now)

    down = deliver_due(engine, hooks_settings, now, "w1")  # nothing listens on the port yet
    engine.dispose()  # the process stops; a new one starts on the same store
    restarted = make_engine(db_url)
    receiver.start()
    too_soon = deliver_due(restarted, hooks_settings, now, "w2")
    now.advance(timedelta(seconds=5))
    later = deliver_due(restarted, hooks_settings, now, "w2")
    again = deliver_due(restarted, hooks_settings, now, "w2")

    assert (down.failed, too_soon.delivered, later.delivered, again.delivered) == (1, 0, 1, 0)
    assert len(receiver.received) == 1 and receiver.received[0].verified
    assert list_webhooks(restarted)[0].pending == 0
    restarted.dispose()


def test_an_endpoint_failing_in_a_row_is_disabled_and_can_be_enabled(
    engine: Engine, hooks_settings: Settings, now: FixedClock, receiver: Receiver
) -> None:
    hooks_settings.webhooks.disable_after = 3
    seed(engine, [], readers(2))
    hook_id = add_webhook(engine, now, receiver.url, ["subscriber.unsubscribed"]).id
    receiver.status = 500
    receiver.start()
    unsubscribe_all(engine, now)

    for _ in range(4):
        deliver_due(engine, hooks_settings, now, "w1")
        now.advance(timedelta(seconds=5))

    [h] = list_webhooks(engine)
    assert len(receiver.received) == 3  # the fourth pass found the endpoint disabled
    assert (h.consecutive_failures, h.pending, h.last_error) == (3, 2, "HTTP 500")
    assert h.disabled_at is not None
    receiver.status = 200
    enable_webhook(engine, now, hook_id)
    assert deliver_due(engine, hooks_settings, now, "w1").delivered == 2


def test_a_redirect_is_a_failure_not_followed(
    engine: Engine, hooks_settings: Settings, now: FixedClock, receiver: Receiver
) -> None:
    elsewhere = Receiver().start()
    seed(engine, [], [("ana@example.org", "Ana", None)])
    add_webhook(engine, now, receiver.url, ["subscriber.unsubscribed"])
    receiver.status, receiver.location = 307, elsewhere.url
    receiver.start()
    unsubscribe_all(engine, now)

    report = deliver_due(engine, hooks_settings, now, "w1")

    elsewhere.stop()
    assert report.failed == 1 and elsewhere.received == []
    assert list_webhooks(engine)[0].last_error == "HTTP 307 redirect (not followed)"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the queue on PostgreSQL: tests/store
def test_a_real_send_of_250_posts_three_batches_and_edition_sent(
    engine: Engine, hooks_settings: Settings, now: FixedClock, receiver: Receiver, sink: SmtpSink
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(250))
    edition_of(engine, hooks_settings)
    receiver.secret = add_webhook(engine, now, receiver.url, ["delivery.sent", "edition.sent"]).secret
    receiver.start()

    sent = drain_outbox(engine, hooks_settings, now)
    report = deliver_due(engine, hooks_settings, now, "w1")

    assert sent.sent == 250 and report.delivered == 4
    types = [r.payload["type"] for r in receiver.received]
    assert types == ["delivery.sent"] * 3 + ["edition.sent"]
    assert sorted(len(r.payload["data"]["deliveries"]) for r in receiver.received[:3]) == [50, 100, 100]
    assert all(r.verified for r in receiver.received)
    assert receiver.received[3].payload["data"]["edition"]["deliveries"] == {"sent": 250}


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "https://user:pw@example.com/"])
def test_only_plain_http_urls_are_accepted(engine: Engine, now: FixedClock, url: str) -> None:
    with pytest.raises(InputError, match="URL"):
        add_webhook(engine, now, url, ["edition.sent"])


def test_unknown_event_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown event 'delivery.opened'; choose from delivery.sent,"):
        parse_events("delivery.sent,delivery.opened")
