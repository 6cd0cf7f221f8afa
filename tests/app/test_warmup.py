"""The warm-up schedule end to end: manual sends, the service's editions and alerts, through a real SMTP sink."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.alerts import send_alerts
from digest.app.planner import run_due
from digest.app.send import send_digest, send_plan
from digest.app.status import collect_status
from digest.core.clock import FixedClock
from digest.core.settings import Settings, WarmupSettings
from digest.ingest.save import upsert_articles
from digest.outbox.drain import drain_outbox
from digest.store.db import session_scope
from digest.store.models import Delivery, SlotClaim, Subscriber
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import NOW, draft

# Subscribed on these days before NOW, added in this (shuffled) order: ids do not follow age.
AGES = {"d@example.org": 3, "a@example.org": 9, "f@example.org": 1, "b@example.org": 7, "e@example.org": 2}
AGES["c@example.org"] = 5
OLDEST_FIRST = sorted(AGES, key=lambda e: -AGES[e])  # a, b, c, d, e, f


def warm(settings: Settings, **kw: object) -> Settings:
    """``settings`` with the warm-up on: 2 on day 1 (NOW's day), 6 (all) on day 3, no cap from day 4."""
    values: dict[str, object] = {"enabled": True, "start_date": NOW.date(), "start": 2, "days": 3}
    values.update(kw)
    settings.delivery.warmup = WarmupSettings(**values)  # type: ignore[arg-type]
    return settings


def subscribe_all(engine: Engine, **kw: object) -> None:
    with session_scope(engine) as s:
        for email, days in AGES.items():
            add_subscriber(s, email, NOW - timedelta(days=days), **kw)  # type: ignore[arg-type]


def publish(engine: Engine, title: str, at: datetime, **kw: object) -> None:
    url = f"https://news.example.com/{'-'.join(title.lower().split())}"
    with session_scope(engine) as s:
        upsert_articles(s, [draft(title, published_at=at - timedelta(minutes=10), url=url, **kw)], at)


def send_on(engine: Engine, settings: Settings, sink: SmtpSink, day: int) -> tuple[list[str], object]:
    """Publish a story and send on schedule day ``day`` (1 = NOW's day); who got a message, and the report."""
    at = NOW + timedelta(days=day - 1)
    publish(engine, f"Story of day {day}", at)
    before = len(sink.messages)
    report = send_digest(engine, settings, "daily", None, FixedClock(at))
    return [m.rcpt_tos[0] for m in sink.messages[before:]], report


def test_day_one_sends_only_to_the_oldest_subscribers_up_to_the_cap(
    engine: Engine, settings: Settings, sink: SmtpSink
) -> None:
    subscribe_all(engine)

    got, report = send_on(engine, warm(settings), sink, 1)

    assert sorted(got) == OLDEST_FIRST[:2]
    assert report.warmup is not None  # type: ignore[attr-defined]
    w = report.warmup  # type: ignore[attr-defined]
    assert (w.day, w.days, w.cap, w.used, w.waiting) == (1, 3, 2, 2, 4)


def test_a_second_send_the_same_day_queues_nobody(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)
    send_on(engine, warm(settings), sink, 1)

    again = send_digest(engine, settings, "daily", None, FixedClock(NOW + timedelta(hours=5)))

    assert len(sink.messages) == 2 and again.queued == 0 and again.sent == 0
    assert again.warmup is not None and (again.warmup.used, again.warmup.waiting) == (2, 4)


def test_those_left_out_keep_no_claim_on_the_day(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)

    send_on(engine, warm(settings), sink, 1)

    with session_scope(engine) as s:
        claimed = s.exec(select(Subscriber.email).join(SlotClaim, SlotClaim.subscriber_id == Subscriber.id)).all()
        queued = s.exec(select(Subscriber.email).join(Delivery, Delivery.subscriber_id == Subscriber.id)).all()
    assert sorted(claimed) == sorted(queued) == OLDEST_FIRST[:2]


def test_the_cap_grows_each_day_oldest_first_and_ends_after_the_schedule(
    engine: Engine, settings: Settings, sink: SmtpSink
) -> None:
    subscribe_all(engine)
    warm(settings)

    days = [send_on(engine, settings, sink, day) for day in (1, 2, 3, 4)]

    # 2 * 3 ** ((d - 1) / 2): 2, 3.46 -> 3, 6; then no cap.
    assert [sorted(got) for got, _ in days] == [OLDEST_FIRST[:2], OLDEST_FIRST[:3], OLDEST_FIRST, OLDEST_FIRST]
    assert [r.warmup and (r.warmup.cap, r.warmup.waiting) for _, r in days] == [(2, 4), (3, 3), (6, 0), None]  # type: ignore[attr-defined]


def test_full_caps_the_last_day_below_the_list_size(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)
    warm(settings, full=4, days=2)

    days = [send_on(engine, settings, sink, day) for day in (1, 2)]

    assert [len(got) for got, _ in days] == [2, 4]


def test_without_warmup_everyone_gets_every_edition(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)

    got, report = send_on(engine, settings, sink, 1)

    assert sorted(got) == sorted(AGES) and report.warmup is None  # type: ignore[attr-defined]
    with session_scope(engine) as s:
        assert len(s.exec(select(SlotClaim)).all()) == 6


def test_the_service_editions_are_capped_across_timezones(db_url: str, engine: Engine, sink: SmtpSink) -> None:
    settings = warm(
        Settings(
            database_url=db_url,
            smtp_url=sink.url,  # type: ignore[arg-type]
            secret_key="test-secret",  # type: ignore[arg-type]
            base_url="https://news.example.com",
        ),
        start=3,
    )
    with session_scope(engine) as s:
        for email, days in AGES.items():
            zone = "Europe/Berlin" if email < "d" else None  # a, b, c at 07:00 Berlin; d, e, f at 07:00 UTC
            add_subscriber(s, email, NOW - timedelta(days=days), timezone=zone, send_time="07:00" if zone else None)
    publish(engine, "Morning story", NOW - timedelta(hours=1))

    berlin = run_due(engine, settings, "daily", FixedClock(NOW))  # 07:00 in Berlin
    utc = run_due(engine, settings, "daily", FixedClock(NOW + timedelta(hours=1)))  # 07:00 UTC
    drain_outbox(engine, settings, FixedClock(NOW + timedelta(hours=1)))

    assert [(o.queued, o.waiting) for o in berlin + utc] == [(3, 0), (0, 3)]
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["a@example.org", "b@example.org", "c@example.org"]
    publish(engine, "Next morning story", NOW + timedelta(days=1))
    nxt = run_due(engine, settings, "daily", FixedClock(NOW + timedelta(days=1, hours=1)))  # day 2: cap 4
    assert sum(o.queued for o in nxt) == 4


def test_alerts_count_toward_the_days_cap(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine, alerts=True)
    warm(settings, start=3)
    publish(engine, "Storm surge floods harbour district", NOW, breaking=True, priority=9)

    run = send_alerts(engine, settings, FixedClock(NOW))
    got, report = send_on(engine, settings, sink, 1)

    assert run.queued == 3 and run.send is not None and run.send.sent == 3
    assert got == [] and report.warmup is not None and report.warmup.waiting == 6  # type: ignore[attr-defined]
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == OLDEST_FIRST[:3]


def test_the_dry_run_plan_shows_the_cap(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)
    publish(engine, "Story of day 1", NOW)
    warm(settings, start=4)

    with session_scope(engine) as s:
        plan = send_plan(s, settings, "daily", NOW)

    assert sorted(plan.emails) == OLDEST_FIRST[:4]
    assert plan.warmup is not None and (plan.warmup.used, plan.warmup.waiting) == (4, 2)
    assert sink.messages == []


def test_a_capped_queueing_is_logged_with_counts_and_no_addresses(
    engine: Engine, settings: Settings, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    subscribe_all(engine)

    with caplog.at_level(logging.INFO, logger="digest.outbox.warmup"):
        send_on(engine, warm(settings), sink, 1)
        send_digest(engine, settings, "daily", None, FixedClock(NOW + timedelta(hours=1)))  # spent: DEBUG only

    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "warmup.capped"]
    assert record.fields == {"edition": 1, "day": 1, "days": 3, "cap": 2, "used": 2, "queued": 2, "waiting": 4}  # type: ignore[attr-defined]
    assert "@" not in caplog.text


def test_status_shows_the_day_the_cap_and_its_use(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    subscribe_all(engine)
    send_on(engine, warm(settings), sink, 1)

    day1 = collect_status(engine, settings, NOW)["warmup"]
    after = collect_status(engine, settings, NOW + timedelta(days=3))["warmup"]

    assert {k: day1[k] for k in ("done", "day", "days", "cap", "used", "left")} == {
        "done": False, "day": 1, "days": 3, "cap": 2, "used": 2, "left": 0,
    }  # fmt: skip
    assert after["done"] is True
    settings.delivery.warmup = WarmupSettings()
    assert collect_status(engine, settings, NOW)["warmup"] is None
