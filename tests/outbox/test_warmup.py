"""The warm-up cap: its curve, its days, and queueing within it, also from several processes at once."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from digest.core.settings import WarmupSettings
from digest.outbox.warmup import daily_cap, queue_capped, schedule_day
from digest.store.db import session_scope
from digest.store.models import Delivery, Edition, Subscriber, saved_id
from digest.store.subscribers import add_subscriber
from tests.conftest import NOW

WARM = WarmupSettings(enabled=True, start_date=NOW.date(), start=10, days=30)


def test_the_curve_grows_by_one_factor_from_start_to_full() -> None:
    caps = [daily_cap(200, 10_000, 30, d) for d in range(1, 31)]

    assert caps[0] == 200 and caps[-1] == 10_000
    assert caps[:5] == [200, 229, 262, 300, 343]
    ratios = [b / a for a, b in zip(caps, caps[1:], strict=False)]
    assert max(ratios) - min(ratios) < 0.01


@pytest.mark.parametrize(
    ("start", "full", "days", "day", "cap"),
    [(2, 6, 3, 2, 3), (2, 6, 3, 3, 6), (50, 10, 5, 3, 50), (7, 100, 1, 1, 7), (2, 6, 3, 9, 6)],
    ids=["middle", "last", "full-below-start", "one-day", "past-the-end"],
)
def test_daily_cap(start: int, full: int, days: int, day: int, cap: int) -> None:
    assert daily_cap(start, full, days, day) == cap


def test_days_are_counted_in_the_schedules_timezone() -> None:
    cfg = WarmupSettings(enabled=True, start_date=date(2026, 11, 25), days=3, timezone="Pacific/Auckland")

    assert schedule_day(cfg, datetime(2026, 11, 24, 10, 59, tzinfo=UTC)) == (1, "2026-11-24")  # before: day 1
    assert schedule_day(cfg, datetime(2026, 11, 24, 11, 0, tzinfo=UTC)) == (1, "2026-11-25")  # Auckland's midnight
    assert schedule_day(cfg, datetime(2026, 11, 27, 10, 59, tzinfo=UTC)) == (3, "2026-11-27")
    assert schedule_day(cfg, datetime(2026, 11, 27, 11, 0, tzinfo=UTC)) is None  # day 4: no cap


def test_no_schedule_when_off() -> None:
    assert schedule_day(WarmupSettings(start_date=NOW.date()), NOW) is None


def editions(engine: Engine, n: int) -> list[int]:
    with session_scope(engine) as s:
        rows = [Edition(digest="daily", slot=f"2026-11-25T0{i}", built_at=NOW) for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [saved_id(e) for e in rows]


def subscribers(engine: Engine, n: int) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            add_subscriber(s, f"r{i:03}@example.org", NOW - timedelta(minutes=i))


def queued(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(s.execute(select(func.count()).select_from(Delivery)).scalar_one())


def test_editions_queued_at_once_stay_within_the_cap_together(engine: Engine) -> None:
    subscribers(engine, 60)
    earlier, *ids = editions(engine, 5)
    with session_scope(engine) as s:  # today's count exists: nobody waits for another to create it
        queue_capped(s, WARM, earlier, NOW, only=col(Subscriber.email) == "r000@example.org")
    barrier = threading.Barrier(len(ids))
    got: dict[int, int] = {}
    failed: list[BaseException] = []

    def queue(edition_id: int) -> None:
        try:
            barrier.wait()
            with session_scope(engine) as s:
                got[edition_id] = queue_capped(s, WARM, edition_id, NOW).queued
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failed.append(exc)

    threads = [threading.Thread(target=queue, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failed == []
    assert queued(engine) == 1 + sum(got.values()) == 10


def test_a_later_queueing_the_same_day_gets_only_what_is_left(engine: Engine) -> None:
    subscribers(engine, 8)
    first, second = editions(engine, 2)

    with session_scope(engine) as s:
        a = queue_capped(s, WARM, first, NOW, only=None)
    with session_scope(engine) as s:
        b = queue_capped(s, WARM.model_copy(update={"start": 12}), second, NOW + timedelta(hours=3))

    assert (a.queued, a.warmup and a.warmup.waiting) == (8, 0)
    assert (b.queued, b.warmup and (b.warmup.used, b.warmup.waiting)) == (4, (12, 4))
