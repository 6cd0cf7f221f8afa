"""The planner on every backend, with an injected clock: local-time slots, catch-up, claims, the outbox."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.planner import run_due
from digest.core.clock import FixedClock
from digest.core.settings import DigestConfig, Settings
from digest.edition.build import build_edition
from digest.edition.schedule import Series
from digest.ingest.save import upsert_articles
from digest.outbox.drain import drain_outbox
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionArticle, EditionStatus, Subscriber
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import draft


def make_settings(db_url: str, smtp_url: str = "smtp://127.0.0.1:1", **digest: object) -> Settings:
    values: dict[str, object] = {"title": "The Briefing", "schedule": "0 7 * * *", "timezone": "UTC"}
    values.update(digest)
    return Settings(
        database_url=db_url,
        smtp_url=smtp_url,  # type: ignore[arg-type]
        secret_key="test-secret",  # type: ignore[arg-type]
        base_url="https://news.example.com",
        digests={"daily": DigestConfig(**values)},  # type: ignore[arg-type]
    )


def subscribe(
    engine: Engine,
    email: str,
    now: datetime,
    *,
    tz: str | None = None,
    at: str | None = None,
    weekly: int | None = None,
) -> None:
    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, email, now, timezone=tz, send_time=at)
        if weekly is not None:
            sub.frequency, sub.weekday = "weekly", weekly
            s.add(sub)


def publish(engine: Engine, title: str, at: datetime) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft(title, published_at=at, url=f"https://news.example.com/{at:%m%d%H%M}")], at)


def deliveries_of(engine: Engine, email: str) -> list[tuple[Delivery, Edition]]:
    with session_scope(engine) as s:
        sub = find_subscriber(s, email)
        assert sub is not None
        return list(
            s.exec(
                select(Delivery, Edition)
                .join(Edition, Edition.id == Delivery.edition_id)  # type: ignore[arg-type]
                .where(Delivery.subscriber_id == sub.id)
                .order_by(Edition.built_at)
            ).all()
        )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


PEOPLE = [
    ("berlin@example.org", "Europe/Berlin", "07:00"),
    ("gap@example.org", "Europe/Berlin", "02:30"),  # does not exist on 2026-03-29
    ("kiritimati@example.org", "Pacific/Kiritimati", "07:00"),  # UTC+14
    ("bakerisland@example.org", "Etc/GMT+12", "07:00"),  # UTC-12
    ("default@example.org", "America/New_York", None),  # the digest's 07:00 UTC
]


def test_each_subscriber_gets_one_edition_per_local_day_at_their_local_time(db_url: str, engine: Engine) -> None:
    """Four days across the spring DST change, the clock moved in 30-minute steps."""
    start = utc(2026, 3, 27, 0, 0)
    clock = FixedClock(start)
    settings = make_settings(db_url)
    for email, tz, at in PEOPLE:
        subscribe(engine, email, start - timedelta(days=1), tz=tz, at=at)
    while clock.now() < start + timedelta(days=4):
        if clock.now().minute == 0:
            publish(engine, f"News at {clock.now():%d %H:%M}", clock.now() - timedelta(minutes=1))
        run_due(engine, settings, "daily", clock)
        clock.advance(timedelta(minutes=30))

    for email, tz, at in PEOPLE:
        got = deliveries_of(engine, email)
        zone = ZoneInfo(tz if at else "UTC")
        local_days = [e.built_at.astimezone(zone).date() for _, e in got]
        assert len(local_days) == len(set(local_days)), email  # never two for one local day
        assert len(got) >= 4, (email, local_days)
        for _, edition in got:
            local = edition.built_at.astimezone(zone)
            expected = at or "07:00"
            if email == "gap@example.org" and local.date().isoformat() == "2026-03-29":
                expected = "03:30"  # the hour after the gap
            assert local.strftime("%H:%M") == expected, (email, edition.slot, local)
            assert edition.article_count > 0


def test_local_slots_each_get_their_own_edition_with_the_news_as_of_then(db_url: str, engine: Engine) -> None:
    now = utc(2026, 11, 25, 5, 0)
    settings = make_settings(db_url)
    subscribe(engine, "berlin@example.org", now, tz="Europe/Berlin", at="07:00")
    subscribe(engine, "newyork@example.org", now, tz="America/New_York", at="07:00")
    publish(engine, "Early story", now - timedelta(hours=1))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 6, 0)))  # 07:00 Berlin
    publish(engine, "Later story", utc(2026, 11, 25, 9, 0))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 12, 0)))  # 07:00 New York

    with session_scope(engine) as s:
        counts = {
            e.slot: len(s.exec(select(EditionArticle).where(EditionArticle.edition_id == e.id)).all())
            for e in s.exec(select(Edition).where(Edition.status != EditionStatus.SKIPPED)).all()
            if ":" in e.slot
        }
    # New York still gets the early story Berlin got: each series skips only its own earlier editions.
    assert counts == {"2026-11-25 07:00 Europe/Berlin": 1, "2026-11-25 07:00 America/New_York": 2}


def test_changing_send_time_never_gives_a_second_edition_the_same_local_day(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24), tz="Europe/Berlin", at="07:00")
    publish(engine, "Morning story", utc(2026, 11, 25, 5))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 6, 1)))
    with session_scope(engine) as s:
        sub = find_subscriber(s, "ana@example.org")
        assert sub is not None
        sub.send_time = "19:00"
        s.add(sub)
    publish(engine, "Evening story", utc(2026, 11, 25, 17))

    outcomes = run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 18, 1)))

    assert [(o.slot, o.queued) for o in outcomes if o.action == "queued"] == [("2026-11-25 19:00 Europe/Berlin", 0)]
    assert len(deliveries_of(engine, "ana@example.org")) == 1
    # The next day she gets the evening edition.
    publish(engine, "Next evening story", utc(2026, 11, 26, 17))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 26, 18, 1)))
    assert [e.slot for _, e in deliveries_of(engine, "ana@example.org")][-1] == "2026-11-26 19:00 Europe/Berlin"


def test_weekly_subscriber_gets_a_week_of_news_on_their_weekday(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "weekly@example.org", utc(2026, 11, 1), weekly=2)  # Wednesdays, default schedule
    subscribe(engine, "daily@example.org", utc(2026, 11, 1))
    headlines = ["Harbour pact", "Rail tunnel opens", "Lenders tighten", "Asteroids mapped", "Bridge repaired", "Vote"]
    for day, headline in zip(range(20, 26), headlines, strict=True):
        publish(engine, headline, utc(2026, 11, day, 6))
        run_due(engine, settings, "daily", FixedClock(utc(2026, 11, day, 7, 5)))

    weekly = deliveries_of(engine, "weekly@example.org")
    assert [e.slot for _, e in weekly] == ["2026-11-25 weekly-wed"]
    assert weekly[0][1].article_count == 6  # weekly_lookback 7d
    assert len(deliveries_of(engine, "daily@example.org")) == 6


def test_restart_within_max_delay_sends_the_missed_edition_late_with_news_as_of_send_time(
    db_url: str, engine: Engine
) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24))
    publish(engine, "Before the slot", utc(2026, 11, 25, 6, 30))
    publish(engine, "After the slot", utc(2026, 11, 25, 7, 45))  # published while the service was down

    outcomes = run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 8, 30)))

    assert [(o.slot, o.action, o.queued) for o in outcomes] == [("2026-11-25", "queued", 1)]
    assert "90m late" in outcomes[0].reason
    with session_scope(engine) as s:
        edition = s.exec(select(Edition)).one()
    assert edition.built_at == utc(2026, 11, 25, 8, 30) and edition.article_count == 2


def test_restart_beyond_max_delay_skips_with_a_logged_reason(
    db_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 23))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 24, 7, 1)))  # the last edition before the outage
    publish(engine, "Story", utc(2026, 11, 25, 6, 30))

    with caplog.at_level(logging.INFO, logger="digest.app.planner"):
        outcomes = run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 9, 30)))
        again = run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 9, 31)))

    assert [(o.action, o.reason) for o in outcomes] == [("skipped", "2h30m late, more than max_delay 2h00m")]
    assert again == []
    skipped = [r for r in caplog.records if getattr(r, "event", "") == "edition.skipped"]
    assert len(skipped) == 1 and skipped[0].fields["reason"] == outcomes[0].reason  # type: ignore[attr-defined]
    with session_scope(engine) as s:
        skipped = s.exec(select(Edition).where(Edition.slot == "2026-11-25")).one()
        assert skipped.status == EditionStatus.SKIPPED
        assert s.exec(select(Delivery).where(Delivery.edition_id == skipped.id)).all() == []


def test_a_series_that_never_ran_starts_with_its_next_slot_without_a_skip(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24))

    assert run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 12))) == []
    with session_scope(engine) as s:
        assert s.exec(select(Edition)).all() == []


def test_days_of_downtime_are_coalesced_into_one_edition(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 20))
    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 22, 7, 1)))
    publish(engine, "Story", utc(2026, 11, 25, 6))

    run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 7, 30)))  # back after three days

    with session_scope(engine) as s:
        assert sorted(s.exec(select(Edition.slot)).all()) == ["2026-11-22", "2026-11-25"]


def test_running_again_creates_nothing_new(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24))
    subscribe(engine, "ben@example.org", utc(2026, 11, 24), tz="Europe/Lisbon", at="07:00")
    publish(engine, "Story", utc(2026, 11, 24, 22))
    for minute in (0, 1, 30):
        run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 7, minute)))

    with session_scope(engine) as s:
        assert len(s.exec(select(Edition)).all()) == 2
        assert len(s.exec(select(Delivery)).all()) == 2


def test_edition_left_ready_by_a_dead_leader_is_queued_by_the_next(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24))
    publish(engine, "Story", utc(2026, 11, 25, 6))
    # The old leader built the edition and died before queueing its deliveries.
    edition, _, _ = build_edition(engine, settings, "daily", Series("UTC"), "2026-11-25", utc(2026, 11, 25, 7))
    assert edition.status == EditionStatus.READY

    outcomes = run_due(engine, settings, "daily", FixedClock(utc(2026, 11, 25, 7, 0, 10)))

    assert [(o.slot, o.queued) for o in outcomes] == [("2026-11-25", 1)]
    with session_scope(engine) as s:
        assert len(s.exec(select(Edition)).all()) == 1


def test_the_outbox_drain_delivers_the_queue_through_real_smtp(db_url: str, engine: Engine, sink: SmtpSink) -> None:
    settings = make_settings(db_url, sink.url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24), tz="Pacific/Kiritimati", at="07:00")
    subscribe(engine, "ben@example.org", utc(2026, 11, 24))
    publish(engine, "Story", utc(2026, 11, 24, 16))
    clock = FixedClock(utc(2026, 11, 24, 17, 0, 5))  # 07:00 on the 25th in Kiritimati
    run_due(engine, settings, "daily", clock)

    report = drain_outbox(engine, settings, clock)

    assert report.sent == 1
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
    # The edition's date is the reader's: the 25th, though it is still the 24th in UTC.
    assert b"25" in sink.messages[0].data and b"November" in sink.messages[0].data
    assert drain_outbox(engine, settings, clock).sent == 0
    with session_scope(engine) as s:
        statuses = s.exec(select(Delivery.status)).all()
        sub = s.exec(select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert statuses == [DeliveryStatus.SENT] and sub.timezone == "Pacific/Kiritimati"


def masthead_date(data: bytes) -> str:
    import email
    from email import policy

    html = email.message_from_bytes(data, policy=policy.default).get_body(preferencelist=("html",))
    assert html is not None
    found = re.search(r'class="masthead-date"[^>]*>([^<]+)<', html.get_content())  # type: ignore[attr-defined]
    assert found is not None
    return found.group(1).strip()


def test_a_resend_of_a_local_time_edition_carries_the_date_first_sent(db_url: str, engine: Engine) -> None:
    from digest.app.send import resend_failed
    from digest.transport.smtp import MemoryTransport

    settings = make_settings(db_url)
    subscribe(engine, "ana@example.org", utc(2026, 11, 24), tz="Asia/Tokyo", at="07:00")
    publish(engine, "Story", utc(2026, 11, 24, 20))
    clock = FixedClock(utc(2026, 11, 24, 22, 0, 5))  # 07:00 on the 25th in Tokyo, the 24th in UTC
    run_due(engine, settings, "daily", clock)
    first = MemoryTransport()
    drain_outbox(engine, settings, clock, transport=first)
    [(delivery, edition)] = deliveries_of(engine, "ana@example.org")
    with session_scope(engine) as s:  # as if the server had answered 451 after all
        row = s.get(Delivery, delivery.id)
        assert row is not None
        row.status = DeliveryStatus.FAILED_TEMPORARY
        s.add(row)

    again = MemoryTransport()
    assert edition.id is not None
    resend_failed(engine, settings, edition.id, clock, transport=again)

    assert len(first.messages) == len(again.messages) == 1
    assert masthead_date(again.messages[0][2]) == masthead_date(first.messages[0][2])
    assert "25" in masthead_date(again.messages[0][2])
