"""Feeds out: each digest's archive as Atom (RFC 4287) and JSON Feed 1.1.

One entry per edition that went out (as the archive list shows them: never one not
yet sent), newest first: its title and date, a link to its archive page, and its
stories as the summary (plain text) and content (a linked list). Only visible
stories: one hidden since (``digest articles hide``) leaves the feed too.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from feedgen.feed import FeedGenerator
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from digest.compose.i18n import long_date
from digest.core.settings import Settings
from digest.edition.select import to_story
from digest.store.db import session_scope
from digest.store.models import Article, Edition, EditionArticle, EditionStatus

# Editions a feed carries: a reader's app polls it, a year of a weekly fits.
FEED_SIZE = 50
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class FeedLinks:
    """Where a digest's feeds are (the archive pages link them)."""

    name: str
    title: str
    atom_url: str
    json_url: str


def digest_feeds(settings: Settings) -> list[FeedLinks]:
    """The feeds of every configured digest."""
    base = settings.base_url
    return [
        FeedLinks(name, cfg.title, f"{base}/archive/{quote(name)}.atom", f"{base}/archive/{quote(name)}.json")
        for name, cfg in settings.digests.items()
    ]


@dataclass(frozen=True)
class FeedStory:
    title: str
    link: str


@dataclass(frozen=True)
class FeedEntry:
    """One edition as a feed entry."""

    title: str
    url: str
    when: datetime
    stories: tuple[FeedStory, ...]

    @property
    def summary(self) -> str:
        return " · ".join(s.title for s in self.stories)

    @property
    def content_html(self) -> str:
        items = "".join(f'<li><a href="{html.escape(s.link)}">{html.escape(s.title)}</a></li>' for s in self.stories)
        return f"<ul>{items}</ul>" if items else "<p></p>"


@dataclass(frozen=True)
class Feed:
    """A digest's archive as feed data: ``atom`` and ``json_feed`` give the documents."""

    links: FeedLinks
    language: str
    home_url: str
    entries: list[FeedEntry]
    now: datetime

    def atom(self) -> bytes:
        """The Atom document (feedgen escapes every text)."""
        fg = FeedGenerator()
        fg.id(self.home_url)
        fg.title(self.links.title)
        fg.author({"name": self.links.title})
        fg.link(href=self.links.atom_url, rel="self", type="application/atom+xml")
        fg.link(href=self.home_url, rel="alternate", type="text/html")
        fg.language(self.language)
        fg.updated(self.entries[0].when if self.entries else self.now)
        for e in self.entries:
            fe = fg.add_entry(order="append")
            fe.id(e.url)
            fe.title(e.title)
            fe.link(href=e.url, rel="alternate", type="text/html")
            fe.published(e.when)
            fe.updated(e.when)
            fe.summary(e.summary or e.title)
            fe.content(e.content_html, type="html")
        result: bytes = fg.atom_str(pretty=True)
        return result

    def json_feed(self) -> dict[str, Any]:
        """The JSON Feed 1.1 document."""
        return {
            "version": JSON_FEED_VERSION,
            "title": self.links.title,
            "home_page_url": self.home_url,
            "feed_url": self.links.json_url,
            "language": self.language,
            "authors": [{"name": self.links.title}],
            "items": [
                {
                    "id": e.url,
                    "url": e.url,
                    "title": e.title,
                    "summary": e.summary,
                    "content_html": e.content_html,
                    "date_published": e.when.isoformat(),
                }
                for e in self.entries
            ],
        }


def archive_feed(engine: Engine, settings: Settings, digest: str, now: datetime, limit: int = FEED_SIZE) -> Feed | None:
    """The feed of ``digest``'s archive; None when no such digest is configured."""
    cfg = settings.digests.get(digest)
    if cfg is None:
        return None
    links = next(f for f in digest_feeds(settings) if f.name == digest)
    base = settings.base_url
    went_out = (EditionStatus.SENT, EditionStatus.SENDING)
    entries: list[FeedEntry] = []
    with session_scope(engine) as session:
        editions = session.exec(
            select(Edition)
            .where(Edition.digest == digest, col(Edition.status).in_(went_out))
            .order_by(col(Edition.built_at).desc(), col(Edition.id).desc())
            .limit(limit)
        ).all()
        for e in editions:
            articles = session.exec(
                select(Article)
                .join(EditionArticle, col(EditionArticle.article_id) == Article.id)
                .where(EditionArticle.edition_id == e.id, col(Article.hidden).is_(False))
                .order_by(col(EditionArticle.position))
            ).all()
            day = date.fromisoformat(e.slot[:10])
            extra = e.slot[10:].strip()
            title = f"{cfg.title}, {long_date(day, cfg.language)}" + (f" ({extra})" if extra else "")
            entries.append(
                FeedEntry(
                    title=title,
                    url=f"{base}/archive/{quote(digest)}/{quote(e.slot)}",
                    when=_aware(e.sent_at or e.built_at),
                    stories=tuple(FeedStory(s.title, s.link) for s in (to_story(a, base) for a in articles)),
                )
            )
    return Feed(links, cfg.language, f"{base}/archive", entries, _aware(now))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
