"""Queries on the article table: what a window of time holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from digest.store.models import Article


def recent_articles(session: Session, since: datetime, until: datetime) -> Sequence[Article]:
    """Articles published in ``(since, until]``, newest first."""
    stmt = (
        select(Article)
        .where(Article.published_at > since, Article.published_at <= until)
        .order_by(col(Article.published_at).desc())
    )
    return session.exec(stmt).all()
