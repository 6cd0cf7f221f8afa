"""Queries on the article table: what a window of time holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from digest.store.models import Article


def recent_articles(session: Session, since: datetime, until: datetime, limit: int | None = None) -> Sequence[Article]:
    """Articles published in ``(since, until]``, newest first (the first ``limit`` of them)."""
    stmt = (
        select(Article)
        .where(Article.published_at > since, Article.published_at <= until)
        .order_by(col(Article.published_at).desc())
        .limit(limit)
    )
    return session.exec(stmt).all()
