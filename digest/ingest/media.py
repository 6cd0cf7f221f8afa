"""What every reader needs beyond text: a language tag, the best image, a title for untitled posts.

* :func:`language_tag` turns ``en-us``, ``en_US``, ``EN`` into a BCP 47 tag in its
  usual case (``en-US``, ``en``), or ``""`` when the value is not a language tag.
* :func:`best_image` picks one image among those a source offers: the largest by
  declared size. An image whose declared size is tiny (an avatar, a tracking pixel,
  a signature) ranks below one of unknown size, which ranks below any declared image
  of at least ``MIN_DECLARED_SIDE`` pixels.
* :func:`images_in_html` lists the ``<img>`` of (unsanitised) HTML with their declared
  ``width``/``height``, for sources that only show their image inside the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

from digest.core.text import split_first_sentence
from digest.ingest.sanitize import clean_text, truncate_words
from digest.ingest.urls import check_http_url

# Below this (either side) a declared image is an icon or avatar, not a story's picture.
MIN_DECLARED_SIDE = 100
# A title made from the text of an untitled post (micro-blogs, status updates).
DERIVED_TITLE_MAX_CHARS = 100

_LANG_RE = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class Image:
    """An image a source offers, with its declared size when it has one."""

    url: str
    width: int | None = None
    height: int | None = None
    alt: str = ""


def language_tag(value: str | None) -> str:
    """``value`` as a BCP 47 tag in conventional case, or ``""`` if it is not one."""
    value = (value or "").strip()
    if not _LANG_RE.match(value):
        return ""
    parts = re.split(r"[-_]", value)
    if len(parts[0]) == 4:
        return ""  # no language has a 4-letter primary subtag; feeds write "null", "none"
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())  # region: en-US
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())  # script: zh-Hant
        else:
            out.append(part.lower())
    return "-".join(out)[:35]


def size(value: object) -> int | None:
    """A declared pixel size (``"460"``, ``460``, ``"460px"``), or None if absent or nonsense."""
    if value is None or isinstance(value, bool):
        return None
    match = re.match(r"^\s*(\d{1,5})(?:\.0+)?\s*(?:px)?\s*$", str(value))
    if not match:
        return None
    number = int(match.group(1))
    return number if number > 0 else None


def best_image(candidates: list[Image], base_url: str | None = None) -> Image | None:
    """The largest usable image among ``candidates`` (earlier wins a tie); relative URLs resolved."""
    usable: list[Image] = []
    for image in candidates:
        url = image.url.strip()
        if base_url and url and check_http_url(url) is not None:
            url = urljoin(base_url, url)
        if url and check_http_url(url) is None:
            usable.append(Image(url, image.width, image.height, image.alt))
    if not usable:
        return None
    return max(usable, key=_rank)  # max() keeps the first of equals


def _rank(image: Image) -> tuple[int, int]:
    if image.width is None or image.height is None:
        known = image.width or image.height
        if known is not None and known < MIN_DECLARED_SIDE:
            return (0, known)
        return (1, 0)
    if min(image.width, image.height) < MIN_DECLARED_SIDE:
        return (0, image.width * image.height)
    return (2, image.width * image.height)


class _ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[Image] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        if a.get("src"):
            alt = clean_text(a.get("alt", ""))
            self.images.append(Image(a["src"], size(a.get("width")), size(a.get("height")), alt))


def images_in_html(html_text: str, limit: int = 20) -> list[Image]:
    """The first ``limit`` ``<img>`` elements of ``html_text`` (src, declared size, alt)."""
    if not html_text or "<img" not in html_text.lower():
        return []
    collector = _ImgCollector()
    try:
        collector.feed(html_text)
        collector.close()
    except Exception:  # noqa: BLE001 - a broken fragment just offers no image
        pass
    return collector.images[:limit]


def title_from_text(text: str) -> str:
    """A headline for an untitled post: its first sentence (or words), at most ~100 characters."""
    text = clean_text(text)
    first = split_first_sentence(text)[0]
    return truncate_words(first if len(first) <= DERIVED_TITLE_MAX_CHARS else text, DERIVED_TITLE_MAX_CHARS)


# Scripts that name their language well enough to stand in for a missing or wrong tag.
_URDU_LETTERS = frozenset("ٹڈڑںےہ")
_PERSIAN_LETTERS = frozenset("پچژگکی")
_SCRIPT_GROUPS: dict[str, str] = {
    "he": "hebrew", "yi": "hebrew", "ar": "arabic", "fa": "arabic", "ur": "arabic", "ps": "arabic",
    "sd": "arabic", "ug": "arabic", "ja": "japanese", "zh": "han", "ko": "hangul", "el": "greek", "th": "thai",
}  # fmt: skip
MIN_LETTERS_TO_GUESS = 8


def language_from_text(text: str) -> str:
    """A language told by the script of ``text`` (Hebrew, Arabic/Persian/Urdu, CJK, Greek, Thai), else ``""``."""
    counts: dict[str, int] = {}
    letters = 0
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        code = ord(ch)
        if 0x0590 <= code <= 0x05FF:
            group = "hebrew"
        elif 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F or 0xFB50 <= code <= 0xFEFF:
            group = "arabic"
        elif 0x3040 <= code <= 0x30FF:
            group = "kana"
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
            group = "han"
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
            group = "hangul"
        elif 0x0370 <= code <= 0x03FF:
            group = "greek"
        elif 0x0E00 <= code <= 0x0E7F:
            group = "thai"
        else:
            continue
        counts[group] = counts.get(group, 0) + 1
    if letters < MIN_LETTERS_TO_GUESS:
        return ""

    def share(*groups: str) -> float:
        return sum(counts.get(g, 0) for g in groups) / letters

    if share("hebrew") >= 0.5:
        return "he"
    if share("arabic") >= 0.5:
        if any(ch in _URDU_LETTERS for ch in text):
            return "ur"
        return "fa" if any(ch in _PERSIAN_LETTERS for ch in text) else "ar"
    if counts.get("kana") and share("kana", "han") >= 0.3:
        return "ja"
    if share("han") >= 0.3:
        return "zh"
    if share("hangul") >= 0.3:
        return "ko"
    if share("greek") >= 0.5:
        return "el"
    if share("thai") >= 0.5:
        return "th"
    return ""


def settle_language(declared: str, *texts: str) -> str:
    """The declared tag, unless the script of the texts plainly says another language (or none was declared).

    ``texts`` are tried in order (the title first: a summary may quote another
    language). Feeds often declare their platform's default (``en-us`` on a Persian
    blog); a wrong tag would mislead the reader's direction and fonts, so the script
    wins then.
    """
    guess = next((g for g in map(language_from_text, texts) if g), "")
    if not declared:
        return guess
    if guess and _SCRIPT_GROUPS.get(declared.split("-")[0], "other") != _SCRIPT_GROUPS[guess]:
        return guess
    return declared
