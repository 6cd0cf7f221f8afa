"""Breaking alerts as editions: which articles qualify, and how an alert edition looks.

An alert is an edition of kind ``alert`` whose slot is ``alert-ARTICLE_ID``: the unique
(digest, slot) makes one alert per article, however many runs and processes look at
it. Its one stored article is the record of what the alert carried; the digest's
selection reads it back per reader (:func:`digest.edition.select.alert_marks`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from digest.core.settings import DigestConfig, Settings
from digest.edition.select import OTHER_SECTION, EditionContent, to_story, topic_of
from digest.store.models import Article

ALERT_TEMPLATE = "alert"
ALERT_SUBJECT = "Breaking: {{ top_story.title if top_story else digest.title }}"
ALERT_SLOT_PREFIX = "alert-"


def alert_slot(article_id: int) -> str:
    """The slot key of the alert for one article."""
    return f"{ALERT_SLOT_PREFIX}{article_id}"


def alert_config(cfg: DigestConfig) -> DigestConfig:
    """The digest's settings as its alerts use them: the alert template and subject, never empty."""
    return cfg.model_copy(update={"template": ALERT_TEMPLATE, "subject": ALERT_SUBJECT, "send_empty": False})


def alert_content(article: Article, base_url: str) -> EditionContent:
    """The content of an alert edition: the one article, in its own topic's section."""
    story = to_story(article, base_url)
    section = topic_of(article) or OTHER_SECTION
    return EditionContent(ranked=(story,), section_of={story.id: section}, section_order=(section,))


def alert_candidates(session: Session, settings: Settings, now: datetime) -> list[Article]:
    """Articles to alert about at ``now``: breaking, ``priority >= alert_priority``, visible,
    published within ``alert_max_age``; most important first, then oldest first."""
    return list(
        session.exec(
            select(Article)
            .where(
                col(Article.breaking).is_(True),
                col(Article.hidden).is_(False),
                Article.priority >= settings.alert_priority,
                Article.published_at > now - settings.alert_max_age,
                Article.published_at <= now,
            )
            .order_by(col(Article.priority).desc(), col(Article.published_at), col(Article.id))
        ).all()
    )
