"""Read one article from a plain-text page scrape (one article per file).

Scrapes keep some of the site around the article, so the text is read with a few
rules rather than taken verbatim:

* Optional metadata lines before the headline are honoured: ``URL: https://...``,
  ``Published: 2025-03-14T08:30:00+01:00`` (ISO 8601 with a timezone) and
  ``Author: Name``. Without a URL the draft has none and the store derives a guid.
* Site chrome lines (``About``, ``Home``, ``Menu``, ``Share``, ``Advertisement``, a
  ``Home | About | Contact`` bar, ...) are dropped wherever they appear.
* A site line such as ``– [Section], Site Tagline | Site Name`` gives the category
  (the bracketed part), a tag (the middle part) and the source (after the last ``|``).
  The category "Breaking News" marks the article as breaking.
* The first remaining substantial line (not a bare date) is the headline -> title.
* After it, blocks separated by blank lines are paragraphs (``<p>``), except short
  lines (under 100 characters, no closing punctuation) followed by a paragraph, which
  are subheadings (``<h3>``). The first paragraph is the summary.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from digest.core.errors import InputError
from digest.core.text import is_breaking_category
from digest.ingest import ArticleDraft, ReadResult, read_one
from digest.ingest.media import language_from_text
from digest.ingest.records import parse_datetime
from digest.ingest.sanitize import clean_plain_text, ends_sentence, truncate_words
from digest.ingest.urls import check_http_url

CHROME_LINES: frozenset[str] = frozenset(
    {
        "about", "about us", "home", "menu", "main menu", "contact", "contact us", "subscribe",
        "share", "share this", "share this article", "advertisement", "advertisements", "ad",
        "sponsored", "search", "log in", "login", "sign in", "sign up", "register",
        "newsletter", "skip to content", "skip to main content", "toggle navigation",
        "privacy policy", "terms of use", "terms of service", "cookie settings", "follow us",
        "tweet", "facebook", "twitter", "x", "whatsapp", "linkedin", "telegram", "email",
        "print", "comments", "leave a comment", "related", "related posts",
        "related articles", "read more", "continue reading", "next", "previous", "close",
        "back to top", "news", "latest", "trending",
    }
)  # fmt: skip
HEADING_MAX_CHARS = 100
HEADLINE_MAX_CHARS = 250
# The text summary is "the first paragraph"; the cap only guards against a wall of text.
TEXT_SUMMARY_MAX_CHARS = 600

_META_RE = re.compile(r"^(url|published|author)\s*:\s*(.*)$", re.IGNORECASE)
_SITE_RE = re.compile(r"^(?P<dash>[-–—•]\s*)?(?:\[(?P<section>[^\]]+)\])?(?P<rest>.*)$")
_NAV_SPLIT_RE = re.compile(r"\s*[|•·»›/]\s*")
_DATE_WORDS: frozenset[str] = frozenset(
    {
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        "january", "february", "march", "april", "june", "july", "august", "september",
        "october", "november", "december", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "updated", "published", "posted", "on", "at", "am", "pm", "utc", "gmt", "est", "edt",
        "cet", "cest", "bst", "st", "nd", "rd", "th",
    }
)  # fmt: skip


@dataclass
class _Header:
    url: str | None = None
    published: str | None = None
    published_line: int = 0
    author: str = ""
    section: str = ""
    source: str = ""
    tags: list[str] = field(default_factory=list)
    site_line_seen: bool = False


def read_text(text: str, path: str, *, default_category: str = "") -> ReadResult:
    """Read the article in plain-text ``text`` (from ``path``) into one draft.

    A file without a headline or without body paragraphs, or with a malformed
    ``URL:``/``Published:`` line, gives a :class:`RecordProblem` instead.
    """
    return read_one(draft_from_text, text, path, default_category=default_category)


def draft_from_text(text: str, path: str, *, default_category: str = "") -> ArticleDraft:
    """Build the draft for one scraped article; raises :class:`InputError` on problems."""
    lines = [clean_plain_text(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    header = _Header()
    headline = ""
    body_start = len(lines)
    for index, line in enumerate(lines):
        if not line or _is_chrome(line) or _take_site_line(line, header):
            continue
        meta = _META_RE.match(line)
        if meta:
            _take_meta(meta.group(1).lower(), meta.group(2).strip(), index + 1, header, path)
            continue
        if _looks_like_date(line) or not _is_substantial(line):
            continue
        headline = line
        body_start = index + 1
        break
    if not headline:
        raise InputError(path, "no headline found (is this a scraped article?)")
    if len(headline) > HEADLINE_MAX_CHARS:
        raise InputError(path, f"no headline found: the first text line is a {len(headline)}-character paragraph")

    blocks = _body_blocks(lines[body_start:], header)
    html_parts: list[str] = []
    paragraphs: list[str] = []
    for i, block in enumerate(blocks):
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if _heading_like(block) and following is not None and not _heading_like(following):
            html_parts.append(f"<h3>{html.escape(block, quote=False)}</h3>")
        else:
            html_parts.append(f"<p>{html.escape(block, quote=False)}</p>")
            paragraphs.append(block)
    if not paragraphs:
        raise InputError(path, "no article text after the headline")

    published_at = None
    if header.published is not None:
        published_at = parse_datetime(header.published, f"{path}:{header.published_line}")
    category = header.section or default_category
    return ArticleDraft(
        title=headline,
        language=language_from_text(headline) or language_from_text(f"{headline} {paragraphs[0]}"),
        url=header.url,
        source=header.source,
        summary=truncate_words(paragraphs[0], TEXT_SUMMARY_MAX_CHARS),
        body="\n".join(html_parts),
        category=category,
        tags=header.tags,
        author=header.author,
        published_at=published_at,
        breaking=is_breaking_category(category),
        origin=path,
    )


def _body_blocks(lines: list[str], header: _Header) -> list[str]:
    """Paragraph-or-heading blocks: runs of lines between blank (or dropped) lines."""
    blocks: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if not run:
            return
        # A heading directly above its paragraph, without a blank line between them; a
        # lower-case next line means a hard-wrapped paragraph that goes on instead.
        if len(run) > 1 and _heading_like(run[0]) and not run[1][:1].islower():
            blocks.append(run.pop(0))
        if all(ends_sentence(line) for line in run):
            blocks.extend(run)  # one paragraph per line, as scrapers usually write them
        else:
            blocks.append(" ".join(run))  # hard-wrapped paragraph
        run.clear()

    for line in lines:
        if not line or _is_chrome(line) or _take_site_line(line, header):
            flush()
        else:
            run.append(line)
    flush()
    return blocks


def _take_meta(key: str, value: str, lineno: int, header: _Header, path: str) -> None:
    where = f"{path}:{lineno}"
    if key == "url":
        problem = check_http_url(value)
        if problem:
            raise InputError(where, f"URL {value!r} {problem}")
        header.url = value
    elif key == "published":
        header.published = value
        header.published_line = lineno
        parse_datetime(value, where)  # fail early, with the line number
    else:
        header.author = value


def _take_site_line(line: str, header: _Header) -> bool:
    """Recognise a ``– [Section], Tagline | Site`` line, recording its parts once."""
    match = _SITE_RE.match(line)
    if not match or "|" not in match.group("rest") or not (match.group("section") or match.group("dash")):
        return False
    if header.site_line_seen:
        return True
    header.site_line_seen = True
    parts = [p.strip(" ,:;-–—") for p in match.group("rest").split("|")]
    header.section = clean_plain_text(match.group("section") or "")
    header.source = parts[-1]
    header.tags = [p for p in dict.fromkeys(parts[:-1]) if p]
    return True


def _is_chrome(line: str) -> bool:
    parts = [p for p in _NAV_SPLIT_RE.split(line.casefold().strip(" -–—|•·»›:")) if p]
    return bool(parts) and all(p.strip(" :") in CHROME_LINES for p in parts)


def _looks_like_date(line: str) -> bool:
    words = re.findall(r"[^\W\d_]+", line.casefold())
    return any(ch.isdigit() for ch in line) and all(w in _DATE_WORDS for w in words)


def _is_substantial(line: str) -> bool:
    return len(line.split()) >= 3 or len(line) >= 20


def _heading_like(line: str) -> bool:
    return len(line) < HEADING_MAX_CHARS and not ends_sentence(line)
