"""Queries on the article table: what a window of time holds; hiding and removing stories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from digest.core.errors import NotFoundError
from digest.store.models import Article, EditionArticle, EditionLeftOut


def recent_articles(
    session: Session, since: datetime, until: datetime, limit: int | None = None, *, include_hidden: bool = False
) -> Sequence[Article]:
    """Articles published in ``(since, until]``, newest first (the first ``limit`` of them); hidden ones
    only with ``include_hidden``."""
    stmt = (
        select(Article)
        .where(Article.published_at > since, Article.published_at <= until)
        .order_by(col(Article.published_at).desc())
        .limit(limit)
    )
    if not include_hidden:
        stmt = stmt.where(col(Article.hidden).is_(False))
    return session.exec(stmt).all()


def _existing(session: Session, ids: Sequence[int]) -> list[Article]:
    """The articles ``ids``, all of them: one missing changes nothing (NotFoundError naming it)."""
    found = session.exec(select(Article).where(col(Article.id).in_(list(ids)))).all()
    missing = sorted(set(ids) - {a.id for a in found})
    if missing:
        raise NotFoundError(f"no article {', '.join(map(str, missing))}; nothing changed")
    return list(found)


def set_hidden(session: Session, ids: Sequence[int], hidden: bool, now: datetime) -> list[int]:
    """Hide (or show again) the articles ``ids``: a hidden story is in no new edition and on no page.

    Stored editions keep their list of articles; what is read from them (archive
    pages, resends, deliveries still queued) leaves hidden ones out.
    """
    articles = _existing(session, ids)
    for article in articles:
        article.hidden = hidden
        article.updated_at = now
        session.add(article)
    return sorted(set(ids))


def set_lead(session: Session, article_id: int, lead: str, now: datetime) -> Article:
    """Store the editor's lead-in of article ``article_id`` (``""``: none, the summary's first
    sentence stands in); ``lead`` is already clean (``digest.ingest.records.clean_lead``)."""
    (article,) = _existing(session, [article_id])
    article.lead = lead
    article.updated_at = now
    session.add(article)
    return article


def remove_articles(session: Session, ids: Sequence[int]) -> list[int]:
    """Delete the articles ``ids`` and their places in stored editions; returns their ids."""
    _existing(session, ids)
    session.execute(delete(EditionArticle).where(col(EditionArticle.article_id).in_(list(ids))))
    session.execute(
        delete(EditionLeftOut).where(
            or_(col(EditionLeftOut.article_id).in_(list(ids)), col(EditionLeftOut.kept_id).in_(list(ids)))
        )
    )
    session.execute(delete(Article).where(col(Article.id).in_(list(ids))))
    return sorted(set(ids))


def edition_article_ids(session: Session, edition_id: int) -> tuple[int, ...]:
    """The ids of the visible (not hidden, not removed) articles of a stored edition, in order."""
    rows = session.exec(
        select(EditionArticle.article_id)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(EditionArticle.edition_id == edition_id, col(Article.hidden).is_(False))
        .order_by(col(EditionArticle.position))
    ).all()
    return tuple(rows)
