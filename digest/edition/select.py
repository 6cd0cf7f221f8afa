"""Selection: which articles go into an edition. Pure functions of their inputs.

Nothing here reads the clock, the store or the settings file: ``now``, the candidate
articles and the ids already carried by earlier editions are passed in, so the same
inputs always give the same edition.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from difflib import SequenceMatcher
from zoneinfo import ZoneInfo

from digest.core.settings import DigestConfig
from digest.store.models import Article, saved_id

WORDS_PER_MINUTE = 230
# Titles at least this similar (difflib ratio of normalised titles) are one story
# reported by several sources.
NEAR_DUPLICATE_RATIO = 0.88
OTHER_SECTION = "More news"


@dataclass(frozen=True)
class Story:
    """An article as an edition shows it."""

    id: int
    title: str
    link: str
    summary: str
    source: str
    category: str
    author: str
    image_url: str | None
    image_alt: str
    published_at: datetime
    breaking: bool
    priority: int
    reading_minutes: int


@dataclass(frozen=True)
class Section:
    name: str
    stories: tuple[Story, ...]


@dataclass(frozen=True)
class DigestView:
    """What one content variant of an edition shows: a top story, then sections."""

    top_story: Story | None
    sections: tuple[Section, ...]

    @property
    def story_count(self) -> int:
        return (1 if self.top_story else 0) + sum(len(s.stories) for s in self.sections)

    @property
    def is_empty(self) -> bool:
        return self.story_count == 0


@dataclass(frozen=True)
class EditionContent:
    """The ranked, sectioned article list of one edition (all topics)."""

    ranked: tuple[Story, ...] = ()
    section_of: dict[int, str] = field(default_factory=dict)
    section_order: tuple[str, ...] = ()

    @property
    def article_ids(self) -> list[int]:
        return [s.id for s in self.ranked]

    def view(self, topics: Iterable[str] = ()) -> DigestView:
        """The edition as a subscriber with ``topics`` (empty = all) sees it."""
        wanted = {t.casefold() for t in topics}
        allowed = [s for s in self.ranked if not wanted or self.section_of[s.id].casefold() in wanted]
        if not allowed:
            return DigestView(None, ())
        top, rest = allowed[0], allowed[1:]
        sections = []
        for name in self.section_order:
            stories = tuple(s for s in rest if self.section_of[s.id] == name)
            if stories:
                sections.append(Section(name, stories))
        return DigestView(top, tuple(sections))

    def variant_key(self, topics: Iterable[str]) -> tuple[str, ...]:
        """Subscribers with the same key see the same content: render once per key."""
        wanted = {t.casefold() for t in topics}
        present = {n.casefold(): n for n in self.section_order}
        key = tuple(sorted(present[t] for t in wanted if t in present))
        # Topics that match no section at all still restrict to nothing shown.
        if wanted and not key:
            return ("\x00none",)
        return key


def edition_date(cfg: DigestConfig, now: datetime) -> date:
    """The edition's date: ``now`` in the digest's timezone."""
    return now.astimezone(ZoneInfo(cfg.timezone)).date()


def edition_slot(cfg: DigestConfig, now: datetime) -> str:
    """The slot key of the edition due at ``now`` (one per local day)."""
    return edition_date(cfg, now).isoformat()


def window(cfg: DigestConfig, now: datetime) -> tuple[datetime, datetime]:
    """The publication window ``(since, until]`` of an edition built at ``now``."""
    return now - cfg.lookback, now


def normalise_title(title: str) -> str:
    t = unicodedata.normalize("NFKD", title).casefold()
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(t.split())


def reading_minutes(word_count: int) -> int:
    return max(1, math.ceil(word_count / WORDS_PER_MINUTE))


def rank_key(a: Article) -> tuple[bool, int, float]:
    """Breaking first, then higher priority, then newer."""
    return (not a.breaking, -a.priority, -a.published_at.timestamp())


def to_story(a: Article, base_url: str) -> Story:
    return Story(
        id=saved_id(a),
        title=a.title,
        link=a.url or f"{base_url}/articles/{a.id}",
        summary=a.summary,
        source=a.source,
        category=a.category,
        author=a.author,
        image_url=a.image_url,
        image_alt=a.image_alt or a.title,
        published_at=a.published_at,
        breaking=a.breaking,
        priority=a.priority,
        reading_minutes=reading_minutes(a.word_count),
    )


def deduplicate(articles: Sequence[Article], limit: int | None = None) -> list[Article]:
    """Drop repeats: the same url, or a near-identical title from another source.

    ``articles`` must already be ranked: the first of a group of duplicates wins.
    Stops once ``limit`` articles are kept, so the pairwise title comparison costs
    at most ``len(articles) * limit`` instead of growing with the square of a busy day.
    """
    kept: list[Article] = []
    seen_urls: set[str] = set()
    kept_titles: list[str] = []
    for a in articles:
        if a.url and a.url in seen_urls:
            continue
        norm = normalise_title(a.title)
        if any(_near(norm, other) for other in kept_titles):
            continue
        kept.append(a)
        kept_titles.append(norm)
        if a.url:
            seen_urls.add(a.url)
        if limit is not None and len(kept) >= limit:
            break
    return kept


def _near(a: str, b: str) -> bool:
    m = SequenceMatcher(None, a, b, autojunk=False)
    # The cheap upper bounds rule out most pairs before the quadratic ratio().
    return (
        m.real_quick_ratio() >= NEAR_DUPLICATE_RATIO
        and m.quick_ratio() >= NEAR_DUPLICATE_RATIO
        and m.ratio() >= NEAR_DUPLICATE_RATIO
    )


def select_articles(
    articles: Iterable[Article],
    cfg: DigestConfig,
    now: datetime,
    *,
    carried: set[int] | frozenset[int] = frozenset(),
    carried_urls: set[str] | frozenset[str] = frozenset(),
    base_url: str,
) -> EditionContent:
    """Choose, rank, deduplicate, cap and section the articles of an edition.

    ``carried``/``carried_urls`` are the articles earlier editions of this digest
    already sent; they are never repeated.
    """
    since, until = window(cfg, now)
    fresh = [
        a
        for a in articles
        if since < a.published_at <= until and a.id not in carried and not (a.url and a.url in carried_urls)
    ]
    configured = {s.casefold(): s for s in cfg.sections}

    def section(a: Article) -> str:
        if not configured:
            return a.category or OTHER_SECTION
        return configured.get(a.category.casefold(), OTHER_SECTION)

    ranked = deduplicate(sorted(fresh, key=rank_key), limit=cfg.max_articles)
    section_of = {a.id: section(a) for a in ranked if a.id is not None}
    if configured:
        order = [*cfg.sections, OTHER_SECTION]
    else:
        # Busiest-first would reorder sections day to day; first appearance in rank
        # order puts the section of the most important story first.
        order = list(dict.fromkeys(section_of[a.id] for a in ranked if a.id is not None))
    return EditionContent(
        ranked=tuple(to_story(a, base_url) for a in ranked),
        section_of=section_of,
        section_order=tuple(order),
    )
