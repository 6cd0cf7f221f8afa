"""Drafts -> article rows: insert new articles, update known ones (by url or guid)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, select

from digest.ingest import ArticleDraft
from digest.store.models import Article


@dataclass
class UpsertReport:
    inserted: int = 0
    updated: int = 0


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
    """Insert new articles and update existing ones (matched by url or guid).

    The caller's session is one transaction: either every draft is written or,
    on error, none is. ``progress(1)`` is called after each draft.
    """
    report = UpsertReport()
    for draft in drafts:
        guid = article_guid(draft)
        conds: list[Any] = [Article.guid == guid]
        if draft.url:
            conds.append(Article.url == draft.url)
        existing = session.exec(select(Article).where(or_(*conds))).first()
        values: dict[str, Any] = {
            "guid": guid,
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
        if existing is None:
            session.add(
                Article(
                    **values,
                    published_at=draft.published_at or now,
                    dated=draft.published_at is not None,
                    ingested_at=now,
                )
            )
            report.inserted += 1
        else:
            for k, v in values.items():
                setattr(existing, k, v)
            if draft.published_at is not None:
                existing.published_at = draft.published_at
                existing.dated = True
            session.add(existing)
            report.updated += 1
        # Flush per draft so a url and guid repeated inside one batch match too.
        session.flush()
        if progress is not None:
            progress(1)
    return report


def _words(html: str) -> list[str]:
    return re.sub(r"<[^>]+>", " ", html).split()
