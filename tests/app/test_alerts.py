"""Breaking alerts through the real outbox and a real SMTP server, and the digest after them."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from email.message import EmailMessage

from sqlalchemy.engine import Engine

from digest.app.alerts import send_alerts
from digest.app.send import preview_message, send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import NOW, draft

NEW_YORK = "America/New_York"
STORM = draft("Storm surge floods harbour district", 10, breaking=True, priority=9, category="World")
OTHERS = [
    draft("Rail tunnel reopens after repairs", 60, category="World"),
    draft("Lenders tighten credit for small firms", 90, category="Business"),
]


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def text_of(data: bytes) -> str:
    part = parsed(data).get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return, attr-defined]


def subscribe(engine: Engine, address: str, **kw: object) -> None:
    with session_scope(engine) as session:
        add_subscriber(session, address, NOW - timedelta(days=1), **kw)  # type: ignore[arg-type]


def store(engine: Engine, *drafts: object, at: object = NOW) -> None:
    with session_scope(engine) as session:
        upsert_articles(session, list(drafts), at)  # type: ignore[arg-type]


def received(sink: SmtpSink, address: str) -> list[bytes]:
    return [m.data for m in sink.messages if m.rcpt_tos == [address]]


def test_alert_goes_to_opted_in_subscribers_and_the_digest_leaves_the_story_out(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS)
    subscribe(engine, "ana@example.org", alerts=True)
    subscribe(engine, "ben@example.org")

    run = send_alerts(engine, settings, clock)

    assert run.send is not None and run.send.sent == 1
    (alert,) = received(sink, "ana@example.org")
    msg = parsed(alert)
    assert msg["Subject"] == "Breaking: Storm surge floods harbour district"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Storm surge floods harbour district" in text_of(alert)
    send_digest(engine, settings, "daily", None, clock)
    ana_digest, ben_digest = received(sink, "ana@example.org")[1], received(sink, "ben@example.org")[0]
    assert "Storm surge" not in text_of(ana_digest) and "Rail tunnel reopens" in text_of(ana_digest)
    assert "Storm surge floods harbour district" in text_of(ben_digest)


def test_a_story_updated_after_its_alert_is_in_the_digest_marked_updated(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS)
    subscribe(engine, "ana@example.org", alerts=True)
    send_alerts(engine, settings, clock)
    changed = draft(STORM.title, 10, breaking=True, priority=9, summary="The surge is now receding.")
    store(engine, changed, at=NOW + timedelta(minutes=5))

    send_digest(engine, settings, "daily", None, FixedClock(NOW + timedelta(minutes=10)))

    digest_copy = text_of(received(sink, "ana@example.org")[1])
    assert "Storm surge floods harbour district" in digest_copy
    assert "Updated since our alert" in digest_copy


def test_the_same_items_polled_again_do_not_count_as_an_update(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS)
    subscribe(engine, "ana@example.org", alerts=True)
    send_alerts(engine, settings, clock)
    store(engine, STORM, *OTHERS, at=NOW + timedelta(minutes=5))

    send_digest(engine, settings, "daily", None, FixedClock(NOW + timedelta(minutes=10)))

    assert "Storm surge" not in text_of(received(sink, "ana@example.org")[1])


def test_an_alert_is_never_sent_twice_across_runs(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM)
    subscribe(engine, "ana@example.org", alerts=True)

    first = send_alerts(engine, settings, clock)
    second = send_alerts(engine, settings, FixedClock(NOW + timedelta(minutes=1)))

    assert first.built == 1 and first.queued == 1
    assert second.built == 0 and second.queued == 0
    assert len(received(sink, "ana@example.org")) == 1


def test_no_more_than_alerts_per_day_in_the_subscribers_local_day(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    settings = settings.model_copy(update={"alerts_per_day": 2})
    storms = [draft(f"Breaking story number {i}", 10 + i, breaking=True, priority=9) for i in range(3)]
    store(engine, *storms)
    # 06:00 UTC is 07:00 in Berlin: the local day began at 23:00 UTC yesterday.
    subscribe(engine, "ana@example.org", alerts=True, timezone="Europe/Berlin")

    send_alerts(engine, settings, clock)
    send_alerts(engine, settings, FixedClock(NOW + timedelta(minutes=30)))
    assert len(received(sink, "ana@example.org")) == 2
    # Berlin's next day begins at 23:00 UTC; the third story is stale by then (alert_max_age).
    send_alerts(engine, settings, FixedClock(NOW + timedelta(hours=17, minutes=1)))
    assert len(received(sink, "ana@example.org")) == 2


def test_an_alert_is_held_through_quiet_hours_and_sent_when_they_end(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM)
    # NOW is 01:00 in New York.
    subscribe(engine, "ana@example.org", alerts=True, timezone=NEW_YORK, quiet_start="22:00", quiet_end="02:00")

    held = send_alerts(engine, settings, clock)
    assert held.queued == 0 and received(sink, "ana@example.org") == []

    after = send_alerts(engine, settings, FixedClock(NOW + timedelta(hours=1)))
    assert after.queued == 1 and len(received(sink, "ana@example.org")) == 1


def test_a_held_alert_older_than_alert_max_age_is_dropped(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    settings = settings.model_copy(update={"alert_max_age": timedelta(minutes=30)})
    store(engine, STORM)
    subscribe(engine, "ana@example.org", alerts=True, timezone=NEW_YORK, quiet_start="22:00", quiet_end="02:00")

    send_alerts(engine, settings, clock)
    send_alerts(engine, settings, FixedClock(NOW + timedelta(hours=1)))

    assert received(sink, "ana@example.org") == []


def test_alerted_readers_add_at_most_one_variant_per_topic_list(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS, draft("Volunteers map new asteroids", 120, category="Science"))
    topic_lists = [None, "Science", "World"]
    for i in range(30):
        subscribe(engine, f"r{i}@example.org", topics=topic_lists[i % 3], alerts=i % 2 == 0)
    send_alerts(engine, settings, clock)

    report = send_digest(engine, settings, "daily", None, clock)

    assert report.sent == 30
    # 3 topic lists, each seen with and without the alerted story: 6 renders for 30 readers.
    assert report.variants == 6


def test_a_readers_preview_leaves_out_their_alerted_story_as_their_copy_will(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS)
    subscribe(engine, "ana@example.org", alerts=True)
    send_alerts(engine, settings, clock)

    with session_scope(engine) as session:
        preview = preview_message(session, settings, "daily", clock, "ana@example.org")

    assert "Storm surge" not in preview.text and "Rail tunnel reopens" in preview.text
