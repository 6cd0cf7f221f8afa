"""Schedule: when each edition of a digest is due. Pure functions of (config, series, now).

A digest's editions come in *series*. The default series follows the digest's cron
``schedule`` in its ``timezone``; every distinct (send time, timezone) of subscribers
who chose their own send time is a series of its own, and weekly subscribers get a
weekly series per weekday. Each series has at most one *slot* per local day, named
by a key that is unique per digest (the ``edition.slot`` column):

- ``2026-11-25``: the default daily series (the same key ``digest send`` uses);
- ``2026-11-25 weekly-wed``: the default schedule, for weekly subscribers of Wednesday;
- ``2026-11-25 07:00 Europe/Berlin``: subscribers who want it at 07:00 Berlin time;
- ``2026-11-25 weekly-wed 07:00 Europe/Berlin``: the same, weekly on Wednesdays.

Nothing here reads the clock, the store or the settings file. The planner
(``digest.app.planner``) asks :func:`decide` what to do with the latest slot of each
series and looks up in the store whether that slot already ran.

Daylight saving time: a local send time that does not exist on the day clocks go
forward (02:30 in Berlin on the last Sunday of March) fires at the same instant as
the hour before the change would have (03:30 summer time); a time that exists twice
when clocks go back fires at its first occurrence. Either way a series has exactly
one slot per local date.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from digest.core.errors import ConfigError
from digest.core.settings import DigestConfig
from digest.core.text import parse_hhmm

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
# crontab numbers weekdays from Sunday (0 and 7); APScheduler 3 from Monday (its
# issue 286), so numbers are translated to names, which both read the same way.
_CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HORIZON = timedelta(days=400)


# ---------------------------------------------------------------- cron


def _weekday_numbers(part: str, where: str) -> range:
    def num(token: str) -> int:
        token = token.strip().lower()
        if token.isdigit() and 0 <= int(token) <= 7:
            return int(token)
        if token[:3] in _CRON_DAY_NAMES and len(token) >= 3:
            return _CRON_DAY_NAMES.index(token[:3])
        raise ConfigError(where, f"bad weekday {token!r} (use 0-7 or sun-sat)")

    if part == "*":
        return range(0, 7)
    if "-" in part:
        a, b = part.split("-", 1)
        lo, hi = num(a), num(b)
        if hi < lo:
            raise ConfigError(where, f"weekday range {part!r} runs backwards")
        return range(lo, hi + 1)
    n = num(part)
    return range(n, n + 1)


def crontab_weekdays(field: str, where: str = "schedule") -> str:
    """A crontab weekday field (0 or 7 = Sunday) as APScheduler weekday names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        part, _, step = item.partition("/")
        span = _weekday_numbers(part, where)
        if step and part != "*" and "-" not in part:
            span = range(span.start, 7)  # "1/2": from Monday on, every other day
        stride = int(step) if step.isdigit() and int(step) > 0 else (1 if not step else 0)
        if stride == 0:
            raise ConfigError(where, f"bad step in weekday field {item!r}")
        days.update(n % 7 for n in span[::stride])
    return ",".join(_CRON_DAY_NAMES[n] for n in sorted(days))


def cron_trigger(expr: str, timezone: str, where: str = "schedule") -> CronTrigger:
    """A CronTrigger for a crontab expression, always in the given (explicit) timezone.

    Five fields are the usual ``minute hour day month weekday``; a sixth leading field
    gives seconds, for tests that need an edition a few seconds ahead. Raises
    ConfigError naming ``where`` for anything else.
    """
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ConfigError(where, f"cron expression needs 5 fields (minute hour day month weekday), got {expr!r}")
    second, minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(weekday, where),
            timezone=ZoneInfo(timezone),
        )
    except ValueError as exc:
        raise ConfigError(where, f"bad cron expression {expr!r}: {exc}") from None


def _next_after(trigger: CronTrigger, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC)."""
    start = after + timedelta(seconds=1)
    for _ in range(4):
        nxt = trigger.get_next_fire_time(None, start)
        if nxt is None:
            return None
        nxt = nxt.astimezone(UTC)
        # APScheduler 3 can return the repeated wall-clock hour of an autumn DST
        # change twice; insist on progress.
        if nxt > after:
            return nxt
        start += timedelta(hours=1)
    return None


def previous_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now`` (UTC), looking back at most ~400 days."""
    span = timedelta(minutes=1)
    while span <= _HORIZON * 2:
        first = trigger.get_next_fire_time(None, now - span)
        if first is not None and first.astimezone(UTC) <= now:
            last = first.astimezone(UTC)
            while True:
                nxt = _next_after(trigger, last)
                if nxt is None or nxt > now:
                    return last
                last = nxt
        span *= 2
    return None


def next_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The first fire time strictly after ``now`` (UTC)."""
    nxt = trigger.get_next_fire_time(None, now)
    if nxt is None:
        return None
    nxt = nxt.astimezone(UTC)
    return _next_after(trigger, nxt) if nxt <= now else nxt


# ---------------------------------------------------------------- series and slots


def check_send_time(value: str) -> time:
    """The local time of a series' send time (the one HH:MM rule, :func:`digest.core.text.parse_hhmm`)."""
    return parse_hhmm(value)


@dataclass(frozen=True, order=True)
class Series:
    """One sequence of editions: the default schedule, or one local send time.

    ``zone`` is the timezone of the slot's date; ``send_time`` is ``"HH:MM"`` local
    time, or None for the digest's own schedule; ``weekday`` (0 = Monday) makes it a
    weekly series, None a daily one.
    """

    zone: str
    send_time: str | None = None
    weekday: int | None = None

    @property
    def is_default(self) -> bool:
        return self.send_time is None

    @property
    def suffix(self) -> str:
        """What follows the date in this series' slot keys ("" for the default daily series)."""
        s = f" weekly-{DAY_NAMES[self.weekday]}" if self.weekday is not None else ""
        if self.send_time is not None:
            s += f" {self.send_time} {self.zone}"
        return s

    def slot(self, day: date) -> str:
        return day.isoformat() + self.suffix

    def describe(self) -> str:
        when = f"{self.send_time} {self.zone}" if self.send_time else "schedule"
        return f"{when}{f' weekly on {DAY_NAMES[self.weekday]}' if self.weekday is not None else ''}"


def default_series(cfg: DigestConfig, weekday: int | None = None) -> Series:
    return Series(zone=cfg.timezone, send_time=None, weekday=weekday)


def parse_slot(slot: str) -> tuple[date, Series | None]:
    """The date and (for slots with a local send time) the series of a slot key.

    For default-schedule slots the series' zone is unknown here (it is the digest's),
    so None is returned in its place unless the slot is weekly.
    """
    day = date.fromisoformat(slot[:10])
    rest = slot[10:].split()
    weekday = None
    if rest and rest[0].startswith("weekly-"):
        weekday = DAY_NAMES.index(rest.pop(0)[7:])
    if len(rest) == 2:
        return day, Series(zone=rest[1], send_time=rest[0], weekday=weekday)
    return day, None if weekday is None else Series(zone="", send_time=None, weekday=weekday)


def _local_fire(day: date, at: time, zone: ZoneInfo) -> datetime:
    # fold=0: a time in the spring gap maps to the instant an hour later on the
    # wall clock; a repeated autumn time to its first occurrence.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def latest_fire(
    cfg: DigestConfig, series: Series, now: datetime, trigger: CronTrigger | None = None
) -> datetime | None:
    """The latest scheduled time of ``series`` at or before ``now`` (UTC)."""
    zone = ZoneInfo(series.zone)
    if series.send_time is not None:
        at = check_send_time(series.send_time)
        day = now.astimezone(zone).date()
        if series.weekday is not None:
            day -= timedelta(days=(day.weekday() - series.weekday) % 7)
        step = timedelta(days=7 if series.weekday is not None else 1)
        for _ in range(3):
            fire = _local_fire(day, at, zone)
            if fire <= now:
                return fire
            day -= step
        return None
    trigger = trigger or cron_trigger(cfg.schedule, cfg.timezone)
    if series.weekday is None:
        return previous_fire(trigger, now)
    # Weekly on the default schedule: the latest fire on the latest local date that
    # has the series' weekday.
    day = now.astimezone(zone).date()
    day -= timedelta(days=(day.weekday() - series.weekday) % 7)
    for _ in range(3):
        end_of_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
        found = previous_fire(trigger, min(now, end_of_day - timedelta(microseconds=1)))
        if found is not None and found.astimezone(zone).date() == day:
            return found
        day -= timedelta(days=7)
    return None


def upcoming_fire(
    cfg: DigestConfig, series: Series, now: datetime, trigger: CronTrigger | None = None
) -> datetime | None:
    """The next scheduled time of ``series`` after ``now`` (UTC), for ``digest status``."""
    zone = ZoneInfo(series.zone)
    if series.send_time is not None:
        at = check_send_time(series.send_time)
        day = now.astimezone(zone).date() - timedelta(days=1)
        for _ in range(10):
            fire = _local_fire(day, at, zone)
            if fire > now and (series.weekday is None or day.weekday() == series.weekday):
                return fire
            day += timedelta(days=1)
        return None
    trigger = trigger or cron_trigger(cfg.schedule, cfg.timezone)
    candidate = next_fire(trigger, now)
    for _ in range(400):
        if candidate is None or series.weekday is None or candidate.astimezone(zone).weekday() == series.weekday:
            return candidate
        candidate = _next_after(trigger, candidate)
    return None


@dataclass(frozen=True)
class Decision:
    """What to do about the latest slot of a series at ``now``."""

    series: Series
    slot: str
    fire: datetime  # when the slot was due (UTC)
    action: str  # SEND, SKIP or DONE
    late: timedelta
    reason: str

    SEND = "send"
    SKIP = "skip"
    DONE = "done"


def decide(
    cfg: DigestConfig,
    series: Series,
    now: datetime,
    existing: Container[str],
    trigger: CronTrigger | None = None,
) -> Decision | None:
    """Decide about the latest slot of ``series`` due at or before ``now``.

    ``existing`` holds the slot keys that already have an edition: the store, not
    this process's memory, says what ran. Runs missed while nothing was running
    are coalesced: only the latest slot counts, sent if it is at most
    ``cfg.max_delay`` late and skipped otherwise. None when the series has no slot
    in the past ~400 days.
    """
    fire = latest_fire(cfg, series, now, trigger)
    if fire is None:
        return None
    slot = series.slot(fire.astimezone(ZoneInfo(series.zone)).date())
    late = now - fire
    if slot in existing:
        return Decision(series, slot, fire, Decision.DONE, late, "already has an edition")
    if late <= cfg.max_delay:
        reason = "on time" if late < timedelta(minutes=1) else f"{_fmt(late)} late, within max_delay"
        return Decision(series, slot, fire, Decision.SEND, late, reason)
    return Decision(
        series,
        slot,
        fire,
        Decision.SKIP,
        late,
        f"{_fmt(late)} late, more than max_delay {_fmt(cfg.max_delay)}",
    )


def _fmt(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"
