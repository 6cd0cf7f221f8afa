"""Text helpers every room may use."""

from __future__ import annotations

import re
from datetime import time

_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def one_line(value: str) -> str:
    """Strip control characters (CR/LF included) and collapse whitespace."""
    if value.isprintable():  # nearly always: no character to replace
        return " ".join(value.split())
    cleaned = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(cleaned.split())


def mask_email(email: str) -> str:
    """``ana.lima@example.org`` -> ``a***@example.org``: the one masking rule for an address.

    Used in log lines, error messages, command output and web pages alike. Only the
    first character of the local part is kept, however long it is: enough for its
    owner to recognise it, too little for anyone else to recover it.
    """
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def parse_hhmm(value: str) -> time:
    """A local time of day written ``HH:MM`` (``7:05`` too); ValueError names the rule otherwise."""
    m = _HHMM.match(value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"send time must be HH:MM, got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


# Section names that say only "this is breaking news", not what the story is about.
BREAKING_CATEGORIES: frozenset[str] = frozenset({"breaking news", "breaking"})


def is_breaking_category(category: str) -> bool:
    """Whether a source's section name itself says the article is breaking news."""
    return " ".join(category.split()).casefold() in BREAKING_CATEGORIES
