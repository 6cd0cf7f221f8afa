"""Form fields as the pages read them: bounded text, repeated values, the timezone picker.

Parsing here only bounds and types what the browser sent; validation is the use
case's (:mod:`digest.app.subscriptions`), which names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

from starlette.datastructures import FormData

from digest.app.preferences import Preferences, parse_preferences
from digest.app.subscriptions import SubscribeForm
from digest.core.settings import Settings

HONEYPOT_FIELD = "website"
REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")


@cache
def timezone_groups() -> list[tuple[str, list[str]]]:
    """IANA zones for the timezone picker, grouped by region: ``[("Europe", ["Europe/Berlin", ...]), ...]``."""
    zones = sorted(z for z in available_timezones() if z.split("/", 1)[0] in REGIONS and "/" in z)
    groups: dict[str, list[str]] = {}
    for z in zones:
        groups.setdefault(z.split("/", 1)[0], []).append(z)
    return [("", ["UTC"]), *groups.items()]


def text_field(form: FormData, name: str, limit: int) -> str:
    """A form value as text, at most ``limit`` characters (uploads are refused as empty)."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def list_field(form: FormData, name: str, limit: int = 50) -> list[str]:
    """Every value of a repeated field (checkboxes), at most ``limit`` of them."""
    return [v[:200] for v in form.getlist(name) if isinstance(v, str)][:limit]


def checkbox_field(form: FormData, name: str) -> bool | None:
    """A checkbox sent with a hidden ``no`` of the same name before it: ticked or not;
    None when the form did not show it (the stored choice stays)."""
    values = list_field(form, name, 2)
    return None if not values else "yes" in values


def subscribe_form(form: FormData) -> SubscribeForm:
    """The subscribe form's fields, bounded, not yet validated."""
    return SubscribeForm(
        email=text_field(form, "email", 320),
        name=text_field(form, "name", 200),
        topics=tuple(list_field(form, "topics")),
        timezone=text_field(form, "timezone", 64),
    )


@dataclass(frozen=True)
class PreferencesFields:
    """The preferences form's fields, bounded, not yet validated (empty fields are None)."""

    topics: list[str]
    timezone: str | None
    send_time: str | None
    frequency: str | None
    weekday: str | None
    breaking: bool | None = None
    locale: str | None = None
    alerts: bool | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None

    @classmethod
    def read(cls, form: FormData) -> PreferencesFields:
        return cls(
            topics=list_field(form, "topics"),
            timezone=text_field(form, "timezone", 64) or None,
            send_time=text_field(form, "send_time", 5) or None,
            frequency=text_field(form, "frequency", 10) or None,
            weekday=text_field(form, "weekday", 2) or None,
            breaking=checkbox_field(form, "breaking"),
            locale=text_field(form, "locale", 35) or None,
            alerts=checkbox_field(form, "alerts"),
            quiet_start=text_field(form, "quiet_start", 5) or None,
            quiet_end=text_field(form, "quiet_end", 5) or None,
        )

    def validate(self, settings: Settings) -> Preferences:
        """The validated preferences; InputError names the offending field."""
        return parse_preferences(
            settings,
            topics=self.topics,
            timezone=self.timezone,
            send_time=self.send_time,
            frequency=self.frequency,
            weekday=self.weekday,
            breaking=self.breaking,
            locale=self.locale,
            alerts=self.alerts,
            quiet_start=self.quiet_start,
            quiet_end=self.quiet_end,
        )

    def as_entered(self) -> Preferences:
        """The values as typed, to show the form again with an error."""
        return Preferences(
            topics=tuple(self.topics),
            timezone=self.timezone,
            send_time=self.send_time,
            frequency=self.frequency or "daily",
            weekday=int(self.weekday) if self.weekday and self.weekday.isdigit() else None,
            breaking=self.breaking,
            locale=self.locale,
            alerts=self.alerts,
            quiet_start=self.quiet_start,
            quiet_end=self.quiet_end,
        )
