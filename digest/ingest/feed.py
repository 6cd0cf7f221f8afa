"""Read RSS 0.9x/1.0/2.0 and Atom feeds (already fetched, as bytes) via feedparser.

Entry mapping: ``title`` -> title (an untitled entry gets the first sentence of its
text), ``link`` -> url (else the ``guid``/``id`` when it is an http(s) URL, else no
link), ``id``/``guid`` -> guid, ``content`` (else ``summary``/``description``) -> body
(sanitised HTML), ``summary`` -> summary (plain text, first paragraph, ≤ ~300
chars), ``published`` (else ``updated``) -> published_at in UTC (none: undated),
categories -> tags, the first category (else the caller's default, e.g. the feed's
``feeds add --category``; never the channel's own category) -> category, author ->
author, ``xml:lang`` of the entry (else of the feed, else ``<language>``) ->
language, the largest image among ``media:content``, ``media:thumbnail``, image
``enclosure`` and the first ``<img>`` of the content (by declared size) -> image,
and the feed's title -> source. A category named "Breaking News" (or "Breaking")
marks the entry as breaking.

Problems: input that is not a feed at all, and entries with neither title nor text,
or with a link that is not http(s) (``path[entry INDEX]``, 0-based). Warnings
(nothing lost): whitespace or a comment before the XML declaration, a guessed
encoding, XML that is not well-formed but was read leniently (feedparser's *bozo*).
"""

from __future__ import annotations

import io
import re
from calendar import timegm
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.core.text import is_breaking_category
from digest.ingest import ArticleDraft, ReadResult, RecordProblem
from digest.ingest.media import (
    Image,
    best_image,
    images_in_html,
    language_tag,
    settle_language,
    size,
    title_from_text,
)
from digest.ingest.sanitize import (
    clean_html,
    clean_plain_text,
    clean_text,
    summary_from_html,
    text_to_html,
)
from digest.ingest.urls import check_http_url

_BLOCK_RE = re.compile(r"<(p|ul|ol|blockquote|h[2-4]|figure|pre)\b")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def read_feed(data: bytes, path: str, *, default_category: str = "") -> ReadResult:
    """Parse feed ``data`` (from ``path``, used in problem locations) into drafts.

    ``default_category`` is the section of entries that name no category of their own.
    """
    result = ReadResult()
    stripped = _strip_leading_whitespace(data)
    if stripped is not data:
        # An XML declaration must come first; many servers emit a newline before it.
        result.warnings.append(RecordProblem(path, "whitespace or a comment before the XML declaration (ignored)"))
        data = stripped
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
    feed_link = (feed_info.get("link") or "").strip()
    base = feed_link if check_http_url(feed_link) is None else None
    feed_language = language_tag(feed_info.get("language"))
    for index, entry in enumerate(parsed.entries):
        where = f"{path}[entry {index}]"
        problem, draft = _draft(entry, where, source, default_category, base, feed_language)
        if problem:
            result.problems.append(RecordProblem(where, problem))
        elif draft is not None:
            result.drafts.append(draft)
    exc = parsed.get("bozo_exception")
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        # Not malformed: the text was read, in an encoding feedparser had to guess.
        result.warnings.append(RecordProblem(path, _encoding_note(data, parsed.get("encoding") or "")))
    elif parsed.get("bozo"):
        # feedparser's lenient parser went on past the fault, so no entry is lost for
        # it: worth a warning, not a rejection (entries it could not use are problems).
        kept = len(result.drafts)
        entries = f"entr{'y' if kept == 1 else 'ies'}"
        note = f"not well-formed XML ({_exc_text(exc)}); read leniently, kept {kept} {entries}"
        result.warnings.insert(0, RecordProblem(path, note))
    return result


_XML_DECL_RE = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def _encoding_note(data: bytes, used: str) -> str:
    declared = _XML_DECL_RE.match(data.removeprefix(b"\xef\xbb\xbf"))
    if declared:
        return f"declared as {declared.group(1).decode()} but not valid {declared.group(1).decode()}; read as {used}"
    return f"no encoding declared and not valid UTF-8; read as {used} (declare the encoding in the XML declaration)"


_PROLOG_JUNK_RE = re.compile(rb"^(?:\s+|<!--.*?-->)+(?=<\?xml[\s?])", re.DOTALL)


def _strip_leading_whitespace(data: bytes) -> bytes:
    """``data`` without whitespace or comments before its XML declaration (same object if none).

    Only then: whitespace before a root element without a declaration is well-formed.
    """
    match = _PROLOG_JUNK_RE.match(data.removeprefix(b"\xef\xbb\xbf")[:4096])
    return data.removeprefix(b"\xef\xbb\xbf")[match.end() :] if match else data


def _draft(
    entry: Any, where: str, source: str, default_category: str, base: str | None, feed_language: str
) -> tuple[str | None, ArticleDraft | None]:
    guid = clean_plain_text(entry.get("id") or "") or None
    url, url_problem = _link(entry, guid, base)
    if url_problem:
        return url_problem, None

    body = _body_html(entry)
    summary = ""
    if entry.get("summary") is not None:
        summary = summary_from_html(_as_html(entry.get("summary", ""), entry.get("summary_detail")))
    if not summary:
        summary = summary_from_html(body)
    title = _plain(entry.get("title", ""), entry.get("title_detail"))
    if not title:
        title = title_from_text(summary or body)
    if not title:
        return "entry has no title and no text", None

    tags = _tags(entry.get("tags"))
    category = tags[0] if tags else default_category
    author = entry.get("author_detail", {}).get("name") or entry.get("author", "")
    image = _image(entry, url or base)
    draft = ArticleDraft(
        title=title,
        url=url,
        guid=guid,
        source=source,
        summary=summary,
        body=body,
        category=category,
        tags=tags,
        author=clean_text(author),
        image_url=image.url if image else None,
        image_alt=image.alt if image else "",
        image_width=image.width if image else None,
        image_height=image.height if image else None,
        language=settle_language(_language(entry) or feed_language, title, f"{title} {summary}"),
        published_at=_published(entry),
        breaking=is_breaking_category(category),
        origin=where,
    )
    return None, draft


def _link(entry: Any, guid: str | None, base: str | None) -> tuple[str | None, str | None]:
    """The entry's http(s) link (or None) and a problem when its link cannot be used."""
    link = (entry.get("link") or "").strip()
    # feedparser copies a permalink guid (or an Atom id) into ``link`` when there is
    # no <link>: that is not the feed naming a link, so judge it as the id it is.
    # (``guidislink`` cannot tell: feedparser leaves it set on Atom entries with a link.)
    from_id = bool(link) and link == (entry.get("id") or "").strip()
    if link and not from_id:
        if check_http_url(link) is None:
            return link, None
        scheme = link.split(":", 1)[0].lower() if ":" in link else ""
        if not scheme and base:
            resolved = urljoin(base, link)
            if check_http_url(resolved) is None:
                return resolved, None
        if scheme and scheme not in ("http", "https"):
            return None, f"link {link!r} is not an http(s) URL"
        if not scheme:
            return None, f"link {link!r} is relative and the feed has no http(s) <link> to resolve it against"
        return None, f"link {link!r} {check_http_url(link)}"
    # No link: the guid is a permalink when it is a URL; otherwise the story has no
    # link of its own (the archive's page for it stands in).
    if guid and check_http_url(guid) is None:
        return guid, None
    return None, None


def _language(entry: Any) -> str:
    for key in ("title_detail", "summary_detail"):
        tag = language_tag((entry.get(key) or {}).get("language"))
        if tag:
            return tag
    for content in entry.get("content") or []:
        tag = language_tag(content.get("language"))
        if tag:
            return tag
    return ""


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


def _image(entry: Any, base: str | None) -> Image | None:
    candidates: list[Image] = []
    for media in entry.get("media_content") or []:
        medium = (media.get("medium") or "").lower()
        mime = (media.get("type") or "").lower()
        url = media.get("url") or ""
        if (
            medium == "image"
            or mime.startswith("image/")
            or (not medium and not mime and url.lower().split("?")[0].endswith(_IMAGE_SUFFIXES))
        ):
            candidates.append(Image(url, size(media.get("width")), size(media.get("height"))))
    for thumb in entry.get("media_thumbnail") or []:
        candidates.append(Image(thumb.get("url") or "", size(thumb.get("width")), size(thumb.get("height"))))
    for enclosure in entry.get("enclosures") or []:
        if (enclosure.get("type") or "").lower().startswith("image/"):
            candidates.append(Image(enclosure.get("href") or enclosure.get("url") or ""))
    html_parts = [c.get("value", "") for c in entry.get("content") or []] + [entry.get("summary", "")]
    for part in html_parts:
        found = images_in_html(part or "", limit=1)
        if found:
            candidates.append(found[0])
            break
    return best_image(candidates, base)


def _exc_text(exc: Any) -> str:
    if exc is None:
        return "unknown error"
    return clean_plain_text(str(exc)) or type(exc).__name__
