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


# Sentence ends: Latin/Greek/Cyrillic marks are followed by a space (or the end), the
# full-width CJK ones need none (Chinese and Japanese put no space between sentences).
# ؟ is the Arabic question mark, ۔ the Urdu full stop, । the Devanagari danda.
_SPACED_ENDS = ".!?…؟۔।"
_CJK_ENDS = "。！？"
_CLOSERS = "\"'”’»)]」』）"
# Words that end in a full stop without ending the sentence (compared lower-cased,
# without the stop). Single letters (initials, "J. Smith") are caught separately.
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g", "i.e",
        "inc", "ltd", "co", "corp", "no", "nos", "gen", "gov", "sen", "rep", "lt", "col", "capt",
        "sgt", "rev", "hon", "pres", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec", "approx", "dept", "est", "fig", "vol", "p", "pp", "u.s",
        "u.k", "u.n", "a.m", "p.m", "ca", "cf", "al", "bzw", "usw", "z.b", "d.h", "nr", "mme",
    }
)  # fmt: skip


def split_first_sentence(text: str) -> tuple[str, str]:
    """``(first sentence, the rest)`` of one line of ``text``; ``(text, "")`` when it is one sentence.

    A full stop after an abbreviation ("Dr.", "U.S.", "e.g."), an initial ("J. Smith")
    or before a lower-case word ("approx. five") does not end the sentence. Besides
    ``. ! ? …`` it knows the Arabic ``؟``, the Urdu ``۔`` and the full-width ``。！？``
    (which need no space after them). Closing quotes and brackets stay with their sentence.
    """
    text = " ".join(text.split())
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch in _CJK_ENDS or ch in _SPACED_ENDS:
            end = i + 1
            while end < n and (text[end] in _SPACED_ENDS or text[end] in _CJK_ENDS):
                end += 1  # "?!", "...", "。」"
            while end < n and text[end] in _CLOSERS:
                end += 1
            if end >= n:
                return text, ""
            spaced = text[end] == " "
            if (ch in _CJK_ENDS or spaced) and not (ch == "." and _continues(text, i, end)):
                return text[:end], text[end:].strip()
            i = end
            continue
        i += 1
    return text, ""


def _continues(text: str, dot: int, end: int) -> bool:
    """Whether the full stop at ``dot`` is inside the sentence (abbreviation, initial, lower case next)."""
    start = text.rfind(" ", 0, dot) + 1
    word = text[start:dot].lstrip("\"'“‘«([").lower()
    if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    following = text[end:].lstrip()
    return bool(following) and following[0].islower()
