"""What a source is, from its content: a feed, a JSON Feed, records, a page; or what it looked like."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Literal

from digest.ingest.jsonfeed import looks_like_json_feed

BOM = b"\xef\xbb\xbf"
CSV_LOOKS_LIKE = "CSV"


Kind = Literal["json", "ndjson", "jsonfeed", "feed", "html", "text"]


_FEED_ROOTS = frozenset({"rss", "feed", "rdf", "channel"})


_HTML_TAGS = frozenset(
    {
        "html",
        "head",
        "body",
        "div",
        "p",
        "article",
        "main",
        "section",
        "meta",
        "title",
        "h1",
        "h2",
        "span",
        "a",
        "table",
    }
)


_ROOT_RE = re.compile(r"<([A-Za-z_][\w:.-]*)")


_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Detected:
    """What a source's content is: a kind to read it as, or None and what it looked like."""

    kind: Kind | None
    looks_like: str = ""


def sniff_kind(data: bytes) -> Kind | None:
    """The kind :func:`detect_kind` finds, or None for content that is no article source."""
    return detect_kind(data).kind


def detect_kind(data: bytes) -> Detected:
    """Tell what ``data`` is by its content (see the module docstring)."""
    head = _head_text(data[:_SNIFF_BYTES])
    if "\x00" in head:
        return Detected(None, "binary data, not text")
    text = head.lstrip()
    if not text:
        return Detected("text")  # the text reader reports the empty page
    if text.startswith(("{", "[")):
        # The whole document: a feed's "version" may come after a long description.
        is_feed = text.startswith("{") and looks_like_json_feed(_head_text(data))
        return Detected("jsonfeed" if is_feed else "json")
    if text.startswith("<"):
        root = _markup_root(text)
        local = root.rsplit(":", 1)[-1].lower() if root else ""
        if local in _FEED_ROOTS:
            return Detected("feed")
        if local in _HTML_TAGS or "<html" in text[:2048].lower():
            return Detected("html")
        if root:
            return Detected(None, f"XML, but not a feed (root element <{root}>)")
        return Detected(None, "markup, but neither a feed nor an HTML page")
    if looks_like_csv(text):
        return Detected(None, CSV_LOOKS_LIKE)
    return Detected("text")


def looks_like_csv(text: str) -> bool:
    """Whether ``text`` is shaped like CSV: a header of short fields, then rows of as many fields."""
    raw = text.rstrip().splitlines()[:21]
    lines = [line for line in raw if line.strip()]
    if len(lines) < 2:
        return False
    # Paragraphs are separated by blank lines; CSV rows never are.
    paragraphs = any(not line.strip() for line in raw)
    for delimiter in (",", ";", "\t"):
        rows = list(csv.reader(lines, delimiter=delimiter))
        width = len(rows[0])
        header = [c.strip() for c in rows[0]]
        if width < 2 or not all(0 < len(c) <= 40 and c[-1] not in ".!?:" for c in header):
            continue
        if any("mail" in c.casefold() for c in header):
            return True  # a subscriber list, whatever its rows look like
        if paragraphs:
            continue
        body = [r for r in rows[1:-1] or rows[1:]]  # the last line may be cut by the sniff window
        alike = [r for r in body if len(r) == width and all(len(c) <= 100 for c in r)]
        if len(alike) >= max(1, 0.8 * len(body)):
            return True
    return False


def _head_text(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace")
    return head.removeprefix(BOM).decode("utf-8", errors="replace")


def _markup_root(text: str) -> str | None:
    """The first element name after the prolog (declaration, PIs, comments, DOCTYPE)."""
    rest = text
    while True:
        rest = rest.lstrip()
        if rest.startswith("<?"):
            end = rest.find("?>")
        elif rest.startswith("<!--"):
            end = rest.find("-->")
            end = end + 1 if end >= 0 else end
        elif rest.startswith("<!"):
            end = rest.find(">")
            if end >= 0 and "html" in rest[:end].lower():
                return "html"
            end = end - 1 if end >= 0 else end
        else:
            match = _ROOT_RE.match(rest)
            return match.group(1) if match else None
        if end < 0:
            return None
        rest = rest[end + 2 :]
