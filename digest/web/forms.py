"""Form fields as the pages read them: bounded text, repeated values, the timezone picker."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from starlette.datastructures import FormData

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
