"""Read one article from an HTML page (one article per page).

* **Title**: ``og:title``, else the first ``<h1>`` of the article, else ``<title>``.
* **Link**: ``og:url``, else ``<link rel="canonical">`` (absolute http(s) only).
* **Text**: the paragraphs (``<p>``, ``<h2>``-``<h4>``, ``<li>``) inside ``<article>``,
  else ``<main>``, else ``<body>``; never those inside ``nav``, ``header``, ``footer``,
  ``aside``, ``form``, ``script``, ``style``.
* **Summary**: ``og:description`` / ``<meta name="description">``, else the first paragraph.
* **Also**: ``article:published_time`` -> published_at, ``author`` / ``article:author`` ->
  author, ``og:site_name`` -> source, ``article:section`` -> category (else the
  caller's default), ``<html lang>`` -> language, ``og:image`` (with
  ``og:image:width``/``height``/``alt``), else the largest declared ``<img>``, -> image.

A page without a title or without any paragraph is a problem for that file.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from digest.core.errors import InputError
from digest.core.text import is_breaking_category
from digest.ingest import ArticleDraft, ReadResult, read_one
from digest.ingest.media import Image, best_image, language_tag, settle_language, size
from digest.ingest.records import parse_datetime
from digest.ingest.sanitize import clean_plain_text, summary_from_html, truncate_words
from digest.ingest.urls import check_http_url

_SKIP = frozenset({"nav", "header", "footer", "aside", "form", "script", "style", "noscript", "template", "svg"})
_BLOCKS = frozenset({"p", "h1", "h2", "h3", "h4", "li", "blockquote"})
_VOID = frozenset({"img", "br", "hr", "meta", "link", "input", "source", "wbr", "area", "base", "col", "embed"})


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.canonical = ""
        self.lang = ""
        self.title = ""
        self.images: list[Image] = []
        self.stack: list[str] = []
        self.skip = 0
        self.block: list[str] | None = None
        self.block_tag = ""
        self.blocks: dict[str, list[tuple[str, str]]] = {"article": [], "main": [], "body": []}
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "html" and a.get("lang"):
            self.lang = a["lang"]
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key and a.get("content") and key not in self.meta:
                self.meta[key] = a["content"]
        elif tag == "link" and "canonical" in a.get("rel", "").lower().split():
            self.canonical = a.get("href", "")
        elif tag == "img" and not self.skip and a.get("src"):
            self.images.append(Image(a["src"], size(a.get("width")), size(a.get("height")), a.get("alt", "")))
        elif tag == "title":
            self.in_title = True
        if tag in _VOID:
            return
        self.stack.append(tag)
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCKS and not self.skip:
            if self.block is not None and tag == self.block_tag and tag in ("p", "li"):
                self._end_block()  # <p>one<p>two: HTML closes the first paragraph implicitly
            if self.block is None:
                self.block, self.block_tag = [], tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in _SKIP:
                self.skip -= 1
            if top == self.block_tag and self.block is not None:
                self._end_block()
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif self.block is not None and not self.skip:
            self.block.append(data)

    def _end_block(self) -> None:
        text = clean_plain_text("".join(self.block or []))
        if text:
            for container in ("article", "main", "body"):
                if container in self.stack or container == "body":
                    self.blocks[container].append((self.block_tag, text))
        self.block, self.block_tag = None, ""


def read_page(text: str, path: str, *, default_category: str = "") -> ReadResult:
    """Read the article of HTML page ``text`` (from ``path``) into one draft, or a problem."""
    return read_one(draft_from_page, text, path, default_category=default_category)


def draft_from_page(text: str, path: str, *, default_category: str = "") -> ArticleDraft:
    """Build the draft for one HTML page; raises :class:`InputError` on problems."""
    page = _Page()
    page.feed(text)
    page.close()
    blocks = page.blocks["article"] or page.blocks["main"] or page.blocks["body"]
    meta = page.meta
    h1 = next((t for tag, t in blocks if tag == "h1"), "")
    title = clean_plain_text(html.unescape(meta.get("og:title", ""))) or h1 or clean_plain_text(page.title)
    if not title:
        raise InputError(path, "HTML page without a title (no og:title, <h1> or <title>)")
    paragraphs = [(tag, t) for tag, t in blocks if tag != "h1" and t != title]
    if not paragraphs:
        raise InputError(path, "HTML page without article text (no paragraphs)")
    parts = []
    for tag, t in paragraphs:
        escaped = html.escape(t, quote=False)
        parts.append(f"<h3>{escaped}</h3>" if tag in ("h2", "h3", "h4") else f"<p>{escaped}</p>")
    body = "\n".join(parts)
    url = next((u.strip() for u in (meta.get("og:url", ""), page.canonical) if check_http_url(u.strip()) is None), None)
    published = meta.get("article:published_time")
    published_at = None
    if published:
        try:
            published_at = parse_datetime(published, path)
        except InputError:
            published_at = None  # a page's date without a zone is not worth losing the article over
    candidates = []
    if meta.get("og:image"):
        candidates.append(
            Image(
                meta["og:image"],
                size(meta.get("og:image:width")),
                size(meta.get("og:image:height")),
                meta.get("og:image:alt", ""),
            )
        )
    candidates += page.images[:20]
    image = best_image(candidates, url)
    category = clean_plain_text(meta.get("article:section", "")) or default_category
    summary = clean_plain_text(meta.get("og:description") or meta.get("description") or "")
    return ArticleDraft(
        title=title,
        url=url,
        source=clean_plain_text(meta.get("og:site_name", "")),
        summary=truncate_words(summary) if summary else summary_from_html(body),
        body=body,
        category=category,
        author=clean_plain_text(meta.get("author") or meta.get("article:author") or ""),
        image_url=image.url if image else None,
        image_alt=clean_plain_text(image.alt) if image else "",
        image_width=image.width if image else None,
        image_height=image.height if image else None,
        language=settle_language(language_tag(page.lang), title, f"{title} {paragraphs[0][1]}"),
        published_at=published_at,
        breaking=is_breaking_category(category),
        origin=path,
    )
