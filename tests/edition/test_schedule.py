"""The schedule: cron parsing, DST, far-off timezones and catch-up decisions, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.core.errors import ConfigError
from digest.core.settings import DigestConfig
from digest.edition.schedule import (
    Decision,
    Series,
    cron_trigger,
    decide,
    latest_fire,
    next_fire,
    parse_slot,
    previous_fire,
    upcoming_fire,
)

CFG = DigestConfig(schedule="0 7 * * *", timezone="UTC", max_delay="2h")  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(expr: str, tz: str, start: datetime, n: int) -> list[datetime]:
    trigger = cron_trigger(expr, tz)
    out: list[datetime] = []
    t = start
    for _ in range(n):
        nxt = next_fire(trigger, t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


# ---------------------------------------------------------------- cron


def test_crontab_weekdays_count_from_sunday() -> None:
    # 2026-11-23 is a Monday; crontab 1-5 means Monday to Friday (APScheduler 3 alone would say Tuesday-Saturday).
    days = [f.strftime("%a") for f in fires("0 7 * * 1-5", "UTC", utc(2026, 11, 22), 6)]

    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]


@pytest.mark.parametrize("field", ["0", "7", "sun", "SUN"])
def test_zero_and_seven_are_sunday(field: str) -> None:
    assert {f.strftime("%a") for f in fires(f"0 7 * * {field}", "UTC", utc(2026, 11, 22), 3)} == {"Sun"}


def test_every_trigger_carries_the_digest_timezone() -> None:
    trigger = cron_trigger("0 7 * * *", "Pacific/Kiritimati")

    assert trigger.timezone == ZoneInfo("Pacific/Kiritimati")
    assert next_fire(trigger, utc(2026, 11, 25, 0)) == utc(2026, 11, 25, 17)  # 07:00 at +14


def test_six_fields_give_seconds_for_tests() -> None:
    assert fires("*/5 * * * * *", "UTC", utc(2026, 11, 25, 6, 0, 1), 2) == [
        utc(2026, 11, 25, 6, 0, 5),
        utc(2026, 11, 25, 6, 0, 10),
    ]


@pytest.mark.parametrize("expr", ["0 7 * *", "0 25 * * *", "0 7 * * 9", "0 7 * * fri-mon", "* * * * * * *"])
def test_bad_cron_is_a_config_error_naming_the_key(expr: str) -> None:
    with pytest.raises(ConfigError) as info:
        cron_trigger(expr, "UTC", "digests.daily.schedule")

    assert "digests.daily.schedule" in str(info.value)


def test_previous_fire_finds_the_latest_fire_at_or_before_now() -> None:
    trigger = cron_trigger("0 7 * * 1", "UTC")  # Mondays

    assert previous_fire(trigger, utc(2026, 11, 25, 12)) == utc(2026, 11, 23, 7)
    assert previous_fire(trigger, utc(2026, 11, 23, 7)) == utc(2026, 11, 23, 7)


def test_cron_fires_once_on_each_day_across_both_dst_changes() -> None:
    trigger = cron_trigger("30 2 * * *", "Europe/Berlin")
    for start in (utc(2026, 3, 27), utc(2026, 10, 23)):
        local_days = []
        t = start
        for _ in range(4):
            fire = latest_fire(
                CFG.model_copy(update={"schedule": "30 2 * * *", "timezone": "Europe/Berlin"}),
                Series("Europe/Berlin"),
                next_fire(trigger, t) or t,
                trigger,
            )
            assert fire is not None
            local_days.append(fire.astimezone(ZoneInfo("Europe/Berlin")).date())
            t = fire + timedelta(hours=12)
        assert len(set(local_days)) == 4, local_days


# ---------------------------------------------------------------- local send times


@pytest.mark.parametrize(
    ("zone", "now", "fire", "slot"),
    [
        # +14: 07:00 on the 25th is 17:00 UTC on the 24th.
        ("Pacific/Kiritimati", utc(2026, 11, 24, 17, 5), utc(2026, 11, 24, 17), "2026-11-25 07:00 Pacific/Kiritimati"),
        # -12: 07:00 on the 25th is 19:00 UTC on the 25th.
        ("Etc/GMT+12", utc(2026, 11, 25, 19, 5), utc(2026, 11, 25, 19), "2026-11-25 07:00 Etc/GMT+12"),
        ("Europe/Berlin", utc(2026, 11, 25, 6, 5), utc(2026, 11, 25, 6), "2026-11-25 07:00 Europe/Berlin"),
    ],
)
def test_local_send_time_slot_is_the_local_date(zone: str, now: datetime, fire: datetime, slot: str) -> None:
    d = decide(CFG, Series(zone, "07:00"), now, set())

    assert d is not None and d.action == Decision.SEND
    assert (d.fire, d.slot) == (fire, slot)


def test_send_time_in_the_spring_gap_fires_an_hour_later_on_the_wall_clock() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: it is sent at 03:30 summer time (01:30 UTC).
    d = decide(CFG, Series("Europe/Berlin", "02:30"), utc(2026, 3, 29, 1, 31), set())

    assert d is not None and d.slot == "2026-03-29 02:30 Europe/Berlin"
    assert d.fire == utc(2026, 3, 29, 1, 30)


def test_send_time_repeated_in_autumn_fires_at_its_first_occurrence_only() -> None:
    series = Series("Europe/Berlin", "02:30")
    first = decide(CFG, series, utc(2026, 10, 25, 0, 31), set())  # 02:31 summer time
    assert first is not None and first.action == Decision.SEND and first.fire == utc(2026, 10, 25, 0, 30)

    again = decide(CFG, series, utc(2026, 10, 25, 1, 31), {first.slot})  # 02:31 again, winter time

    assert again is not None and again.action == Decision.DONE and again.slot == first.slot


ZONES = ["Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu"]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("send_time", ["07:00", "02:30", "00:00", "23:45"])
def test_walking_the_clock_gives_one_slot_per_local_day(zone: str, send_time: str) -> None:
    """Move an injected 'now' in 15-minute steps over both DST changes of 2026: one slot per local date."""
    series = Series(zone, send_time)
    tz = ZoneInfo(zone)
    existing: set[str] = set()
    sent: dict[str, datetime] = {}
    for start in (utc(2026, 3, 26), utc(2026, 10, 23), utc(2026, 11, 1)):
        now = start
        while now < start + timedelta(days=5):
            d = decide(CFG, series, now, existing)
            assert d is not None
            if d.action == Decision.SKIP:  # only the slot before the clock started is too late
                assert now == start
                existing.add(d.slot)
            if d.action == Decision.SEND:
                existing.add(d.slot)
                if now != start:  # a catch-up at the first step may be late
                    sent[d.slot] = now
            now += timedelta(minutes=15)
    local_days = [parse_slot(s)[0] for s in sent]
    assert len(local_days) == len(set(local_days))
    assert len(sent) >= 14
    at = time.fromisoformat(send_time)
    for slot, when in sent.items():
        local = when.astimezone(tz)
        # Sent within one step of the local send time (or of the hour after a gap).
        due = datetime.combine(parse_slot(slot)[0], at, tzinfo=tz).astimezone(UTC)
        assert timedelta(0) <= when - due < timedelta(minutes=15), (slot, local)


def test_weekly_series_fires_only_on_its_weekday() -> None:
    series = Series("Europe/Berlin", "07:00", weekday=2)  # Wednesday

    d = decide(CFG, series, utc(2026, 11, 28, 12), set())  # Saturday

    assert d is not None and d.slot == "2026-11-25 weekly-wed 07:00 Europe/Berlin"
    assert upcoming_fire(CFG, series, utc(2026, 11, 28, 12)) == utc(2026, 12, 2, 6)


def test_weekly_on_the_default_schedule() -> None:
    d = decide(CFG, Series("UTC", None, weekday=0), utc(2026, 11, 25, 12), set())

    assert d is not None and d.slot == "2026-11-23 weekly-mon"


# ---------------------------------------------------------------- catch-up


def test_missed_slot_within_max_delay_is_sent_late() -> None:
    d = decide(CFG, Series("UTC"), utc(2026, 11, 25, 8, 30), set())

    assert d is not None and d.action == Decision.SEND and d.slot == "2026-11-25"
    assert d.late == timedelta(hours=1, minutes=30) and "within max_delay" in d.reason


def test_missed_slot_beyond_max_delay_is_skipped_with_a_reason() -> None:
    d = decide(CFG, Series("UTC"), utc(2026, 11, 25, 9, 30), set())

    assert d is not None and d.action == Decision.SKIP
    assert d.reason == "2h30m late, more than max_delay 2h00m"


def test_runs_missed_over_days_are_coalesced_into_the_latest() -> None:
    # Down since Monday; on Wednesday at 08:00 only Wednesday's slot is considered.
    d = decide(CFG, Series("UTC"), utc(2026, 11, 25, 8), {"2026-11-22"})

    assert d is not None and d.action == Decision.SEND and d.slot == "2026-11-25"


def test_a_slot_with_an_edition_is_done() -> None:
    d = decide(CFG, Series("UTC"), utc(2026, 11, 25, 7, 1), {"2026-11-25"})

    assert d is not None and d.action == Decision.DONE


def test_slot_keys_round_trip() -> None:
    for series in (Series("Etc/GMT+12", "07:00"), Series("Europe/Berlin", "23:45", weekday=6)):
        slot = series.slot(datetime(2026, 11, 25).date())
        assert parse_slot(slot) == (datetime(2026, 11, 25).date(), series)
        assert len(slot) <= 64
