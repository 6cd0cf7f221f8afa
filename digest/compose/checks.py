"""Checks on a rendered message that hurt readers: run by preview, warnings only."""

from __future__ import annotations

from urllib.parse import urlsplit

import lxml.html

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
