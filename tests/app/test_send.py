"""Sending an edition through a real SMTP server (aiosmtpd), on every backend."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.planner import run_due
from digest.app.send import send_digest, send_plan
from digest.compose.inline import inline_css
from digest.core.clock import FixedClock
from digest.core.errors import DeliveryError
from digest.core.settings import Settings
from digest.outbox.drain import drain_outbox
from digest.outbox.ledger import queue_deliveries
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.store.subscribers import add_subscriber, set_status
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from tests.conftest import NOW, STANDARD_DRAFTS, draft, seed

SUBSCRIBERS = [("ana@example.org", "Ana Lima", None), ("ben@example.org", "Ben Okafor", "Science")]


def smtp(settings: Settings) -> SMTPTransport:
    return SMTPTransport(parse_smtp_url(settings.smtp_url.get_secret_value()))


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def deliveries(engine: Engine) -> list[Delivery]:
    with session_scope(engine) as s:
        return list(s.exec(select(Delivery).order_by(Delivery.id)).all())


def test_send_delivers_one_copy_to_every_active_subscriber(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)
    assert report.sent == 2 and report.failed == 0
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["ana@example.org", "ben@example.org"]


def test_one_connection_is_reused_for_many_messages(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", "", None) for i in range(20)])
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
        assert t.connections_opened == 1
    assert len(sink.messages) == 20


def test_every_delivery_is_recorded_with_its_message_id(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
    rows = deliveries(engine)
    assert [r.status for r in rows] == [DeliveryStatus.SENT] * 2
    received_ids = {parsed(m.data)["Message-ID"] for m in sink.messages}
    assert {r.message_id for r in rows} == received_ids
    assert all(r.sent_at == NOW and r.attempts == 1 for r in rows)


def test_second_run_for_the_same_slot_sends_nothing(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
        again = send_digest(engine, settings, "daily", t, clock)
    assert again.sent == 0 and again.already_sent == 2
    assert len(sink.messages) == 2


def test_subscriber_added_after_a_send_gets_the_same_edition_once(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
        seed(engine, [], [("late@example.org", "Late", None)])
        again = send_digest(engine, settings, "daily", t, clock)
    assert again.sent == 1 and sink.messages[-1].rcpt_tos == ["late@example.org"]


def test_edition_is_stored_once_with_its_ordered_articles(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
        send_digest(engine, settings, "daily", t, clock)
    with session_scope(engine) as s:
        editions = s.exec(select(Edition)).all()
    assert len(editions) == 1
    assert editions[0].slot == "2026-11-25" and editions[0].status == EditionStatus.SENT
    assert editions[0].article_count == 4


def test_next_day_edition_carries_only_new_articles(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    from datetime import timedelta

    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana", None)])
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
        clock.advance(timedelta(hours=20))
        seed(engine, [draft("Overnight harbour flood update", -600)], [])
        report = send_digest(engine, settings, "daily", t, clock)
    assert report.sent == 1
    body = parsed(sink.messages[-1].data).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Overnight harbour flood update" in body
    assert "Rail tunnel reopens" not in body


def test_unsubscribed_subscribers_get_nothing(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with session_scope(engine) as s:
        set_status(s, "ana@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
    assert [m.rcpt_tos for m in sink.messages] == [["ben@example.org"]]


def test_edition_without_new_articles_is_not_sent(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, [draft("Last week's news", 60 * 24 * 7)], SUBSCRIBERS)
    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)
    assert report.empty and sink.messages == []


def test_send_empty_sends_an_edition_without_articles(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    settings.digests["daily"] = settings.digests["daily"].model_copy(update={"send_empty": True})
    seed(engine, [], [("ana@example.org", "Ana", None)])
    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)
    assert report.sent == 1


def test_subscriber_topics_choose_the_content(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
    by_rcpt = {m.rcpt_tos[0]: parsed(m.data).get_body(("plain",)).get_content() for m in sink.messages}  # type: ignore[union-attr]
    assert "Harbour cities agree" in by_rcpt["ana@example.org"]
    assert "Volunteers map new asteroids" in by_rcpt["ben@example.org"]
    assert "Rail tunnel reopens" not in by_rcpt["ben@example.org"]


def test_breaking_stories_reach_subscribers_of_every_topic(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)  # ben reads Science only; the World story is breaking
    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
    by_rcpt = {m.rcpt_tos[0]: parsed(m.data).get_body(("plain",)).get_content() for m in sink.messages}  # type: ignore[union-attr]
    assert "Harbour cities agree storm warning pact" in by_rcpt["ben@example.org"]


def test_subscriber_who_opted_out_of_breaking_stories_gets_only_their_topics(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [("ben@example.org", "Ben", "Science")])  # the World story is breaking
    with session_scope(engine) as s:
        add_subscriber(s, "cara@example.org", NOW, name="Cara", topics="Science", breaking=False)
    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)
    by_rcpt = {m.rcpt_tos[0]: parsed(m.data).get_body(("plain",)).get_content() for m in sink.messages}  # type: ignore[union-attr]
    assert report.sent == 2 and report.variants == 2
    assert "Harbour cities agree storm warning pact" in by_rcpt["ben@example.org"]
    assert "Harbour cities agree storm warning pact" not in by_rcpt["cara@example.org"]
    assert "Volunteers map new asteroids" in by_rcpt["cara@example.org"]


def test_premailer_runs_once_per_variant_for_a_thousand_subscribers(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    subs = [(f"r{i}@example.org", f"Reader {i}", "Science" if i % 2 else None) for i in range(1000)]
    seed(engine, STANDARD_DRAFTS, subs)
    calls: list[int] = []

    def counting_inline(html: str) -> str:
        calls.append(1)
        return inline_css(html)

    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock, inline=counting_inline)
    assert report.sent == 1000
    assert len(calls) == 2 == report.variants
    assert len(sink.messages) == 1000


def test_permanent_failure_is_recorded_and_counts_towards_bouncing(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    sink.handler.rcpt_replies["ana@example.org"] = "550 5.1.1 no such user"
    settings.bounce_limit = 1
    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)
    assert (report.sent, report.failed_permanent) == (1, 1)
    with session_scope(engine) as s:
        d = s.exec(
            select(Delivery)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)  # type: ignore[arg-type]
            .where(Subscriber.email_key == "ana@example.org")
        ).one()
        sub = s.exec(select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert d.status == DeliveryStatus.FAILED_PERMANENT and d.last_response.startswith("550")  # type: ignore[union-attr]
    assert sub.status == SubscriberStatus.BOUNCED


def test_temporary_failure_is_retried_later_not_now(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    from datetime import timedelta

    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    sink.handler.rcpt_replies["ana@example.org"] = "451 4.3.0 try again later"
    with smtp(settings) as t:
        first = send_digest(engine, settings, "daily", t, clock)
        assert first.failed_temporary == 1
        del sink.handler.rcpt_replies["ana@example.org"]
        too_soon = send_digest(engine, settings, "daily", t, clock)
        clock.advance(timedelta(hours=1))
        later = send_digest(engine, settings, "daily", t, clock)
    assert too_soon.sent == 0 and later.sent == 1
    ana = [d for d in deliveries(engine) if d.status == DeliveryStatus.SENT and d.attempts == 2]
    assert len(ana) == 1


def test_unreachable_server_stops_the_run_and_loses_nothing(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    from digest.transport.sink import free_port

    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", "", None) for i in range(10)])
    dead = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}", timeout=2))
    with pytest.raises(DeliveryError, match="unavailable"):
        send_digest(engine, settings, "daily", dead, clock)
    statuses = [d.status for d in deliveries(engine)]
    assert DeliveryStatus.SENT not in statuses and DeliveryStatus.CLAIMED not in statuses
    assert statuses.count(DeliveryStatus.QUEUED) == 7  # three burned one attempt each, then the breaker
    with smtp(settings) as t:
        clock.advance(__import__("datetime").timedelta(hours=2))
        report = send_digest(engine, settings, "daily", t, clock)
    assert report.sent == 10 and len(sink.messages) == 10


def test_queueing_twice_creates_no_duplicate_deliveries(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    seed(engine, STANDARD_DRAFTS, SUBSCRIBERS)
    from digest.edition.build import get_or_build_edition

    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    assert edition.id is not None
    with session_scope(engine) as s:
        first = queue_deliveries(s, edition.id, NOW)
    with session_scope(engine) as s:
        second = queue_deliveries(s, edition.id, NOW)
    assert (first, second) == (2, 0)
    assert len(deliveries(engine)) == 2


def service_served_ana(engine: Engine, settings: Settings, sink: SmtpSink) -> FixedClock:
    """Ana reads at 07:00 Berlin (06:00 UTC); the service's local-time edition reached her. Ben has no time."""
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW, timezone="Europe/Berlin", send_time="07:00")
        add_subscriber(s, "ben@example.org", NOW)
    seed(engine, STANDARD_DRAFTS, [])
    clock = FixedClock(NOW.replace(minute=1))
    run_due(engine, settings, "daily", clock)
    with smtp(settings) as t:
        drain_outbox(engine, settings, clock, transport=t)
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
    clock.set(NOW.replace(hour=7, minute=30))
    return clock


def test_manual_send_skips_and_counts_those_the_service_served_today(
    engine: Engine, settings: Settings, sink: SmtpSink
) -> None:
    clock = service_served_ana(engine, settings, sink)

    with smtp(settings) as t:
        report = send_digest(engine, settings, "daily", t, clock)

    assert (report.sent, report.served_today) == (1, 1)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["ana@example.org", "ben@example.org"]


def test_send_plan_names_exactly_whom_send_then_reaches(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    clock = service_served_ana(engine, settings, sink)
    with session_scope(engine) as s:
        before = send_plan(s, settings, "daily", clock.now())

    with smtp(settings) as t:
        send_digest(engine, settings, "daily", t, clock)
    with session_scope(engine) as s:
        after = send_plan(s, settings, "daily", clock.now())

    assert (before.emails, before.served_today) == (["ben@example.org"], 1)
    assert [m.rcpt_tos[0] for m in sink.messages[1:]] == before.emails
    assert (after.emails, after.already_sent, after.served_today) == ([], 1, 1)


def test_a_later_send_of_the_same_slot_still_names_what_the_edition_left_out(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    settings.digests["daily"] = settings.digests["daily"].model_copy(update={"max_articles": 3})
    repeat = draft("Harbour cities agree storm warning pact", 25, url="https://other.example.net/pact",
                   source="Other Wire", summary="Summary of Harbour cities agree storm warning pact.")  # fmt: skip
    seed(engine, [*STANDARD_DRAFTS, repeat], SUBSCRIBERS)

    first = send_digest(engine, settings, "daily", None, clock)
    second = send_digest(engine, settings, "daily", None, clock)

    assert second.sent == 0
    assert [d.describe() for d in second.drops] == [d.describe() for d in first.drops] != []
    assert [c.title for c in second.cut] == [c.title for c in first.cut]
    assert [c.title for c in second.cut] == ["Volunteers map new asteroids"] and second.over_limit == 1
