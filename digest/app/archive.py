"""The archive: the "view in browser" copy of a stored edition, and one stored story.

A use case, not HTTP: find the edition (by id, or by digest and slot), load its
content with the series' configuration (so the copy carries the date first sent) and
render the web copy through :meth:`digest.compose.variants.Variants.web_copy`. The
web shell only turns ``None`` into a 404 and adds its headers.

Copies are kept per edition build (an edition rebuilt gets a new ``built_at``), the
last :attr:`Archive.size` of them: a newsletter's readers open the same few editions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import jinja2
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from digest.compose.variants import Variants
from digest.core.settings import Settings
from digest.edition.build import edition_content
from digest.store.articles import edition_article_ids
from digest.store.db import session_scope
from digest.store.models import Article, Edition, EditionKind, EditionStatus


class Archive:
    """Web copies of stored editions, rendered once per build and kept in a small LRU (thread-safe)."""

    size = 32

    def __init__(self, engine: Engine, settings: Settings, env: jinja2.Environment) -> None:
        self.engine = engine
        self.settings = settings
        self.env = env
        self._copies: OrderedDict[tuple[int, datetime, tuple[int, ...]], str] = OrderedDict()
        self._lock = threading.Lock()

    def by_id(self, edition_id: int) -> str | None:
        """The web copy of edition ``edition_id``; None when there is none to show."""
        return self._copy(self._find(id=edition_id))

    def by_slot(self, digest: str, slot: str) -> str | None:
        """The web copy of ``digest``'s edition for ``slot``; None when there is none to show."""
        return self._copy(self._find(digest=digest, slot=slot))

    def _find(self, **where: Any) -> Edition | None:
        with session_scope(self.engine) as session:
            # Alerts are mail only: the archive shows digests.
            stmt = select(Edition).where(Edition.kind == EditionKind.DIGEST)
            for k, v in where.items():
                stmt = stmt.where(getattr(Edition, k) == v)
            return session.exec(stmt).first()

    def _copy(self, edition: Edition | None) -> str | None:
        if edition is None or edition.id is None:
            return None
        # Its visible articles are part of the key: a story hidden or removed since
        # (``digest articles hide``) must leave the page at once, not when the copy ages out.
        with session_scope(self.engine) as session:
            key = (edition.id, edition.built_at, edition_article_ids(session, edition.id))
        with self._lock:
            if key in self._copies:
                self._copies.move_to_end(key)
                return self._copies[key]
        found = edition_content(self.engine, self.settings, edition.id)
        if found is None:
            return None
        stored, cfg, content = found
        html = Variants(self.settings, stored.digest, cfg, stored.slot, stored.built_at, content, self.env).web_copy()
        with self._lock:
            self._copies[key] = html
            while len(self._copies) > self.size:
                self._copies.popitem(last=False)
        return html


def find_article(engine: Engine, article_id: int) -> Article | None:
    """The stored story ``article_id``, or None (also when it is hidden)."""
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        return None if article is None or article.hidden else article


@dataclass(frozen=True)
class PastEdition:
    """One line of the archive's list: an edition that went out."""

    id: int
    title: str
    day: date
    slot: str
    article_count: int


def past_editions(engine: Engine, settings: Settings, limit: int = 200) -> list[PastEdition]:
    """The editions that went out (all or part of their copies sent), newest first.

    Only those the archive shows (:meth:`Archive.by_id`: a digest still configured),
    and never one not yet sent: its stories would be public before its readers got it.
    """
    went_out = (EditionStatus.SENT, EditionStatus.SENDING)
    with session_scope(engine) as session:
        stmt = (
            select(Edition)
            .where(
                col(Edition.status).in_(went_out),
                col(Edition.digest).in_(list(settings.digests)),
                Edition.kind == EditionKind.DIGEST,
            )
            .order_by(col(Edition.built_at).desc(), col(Edition.id).desc())
            .limit(limit)
        )
        return [
            PastEdition(
                id=e.id,
                title=settings.digests[e.digest].title,
                day=date.fromisoformat(e.slot[:10]),
                slot=e.slot,
                article_count=e.article_count,
            )
            for e in session.exec(stmt)
            if e.id is not None
        ]
