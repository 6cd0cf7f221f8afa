"""Read RSS 0.9x/1.0/2.0 and Atom feeds (already fetched, as bytes) via feedparser.

Entry mapping: ``title`` -> title, ``link`` -> url, ``id``/``guid`` -> guid,
``content`` (else ``summary``/``description``) -> body (sanitised HTML), ``summary`` ->
summary (plain text, first paragraph, ≤ ~300 chars), ``published`` (else ``updated``)
-> published_at in UTC, categories -> tags, the first category (else the feed's own
category, else the caller's default) -> category, author -> author, the first image in
``media:content``/``media:thumbnail``/an image ``enclosure`` -> image_url, and the
feed's title -> source. A category named "Breaking News" (or "Breaking") marks the
entry as breaking.

Problems: input that is not a feed at all, a feed feedparser flagged as malformed
(``bozo``; its readable entries are still returned), and entries lacking a title or
link or with a non-http(s) link (``path[entry INDEX]``, 0-based).
"""

from __future__ import annotations

import io
import re
from calendar import timegm
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.ingest import ArticleDraft, ReadResult, RecordProblem, is_breaking_category
from digest.ingest.records import check_http_url
from digest.ingest.sanitize import (
    clean_html,
    clean_plain_text,
    clean_text,
    summary_from_html,
    text_to_html,
)

_BLOCK_RE = re.compile(r"<(p|ul|ol|blockquote|h[2-4]|figure|pre)\b")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def read_feed(data: bytes, path: str, *, default_category: str = "") -> ReadResult:
    """Parse feed ``data`` (from ``path``, used in problem locations) into drafts."""
    result = ReadResult()
    # A stream, never bytes or str: feedparser treats a str as a URL or file name to
    # open, and it must never fetch or read anything on its own.
    # Its own HTML sanitiser is off because every HTML value goes through nh3 below;
    # two sanitisers in a row only produce odd leftovers such as ``href=""``.
    parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False)
    if not parsed.get("version") and not parsed.entries:
        detail = f" ({_exc_text(parsed.get('bozo_exception'))})" if parsed.get("bozo") else ""
        result.problems.append(RecordProblem(path, f"not an RSS or Atom feed{detail}", whole_source=True))
        return result
    feed_info = parsed.feed
    source = clean_text(feed_info.get("title", ""))
    feed_category = _first_tag(feed_info.get("tags")) or clean_text(feed_info.get("category", ""))
    for index, entry in enumerate(parsed.entries):
        where = f"{path}[entry {index}]"
        problem, draft = _draft(entry, where, source, feed_category or default_category)
        if problem:
            result.problems.append(RecordProblem(where, problem))
        elif draft is not None:
            result.drafts.append(draft)
    if parsed.get("bozo"):
        kept = len(result.drafts)
        problem = (
            f"feed is malformed ({_exc_text(parsed.get('bozo_exception'))}); "
            f"kept {kept} good entr{'y' if kept == 1 else 'ies'}"
        )
        # First, because it explains the entry problems that may follow it.
        result.problems.insert(0, RecordProblem(path, problem))
    return result


def _draft(entry: Any, where: str, source: str, fallback_category: str) -> tuple[str | None, ArticleDraft | None]:
    title = _plain(entry.get("title", ""), entry.get("title_detail"))
    url = (entry.get("link") or "").strip()
    if not title:
        return "entry has no title", None
    if not url:
        return "entry has no link", None
    url_problem = check_http_url(url)
    if url_problem:
        return f"link {url!r} {url_problem}", None

    body = _body_html(entry)
    summary = ""
    if entry.get("summary") is not None:
        summary = summary_from_html(_as_html(entry.get("summary", ""), entry.get("summary_detail")))
    if not summary:
        summary = summary_from_html(body)

    tags = _tags(entry.get("tags"))
    category = tags[0] if tags else fallback_category
    author = entry.get("author_detail", {}).get("name") or entry.get("author", "")
    draft = ArticleDraft(
        title=title,
        url=url,
        guid=clean_plain_text(entry.get("id") or "") or None,
        source=source,
        summary=summary,
        body=body,
        category=category,
        tags=tags,
        author=clean_text(author),
        image_url=_image_url(entry),
        published_at=_published(entry),
        breaking=is_breaking_category(category),
        origin=where,
    )
    return None, draft


def _body_html(entry: Any) -> str:
    contents = entry.get("content") or []
    # Prefer an HTML variant when a feed offers several (Atom allows text and html).
    for item in sorted(contents, key=lambda c: "html" not in (c.get("type") or "")):
        body = _as_html(item.get("value", ""), item)
        if body:
            return body
    return _as_html(entry.get("summary", ""), entry.get("summary_detail"))


def _as_html(value: str, detail: Any) -> str:
    """Sanitised HTML for a feed text construct, honouring its declared type."""
    if not value:
        return ""
    mime = (detail or {}).get("type") or "text/html"
    if mime == "text/plain":
        return text_to_html(value.replace("\r\n", "\n").split("\n\n"))
    cleaned = clean_html(value)
    # RSS descriptions are often bare text or inline markup; give templates a block.
    if cleaned and not _BLOCK_RE.search(cleaned):
        cleaned = f"<p>{cleaned}</p>"
    return cleaned


def _plain(value: str, detail: Any) -> str:
    """One line of plain text for a feed text construct, honouring its declared type."""
    if ((detail or {}).get("type") or "") == "text/plain":
        return clean_plain_text(value)  # "<" here is a literal character, not a tag
    return clean_text(value)


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            # feedparser normalises these struct_times to UTC.
            return datetime.fromtimestamp(timegm(parsed), tz=UTC)
    return None


def _tags(raw: Any) -> list[str]:
    tags: list[str] = []
    for tag in raw or []:
        term = clean_text(tag.get("term") or tag.get("label") or "")
        if term and term not in tags:
            tags.append(term)
    return tags


def _first_tag(raw: Any) -> str:
    tags = _tags(raw)
    return tags[0] if tags else ""


def _image_url(entry: Any) -> str | None:
    candidates: list[str] = []
    for media in entry.get("media_content") or []:
        medium = (media.get("medium") or "").lower()
        mime = (media.get("type") or "").lower()
        url = media.get("url") or ""
        if (
            medium == "image"
            or mime.startswith("image/")
            or (not medium and not mime and url.lower().split("?")[0].endswith(_IMAGE_SUFFIXES))
        ):
            candidates.append(url)
    candidates.extend(t.get("url") or "" for t in entry.get("media_thumbnail") or [])
    for enclosure in entry.get("enclosures") or []:
        if (enclosure.get("type") or "").lower().startswith("image/"):
            candidates.append(enclosure.get("href") or enclosure.get("url") or "")
    for url in candidates:
        url = url.strip()
        if url and check_http_url(url) is None:
            return url
    return None


def _exc_text(exc: Any) -> str:
    if exc is None:
        return "unknown error"
    return clean_plain_text(str(exc)) or type(exc).__name__
