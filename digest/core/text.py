"""Text helpers every room may use."""

from __future__ import annotations


def one_line(value: str) -> str:
    """Strip control characters (CR/LF included) and collapse whitespace."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(cleaned.split())
