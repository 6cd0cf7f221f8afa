"""The one check of a link a source gives us: an absolute http(s) URL, or a reason why not."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_http_url(value: str) -> str | None:
    """Return a problem description if ``value`` is not an absolute http(s) URL, else None."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an absolute http(s) URL"
    if not parts.hostname:
        return "has no host"
    return None
