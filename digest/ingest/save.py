"""Drafts -> article rows: insert new articles, update known ones.

Identity: **one story per link**. A draft is the article that has its link (url);
without a link, the article that has its guid. Drafts without a link match by guid
only, and by a hash of source and title when they have neither. Two cases are
counted as *merged*, so the import can say so (and each is logged with both ids):

* a draft whose link is already stored under another guid (a feed re-issued an item
  with a new id): it updates that article, which keeps its first guid;
* a draft matching an article written earlier in the same import (two items of one
  feed share a link): the first one read stands and the later one is not written.

An undated draft (no ``published_at``) is stored with the time it was first seen and
``dated=False``; importing it again never moves that time.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from digest.core.logs import event
from digest.ingest import ArticleDraft
from digest.store.models import Article

log = logging.getLogger(__name__)


@dataclass
class UpsertReport:
    """How many drafts became new articles, updated one, or merged into one with the same link."""

    inserted: int = 0
    updated: int = 0
    merged: int = 0


def article_guid(draft: ArticleDraft) -> str:
    """The stable identity of a draft: its guid, else its url, else a content hash."""
    if draft.guid:
        return draft.guid
    if draft.url:
        return draft.url
    h = hashlib.sha256(f"{draft.source}\x1f{draft.title}".encode()).hexdigest()[:32]
    return f"urn:digest:{h}"


def upsert_articles(
    session: Session,
    drafts: Iterable[ArticleDraft],
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> UpsertReport:
    """Insert new articles and update existing ones (one story per link, see the module docstring).

    The caller's session is one transaction: either every draft is written or,
    on error, none is. ``progress(1)`` is called for each draft.
    """
    report = UpsertReport()
    touched: set[int | None] = set()  # ids of the articles this batch wrote
    for draft in drafts:
        if progress is not None:
            progress(1)
        guid = article_guid(draft)
        by_url = session.exec(select(Article).where(Article.url == draft.url)).first() if draft.url else None
        by_guid = None if by_url is not None else session.exec(select(Article).where(Article.guid == guid)).first()
        existing = by_url or by_guid
        values: dict[str, Any] = {
            "url": draft.url,
            "source": draft.source[:200],
            "title": draft.title,
            "summary": draft.summary,
            "body": draft.body,
            "category": draft.category[:200],
            "tags": list(draft.tags),
            "author": draft.author[:300],
            "image_url": draft.image_url,
            "image_alt": draft.image_alt,
            "image_width": draft.image_width,
            "image_height": draft.image_height,
            "language": draft.language[:35],
            "breaking": draft.breaking,
            "priority": draft.priority,
            "word_count": len(_words(draft.body or draft.summary)),
            "updated_at": now,
        }
        if draft.lead is not None:  # feeds carry no lead-in: the editor's stays
            values["lead"] = draft.lead
        if existing is None:
            row = Article(
                **values,
                guid=guid,
                published_at=draft.published_at or now,
                dated=draft.published_at is not None,
                ingested_at=now,
            )
            session.add(row)
            report.inserted += 1
        else:
            fields = {"url": draft.url, "kept": existing.guid, "merged": guid, "where": draft.origin}
            if existing.id in touched:
                # The same story twice in one import (feeds list the newest first): the
                # first one read stands, the later one is merged into it, not over it.
                report.merged += 1
                event(log, "article.merged", logging.INFO, **fields)
                continue
            if by_url is not None and by_url.guid != guid and draft.guid:
                # Same link under another id: one story, updated; its first guid stays.
                report.merged += 1
                event(log, "article.merged", logging.INFO, **fields)
            else:
                report.updated += 1
            if draft.url is None:
                values.pop("url")  # a draft without a link never erases the link the article has
            # A feed polled again brings the same items: updated_at moves only when the story
            # changed (an alerted story is "Updated since our alert" only then).
            if all(getattr(existing, k) == v for k, v in values.items() if k != "updated_at") and (
                draft.published_at is None or draft.published_at == existing.published_at
            ):
                values.pop("updated_at")
            for k, v in values.items():
                setattr(existing, k, v)
            if draft.published_at is not None:
                existing.published_at = draft.published_at
                existing.dated = True
            session.add(existing)
            row = existing
        # Flush per draft so a url and guid repeated inside one batch match too.
        session.flush()
        touched.add(row.id)
    return report


def _words(html: str) -> list[str]:
    return re.sub(r"<[^>]+>", " ", html).split()
