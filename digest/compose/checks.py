"""Checks on a rendered message that hurt readers: run by preview, warnings only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import lxml.html

from digest.core.logs import find_emails, mask_emails
from digest.edition.select import Story

# A field separator with no space after it, not inside a number ("1,000"): two in one
# line read as a CSV row ("ana@example.org,Ana Lima,World"), not as prose.
_TIGHT_SEPARATOR = re.compile(r"(?<!\d)[,;](?!\s)|[,;](?![\s\d])|\t|\|(?!\s)")
# A tag or an escaped one: text reaches stories as plain text, so markup in it is a wrong import.
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>|&(?:lt|gt|amp|quot|#\d+);")

# Gmail hides everything after the first 102 KB of a message's HTML behind
# "[Message clipped]", including the unsubscribe footer.
GMAIL_CLIP_BYTES = 102 * 1024


def check_html(html: str, *, empty: bool = False) -> list[str]:
    """Warnings for ``html`` (the filled HTML part): size, alt text, relative links."""
    warnings: list[str] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        warnings.append(f"HTML is {size / 1024:.0f} KB: Gmail clips messages over 102 KB")
    doc = lxml.html.document_fromstring(html)
    for img in doc.iter("img"):
        if not (img.get("alt") or "").strip():
            warnings.append(f"image without alt text: {img.get('src', '?')[:80]}")
    for el, attr in (("a", "href"), ("img", "src")):
        for node in doc.iter(el):
            value = (node.get(attr) or "").strip()
            if not value or value.startswith(("#", "mailto:", "data:")):
                continue
            if not urlsplit(value).scheme:
                warnings.append(f"relative link in <{el} {attr}>: {value[:80]}")
    if empty:
        warnings.append("the edition has no new articles")
    return warnings


def check_stories(stories: Iterable[Story]) -> list[str]:
    """Warnings for stories that look like data, not news: e-mail addresses, CSV rows, markup.

    ``digest articles import`` of the wrong file (a subscriber list, a page's source)
    makes such stories; they would go to every reader and onto the archive. Addresses
    are masked in the warning, which names the command that takes the story out.
    """
    warnings = []
    for story in stories:
        text = f"{story.title}\n{story.summary}"
        reasons = []
        if emails := find_emails(text):
            reasons.append(f"{len(emails)} e-mail address(es)")
        if any(len(_TIGHT_SEPARATOR.findall(line)) >= 2 for line in text.splitlines()):
            reasons.append("rows like a CSV file")
        if _MARKUP.search(text):
            reasons.append("markup")
        if reasons:
            title = mask_emails(story.title)
            title = title if len(title) <= 60 else title[:59] + "…"
            warnings.append(
                f"article {story.id} {title!r} looks like data, not news ({', '.join(reasons)}): "
                f"digest articles hide {story.id}"
            )
    return warnings
