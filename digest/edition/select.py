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
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from digest.core.settings import DigestConfig
from digest.core.text import is_breaking_category
from digest.edition.dedup import Cut, Drop, deduplicate, plain_text
from digest.store.models import Article, saved_id

WORDS_PER_MINUTE = 230
# Chinese and Japanese readers manage about this many characters a minute; their
# text has no spaces to count words by.
WIDE_CHARS_PER_MINUTE = 260
# A body shorter than a minute's read is a teaser or the summary again: its reading
# time says nothing, so it is not shown.
MIN_READING_WORDS = WORDS_PER_MINUTE
OTHER_SECTION = "More news"
# In a variant key: the subscriber opted out of breaking stories outside their topics.
NO_BREAKING = "\x00no-breaking"
# Sections of one story each are folded into this one when there are at least two.
BRIEF_SECTION = "In brief"
# In a topic list or variant key: the subscriber got an alert for the article (left out),
# or got it and the article was updated since (shown, marked "Updated since our alert").
ALERTED = "\x00alerted:"
UPDATED = "\x00updated:"


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
    # None: unknown (no body text long enough to time), and then not shown.
    reading_minutes: int | None
    # BCP 47 tag of the story's text; "" = unknown.
    language: str = ""
    # Declared pixel size of the image; None = the source did not say.
    image_width: int | None = None
    image_height: int | None = None
    # The reader got an alert for this story and it changed since: say so.
    updated_since_alert: bool = False
    # The editor's lead-in (plain text); "" = none written.
    lead: str = ""


def alert_marks(alerted: Iterable[int] = (), updated: Iterable[int] = ()) -> list[str]:
    """Topic-list entries saying which stories a reader already got as alerts.

    ``alerted``: left out of their digest; ``updated``: shown with "Updated since our
    alert". They ride along with the topics (as :data:`NO_BREAKING` does), so the
    variant key of a reader carries them and readers with the same set share a render.
    """
    return [f"{ALERTED}{i}" for i in sorted(set(alerted))] + [f"{UPDATED}{i}" for i in sorted(set(updated))]


def _split_marks(topics: Iterable[str]) -> tuple[list[str], set[int], set[int]]:
    """``(topics, alerted ids, updated ids)`` of a topic list that may carry alert marks."""
    plain: list[str] = []
    alerted: set[int] = set()
    updated: set[int] = set()
    for t in topics:
        if t.startswith(ALERTED):
            alerted.add(int(t[len(ALERTED) :]))
        elif t.startswith(UPDATED):
            updated.add(int(t[len(UPDATED) :]))
        else:
            plain.append(t)
    return plain, alerted, updated


@dataclass(frozen=True)
class Section:
    name: str
    stories: tuple[Story, ...]
    # A folded section of thin ones: its stories show their own section name.
    mixed: bool = False


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
    # Repeats of kept stories left out (stored with the edition: a later send lists them too).
    drops: tuple[Drop, ...] = ()
    # Fresh articles left out because the edition was full (``max_articles``), named.
    cut: tuple[Cut, ...] = ()

    @property
    def over_limit(self) -> int:
        return len(self.cut)

    @property
    def article_ids(self) -> list[int]:
        return [s.id for s in self.ranked]

    def view(self, topics: Iterable[str] = (), breaking: bool = True) -> DigestView:
        """The edition as a subscriber with ``topics`` (empty = all) sees it.

        Breaking stories reach every subscriber, whatever their topics: breaking is a
        flag on a story, shown in the section of its own topic. A subscriber who opted
        out (``breaking=False``) gets only their topics. ``topics`` may be a
        :meth:`variant_key`, which carries the opt-out, and :func:`alert_marks`: stories
        the reader got as alerts are left out, or marked when updated since.
        """
        plain, alerted, updated = _split_marks(topics)
        wanted = {t.casefold() for t in plain}
        breaking = breaking and NO_BREAKING not in wanted
        allowed = [
            replace(s, updated_since_alert=True) if s.id in updated else s
            for s in self.ranked
            if s.id not in alerted
            and (not wanted or (breaking and s.breaking) or self.section_of[s.id].casefold() in wanted)
        ]
        if not allowed:
            return DigestView(None, ())
        top, rest = allowed[0], allowed[1:]
        sections = []
        for name in self.section_order:
            stories = tuple(s for s in rest if self.section_of[s.id] == name)
            if stories:
                sections.append(Section(name, stories))
        return DigestView(top, fold_thin(sections))

    def variant_key(self, topics: Iterable[str], breaking: bool = True) -> tuple[str, ...]:
        """Subscribers with the same key see the same content: render once per key.

        The opt-out of breaking stories (``breaking=False``) is part of the key only
        when it changes what is shown: a breaking story outside the topics exists. So
        are alert marks (:func:`alert_marks`) of stories in this edition.
        """
        plain, alerted, updated = _split_marks(topics)
        wanted = {t.casefold() for t in plain}
        present = {n.casefold(): n for n in self.section_order}
        key = tuple(sorted(present[t] for t in wanted if t in present))
        # Topics that match no section at all still restrict to nothing shown.
        if wanted and not key:
            key = ("\x00none",)
        if not breaking and wanted and any(s.breaking and self.section_of[s.id] not in key for s in self.ranked):
            key = (*key, NO_BREAKING)
        ids = {s.id for s in self.ranked}
        marks = alert_marks(alerted & ids, (updated - alerted) & ids)
        return (*key, *marks) if marks else key


def edition_date(cfg: DigestConfig, now: datetime) -> date:
    """The edition's date: ``now`` in the digest's timezone."""
    return now.astimezone(ZoneInfo(cfg.timezone)).date()


def edition_slot(cfg: DigestConfig, now: datetime) -> str:
    """The slot key of the edition due at ``now`` (one per local day)."""
    return edition_date(cfg, now).isoformat()


def window(cfg: DigestConfig, now: datetime) -> tuple[datetime, datetime]:
    """The publication window ``(since, until]`` of an edition built at ``now``."""
    return now - cfg.lookback, now


def fold_thin(sections: Sequence[Section]) -> tuple[Section, ...]:
    """Sections of one story each, when there are two or more, become one compact section.

    Seven one-story sections read like a template; one "In brief" section after the
    full ones reads like a briefing. Its stories keep their section name (``category``).
    """
    thin = [s for s in sections if len(s.stories) == 1]
    if len(thin) < 2:
        return tuple(sections)
    full = [s for s in sections if len(s.stories) > 1]
    brief = Section(BRIEF_SECTION, tuple(st for s in thin for st in s.stories), mixed=True)
    return (*full, brief)


def reading_minutes(body: str) -> int | None:
    """Minutes to read the story's own text; None when there is too little to tell.

    Words are counted by spaces, and Chinese/Japanese characters (which have none)
    at their own reading speed.
    """
    text = plain_text(body)
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF" and ch.isalnum())
    words = len(re.findall(r"[^\W_]+", "".join(" " if unicodedata.east_asian_width(ch) in "WF" else ch for ch in text)))
    units = words + wide * WORDS_PER_MINUTE / WIDE_CHARS_PER_MINUTE
    if units < MIN_READING_WORDS:
        return None
    return math.ceil(units / WORDS_PER_MINUTE)


def is_breaking(a: Article) -> bool:
    """Flagged breaking, or filed by its source under a "Breaking News" section."""
    return a.breaking or is_breaking_category(a.category)


def topic_of(a: Article) -> str:
    """The article's real topic: its category, unless that only says "breaking" (then the
    first other tag it carries, else none)."""
    if not is_breaking_category(a.category):
        return a.category
    return next((t for t in a.tags or () if t and not is_breaking_category(t)), "")


def rank_key(a: Article) -> tuple[bool, int, float]:
    """Breaking first, then higher priority, then newer."""
    return (not is_breaking(a), -a.priority, -a.published_at.timestamp())


def to_story(a: Article, base_url: str) -> Story:
    return Story(
        id=saved_id(a),
        title=a.title,
        link=a.url or f"{base_url}/articles/{a.id}",
        summary=a.summary,
        source=a.source,
        category=topic_of(a),
        author=a.author,
        image_url=a.image_url,
        image_alt=a.image_alt or a.title,
        published_at=a.published_at,
        breaking=is_breaking(a),
        priority=a.priority,
        reading_minutes=reading_minutes(a.body),
        language=a.language,
        image_width=a.image_width,
        image_height=a.image_height,
        lead=a.lead,
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
        topic = topic_of(a)
        if not configured:
            return topic or OTHER_SECTION
        return configured.get(topic.casefold(), OTHER_SECTION)

    result = deduplicate(sorted(fresh, key=rank_key), limit=cfg.max_articles)
    ranked = result.kept
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
        drops=tuple(result.drops),
        cut=tuple(Cut(saved_id(a), a.title, a.source) for a in result.cut),
    )
