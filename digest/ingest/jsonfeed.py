"""Read JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1) into drafts.

Item mapping: ``title`` -> title (an untitled item, as micro-blogs publish, gets the
first sentence of its text), ``url`` (else ``external_url``; relative URLs resolved
against ``home_page_url``) -> url, ``id`` -> guid, ``content_html`` (else
``content_text`` as paragraphs) -> body, ``summary`` (else the body's first
paragraph) -> summary, ``date_published`` (else ``date_modified``) -> published_at
(none: undated), ``tags`` -> tags, the first tag (else the caller's default) ->
category, ``authors``/``author`` (1.0) of the item, else of the feed -> author,
``language`` of the item, else of the feed -> language, the largest of ``image``,
``banner_image`` and the first ``<img>`` of the content (by declared size) -> image,
the feed's ``title`` -> source.

Extension fields (``_name``) and fields this reader has no use for are ignored, as
the specification asks. Problems are per item (``path[item INDEX]``, 0-based): not an
object, neither title nor text, a link that is not http(s). A date that is not RFC 3339
(or has no timezone) leaves the item undated, with a warning.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from digest.core.errors import InputError
from digest.core.text import is_breaking_category
from digest.ingest import ArticleDraft, ReadResult, RecordProblem
from digest.ingest.media import Image, best_image, images_in_html, language_tag, settle_language, title_from_text
from digest.ingest.records import TOO_DEEP
from digest.ingest.sanitize import clean_html, clean_text, summary_from_html, text_to_html
from digest.ingest.urls import check_http_url

# JSON may escape "/" as "\/", and "version" need not come first.
_VERSION_RE = re.compile(r'"version"\s*:\s*"https?:\\?/\\?/(?:www\.)?jsonfeed\.org\\?/version\\?/')


def looks_like_json_feed(text: str) -> bool:
    """Whether a JSON document declares a JSON Feed version (``https://jsonfeed.org/version/...``)."""
    return bool(_VERSION_RE.search(text))


def read_json_feed(text: str, path: str, *, default_category: str = "") -> ReadResult:
    """Parse JSON Feed ``text`` (from ``path``) into drafts; problems per item."""
    result = ReadResult()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        result.problems.append(RecordProblem(f"{path}:{exc.lineno}", problem, whole_source=True))
        return result
    except RecursionError:
        result.problems.append(RecordProblem(path, TOO_DEEP, whole_source=True))
        return result
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        result.problems.append(RecordProblem(path, 'JSON Feed without an "items" list', whole_source=True))
        return result
    feed = _Feed(
        source=_text(doc.get("title")),
        home=_http(doc.get("home_page_url")),
        language=language_tag(_str(doc.get("language"))),
        author=_author(doc),
    )
    for index, item in enumerate(doc["items"]):
        where = f"{path}[item {index}]"
        try:
            result.drafts.append(_draft(item, where, feed, default_category, result.warnings))
        except InputError as exc:
            result.problems.append(RecordProblem(exc.where, exc.problem))
    return result


class _Feed:
    def __init__(self, source: str, home: str | None, language: str, author: str) -> None:
        self.source, self.home, self.language, self.author = source, home, language, author


def _draft(item: Any, where: str, feed: _Feed, default_category: str, warnings: list[RecordProblem]) -> ArticleDraft:
    if not isinstance(item, dict):
        raise InputError(where, "item is not a JSON object")
    guid = clean_text(str(item["id"])) if isinstance(item.get("id"), str | int) else ""
    url = _item_url(item, feed.home, where)
    content_html = _str(item.get("content_html"))
    content_text = _str(item.get("content_text"))
    paragraphs = content_text.replace("\r\n", "\n").split("\n\n")
    body = clean_html(content_html) if content_html else text_to_html(paragraphs)
    summary = _text(item.get("summary")) or summary_from_html(body)
    title = _text(item.get("title")) or title_from_text(summary or body)
    if not title:
        raise InputError(where, "item has no title and no text")
    tags = []
    for tag in item.get("tags") or [] if isinstance(item.get("tags"), list) else []:
        tag = _text(tag)
        if tag and tag not in tags:
            tags.append(tag)
    category = tags[0] if tags else default_category
    candidates = [Image(u) for u in (_str(item.get("image")), _str(item.get("banner_image"))) if u]
    candidates += images_in_html(content_html, limit=1)
    image = best_image(candidates, url or feed.home)
    declared_language = language_tag(_str(item.get("language"))) or feed.language
    return ArticleDraft(
        title=title,
        url=url,
        guid=guid or None,
        source=feed.source,
        summary=summary,
        body=body,
        category=category,
        tags=tags,
        author=_author(item) or feed.author,
        image_url=image.url if image else None,
        image_alt=image.alt if image else "",
        image_width=image.width if image else None,
        image_height=image.height if image else None,
        language=settle_language(declared_language, title, f"{title} {summary}"),
        published_at=_published(item, where, warnings),
        breaking=is_breaking_category(category),
        origin=where,
    )


def _item_url(item: dict[str, Any], home: str | None, where: str) -> str | None:
    for key in ("url", "external_url"):
        value = _str(item.get(key)).strip()
        if not value:
            continue
        if check_http_url(value) is not None and home and ":" not in value.split("/", 1)[0]:
            value = urljoin(home, value)
        problem = check_http_url(value)
        if problem:
            raise InputError(where, f"{key} {value!r} {problem}")
        return value
    guid = _str(item.get("id")).strip()
    # No url: an id that is an http(s) URL is the item's permalink.
    return guid if guid and check_http_url(guid) is None else None


def _published(item: dict[str, Any], where: str, warnings: list[RecordProblem]) -> datetime | None:
    """``date_published``, else ``date_modified``; an unusable date leaves the item undated, with a warning."""
    for key in ("date_published", "date_modified"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            warnings.append(RecordProblem(where, f"{key} {value!r} is not an RFC 3339 timestamp; kept as undated"))
            return None
        if parsed.tzinfo is None:
            # Guessing the zone would shift the story by hours; first-seen time is honest.
            warnings.append(RecordProblem(where, f"{key} {value!r} has no timezone; kept as undated"))
            return None
        return parsed.astimezone(UTC)
    return None


def _author(obj: dict[str, Any]) -> str:
    authors = obj.get("authors")
    if isinstance(authors, list):
        names = [_text(a.get("name")) for a in authors if isinstance(a, dict)]
        return ", ".join(n for n in names if n)
    author = obj.get("author")  # JSON Feed 1.0
    return _text(author.get("name")) if isinstance(author, dict) else ""


def _http(value: Any) -> str | None:
    value = _str(value).strip()
    return value if value and check_http_url(value) is None else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""
