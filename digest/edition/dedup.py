"""Duplicates across sources: the same page, or the same story told twice; every drop with its reason."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.store.models import Article, saved_id

# Titles at least this similar (difflib ratio of normalised titles) from two sources,
# whose summaries also share at least SUMMARY_OVERLAP of their words, are one story.
NEAR_DUPLICATE_RATIO = 0.88


SUMMARY_OVERLAP = 0.6


# Query parameters that only track where a reader came from: the same page without them.
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ocid|cmpid|ref|ref_src|src)$", re.IGNORECASE)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Drop:
    """A story left out of an edition as a repeat of one that is in it, and why."""

    kept_id: int
    kept_title: str
    kept_source: str
    dropped_id: int
    dropped_title: str
    dropped_source: str
    reason: str

    def describe(self) -> str:
        """One line for reports and logs, naming both stories."""
        return (
            f"dropped {self.dropped_title!r} ({self.dropped_source or 'no source'}): "
            f"{self.reason} as {self.kept_title!r} ({self.kept_source or 'no source'})"
        )


@dataclass(frozen=True)
class Cut:
    """A fresh story left out because the edition was full (``max_articles``)."""

    id: int
    title: str
    source: str

    def describe(self) -> str:
        """One line for reports and logs, naming the story."""
        return f"left out {self.title!r} ({self.source or 'no source'}): the edition is full (max_articles)"


def normalise_title(title: str) -> str:
    t = unicodedata.normalize("NFKD", title).casefold()
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(t.split())


def canonical_url(url: str) -> str:
    """``url`` as a page identity: scheme, ``www.``, default port, fragment, tracking
    parameters and a trailing slash make no difference."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").casefold().removeprefix("www.")
        port = parts.port
    except ValueError:
        return url.strip()
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    params = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode(sorted((k, v) for k, v in params if not _TRACKING.match(k)))
    return urlunsplit(("", host, parts.path.rstrip("/") or "/", query, ""))


def plain_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


@dataclass(frozen=True)
class Deduplicated:
    kept: list[Article]
    drops: list[Drop]
    # Articles never looked at because ``limit`` was reached.
    cut: list[Article] = field(default_factory=list)

    @property
    def over_limit(self) -> int:
        return len(self.cut)


@dataclass(frozen=True)
class _Fingerprint:
    """What duplicate detection compares of an article, worked out once per article."""

    url: str
    canonical: str
    source: str
    title: str
    numbers: tuple[str, ...]
    summary_words: frozenset[str]

    @classmethod
    def of(cls, a: Article) -> _Fingerprint:
        title = normalise_title(a.title)
        return cls(
            url=a.url or "",
            canonical=canonical_url(a.url) if a.url else "",
            source=a.source,
            title=title,
            numbers=tuple(_NUMBER.findall(title)),
            summary_words=frozenset(normalise_title(plain_text(a.summary)).split()),
        )


def duplicate_reason(kept: Article, other: Article) -> str | None:
    """Why ``other`` is the same story as ``kept`` (None: it is not).

    Two items of one source are different stories (a feed gives each its own guid and
    link, and "Tails 4.13 is out" / "Tails 4.14 is out" are two releases). Across
    sources a story is the same when the link is, or when both the titles and the
    summaries match: a title alone ("Photo", "Weekly update") is not enough evidence.
    """
    return _reason(_Fingerprint.of(kept), _Fingerprint.of(other))


def _reason(kept: _Fingerprint, other: _Fingerprint) -> str | None:
    if kept.url and other.url:
        if kept.url == other.url:
            return "same link"
        if kept.canonical == other.canonical:
            return "same page (canonical link)"
    if kept.source == other.source or not (kept.summary_words and other.summary_words):
        return None
    if kept.numbers != other.numbers:
        return None  # "#17705" and "#17703", "4.13" and "4.14": different items
    if _near(kept.title, other.title) and _overlap(kept.summary_words, other.summary_words):
        return "same title and summary"
    return None


def _overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    # Overlap over the shorter one: a summary cut short is still the same summary.
    return len(a & b) / min(len(a), len(b)) >= SUMMARY_OVERLAP


def deduplicate(articles: Sequence[Article], limit: int | None = None) -> Deduplicated:
    """Drop repeats of one story (see :func:`duplicate_reason`), recording each drop.

    ``articles`` must already be ranked: the first of a group of duplicates wins.
    Stops once ``limit`` articles are kept, so the pairwise comparison costs at most
    ``len(articles) * limit`` instead of growing with the square of a busy day.
    """
    kept: list[tuple[Article, _Fingerprint]] = []
    drops: list[Drop] = []
    for n, a in enumerate(articles):
        if limit is not None and len(kept) >= limit:
            return Deduplicated([k for k, _ in kept], drops, list(articles[n:]))
        fp = _Fingerprint.of(a)
        reason = None
        for k, kfp in kept:
            reason = _reason(kfp, fp)
            if reason:
                drops.append(_drop(k, a, reason))
                break
        if not reason:
            kept.append((a, fp))
    return Deduplicated([k for k, _ in kept], drops)


def _drop(kept: Article, dropped: Article, reason: str) -> Drop:
    return Drop(saved_id(kept), kept.title, kept.source, saved_id(dropped), dropped.title, dropped.source, reason)


def _near(a: str, b: str) -> bool:
    m = SequenceMatcher(None, a, b, autojunk=False)
    # The cheap upper bounds rule out most pairs before the quadratic ratio().
    return (
        m.real_quick_ratio() >= NEAR_DUPLICATE_RATIO
        and m.quick_ratio() >= NEAR_DUPLICATE_RATIO
        and m.ratio() >= NEAR_DUPLICATE_RATIO
    )
