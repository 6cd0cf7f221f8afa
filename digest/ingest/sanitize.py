"""Sanitising of everything a source hands us before it reaches the store.

Two kinds of output exist and must never be mixed up:

* **HTML** (``clean_html``, ``text_to_html``): an allow-list of tags and attributes via
  nh3, safe to insert unescaped into an e-mail template.
* **Plain text** (``clean_text``): no markup, no control characters, one line. It is
  *not* HTML-safe by itself (``"a < b"`` stays ``"a < b"``); templates must escape it,
  as Jinja autoescaping does. Keeping it unescaped means a title such as
  ``{{ 7*7 }}`` or ``Tom & Jerry`` is stored exactly as written.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li", "blockquote",
        "h2", "h3", "h4", "figure", "figcaption", "img", "code", "pre",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt"},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
# Tags whose *content* is dropped along with the tag, not just unwrapped.
_DROP_CONTENT_TAGS: frozenset[str] = frozenset({"script", "style", "template", "noscript", "iframe"})

SUMMARY_MAX_CHARS = 300

_WS_RE = re.compile(r"\s+")
_BLOCK_TAG_RE = re.compile(
    r"</?(?:p|br|div|li|ul|ol|h[1-6]|blockquote|pre|figure|figcaption|tr|td|th|table|section|article|header|footer)\b",
    re.IGNORECASE,
)
_PARA_RE = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_SENTENCE_END = ".!?…"


def clean_html(html_text: str) -> str:
    """Return ``html_text`` reduced to the allow-listed tags, attributes and URL schemes.

    Scripts, styles, event-handler attributes and ``javascript:``/``data:`` URLs are
    removed; links get ``rel="noopener noreferrer"``.
    """
    if not html_text:
        return ""
    return nh3.clean(
        html_text,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROP_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        link_rel="noopener noreferrer",
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
    ).strip()


def clean_text(s: str) -> str:
    """Return ``s`` (which may hold markup) as one line of plain text.

    Tags are stripped (script/style content dropped), entities unescaped, then the
    result goes through :func:`clean_plain_text`.
    """
    if not s:
        return ""
    # Only run the HTML parser when there is markup or an entity to deal with: it
    # would otherwise eat text that merely looks like a tag (``a<b``) for nothing.
    if "<" in s or "&" in s:
        # Block boundaries become spaces, or "<li>one</li><li>two</li>" reads "onetwo".
        s = _BLOCK_TAG_RE.sub(r" \g<0>", s)
        s = nh3.clean(s, tags=set(), clean_content_tags=set(_DROP_CONTENT_TAGS), strip_comments=True)
        s = html.unescape(s)
    return clean_plain_text(s)


def clean_plain_text(s: str) -> str:
    """Return plain text ``s`` as one line: control characters and whitespace runs collapsed.

    CR and LF are control characters too, which matters for values that may end up in
    mail headers (a title used as a subject). Invisible format characters (zero-width
    spaces, bidi overrides, BOMs) are dropped. ``<`` and ``&`` are left alone: use this
    for text known not to be markup.
    """
    if not s:
        return ""
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat == "Cf" and ch not in "\u200c\u200d":  # ZWNJ/ZWJ shape scripts and emoji
            continue
        else:
            out.append(ch)
    return _WS_RE.sub(" ", "".join(out)).strip()


def text_to_html(paragraphs: Iterable[str]) -> str:
    """Render plain-text paragraphs as escaped ``<p>`` elements, one per line.

    The input is plain text, not markup: ``<`` and ``&`` are escaped, not interpreted.
    Empty paragraphs are skipped; whitespace inside a paragraph is collapsed.
    """
    parts = []
    for para in paragraphs:
        text = clean_plain_text(para)
        if text:
            parts.append(f"<p>{html.escape(text, quote=False)}</p>")
    return "\n".join(parts)


def truncate_words(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """Shorten ``text`` to at most ``limit`` characters, cutting at a word boundary.

    An ellipsis is appended when text was cut (it counts towards ``limit``).
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and not text[limit - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–—") + "…"


def summary_from_html(body_html: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """Derive a plain-text summary from (sanitised) HTML: its first non-empty paragraph.

    Without any ``<p>`` the whole text is used. The result is cut to ``limit``
    characters at a word boundary.
    """
    for match in _PARA_RE.finditer(body_html):
        text = clean_text(match.group(1))
        if text:
            return truncate_words(text, limit)
    return truncate_words(clean_text(body_html), limit)


def ends_sentence(line: str) -> bool:
    """Whether ``line`` ends with sentence punctuation (ignoring closing quotes/brackets)."""
    stripped = line.rstrip().rstrip("\"'”’»)]")
    return bool(stripped) and stripped[-1] in _SENTENCE_END + ":;"
