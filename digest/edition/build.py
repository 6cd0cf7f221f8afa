"""The one edition builder: an edition per (digest, slot), its articles chosen once and stored.

An edition is created once per (digest, slot): the unique constraint, not a Python
check, settles a race between two processes. Its stored article list is what every
later send, resend, preview and archive page of the edition shows.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from digest.core.logs import event
from digest.core.settings import DigestConfig, Settings
from digest.edition.alerts import alert_config, alert_content, alert_slot
from digest.edition.dedup import Cut, Drop
from digest.edition.schedule import Series, default_series, parse_slot
from digest.edition.select import EditionContent, edition_slot, select_articles, to_story, window
from digest.edition.series import edition_config, series_carried
from digest.store.articles import recent_articles
from digest.store.db import session_scope
from digest.store.models import (
    Article,
    Edition,
    EditionArticle,
    EditionKind,
    EditionLeftOut,
    EditionStatus,
    saved_id,
)

log = logging.getLogger(__name__)


def compute_content(
    session: Session, settings: Settings, name: str, series: Series, slot: str, now: datetime
) -> EditionContent:
    """What the edition of ``slot`` built at ``now`` would contain (reads the store, writes nothing)."""
    cfg = edition_config(settings.digests[name], series)
    since, until = window(cfg, now)
    carried, carried_urls = series_carried(session, name, series, slot)
    content = select_articles(
        recent_articles(session, since, until),
        cfg,
        now,
        carried=carried,
        carried_urls=carried_urls,
        base_url=settings.base_url,
    )
    for drop in content.drops:
        event(log, "edition.duplicate_dropped", digest=name, slot=slot, dropped=drop.dropped_title,
              dropped_source=drop.dropped_source, kept=drop.kept_title, kept_source=drop.kept_source,
              reason=drop.reason)  # fmt: skip
    for cut in content.cut:
        event(log, "edition.over_limit", digest=name, slot=slot, left_out=cut.title, source=cut.source,
              max_articles=cfg.max_articles)  # fmt: skip
    return content


def load_content(session: Session, settings: Settings, cfg: DigestConfig, edition: Edition) -> EditionContent:
    """The stored article list of an existing edition, without the articles hidden since."""
    rows = session.exec(
        select(EditionArticle, Article)
        .join(Article, col(Article.id) == EditionArticle.article_id)
        .where(EditionArticle.edition_id == edition.id, col(Article.hidden).is_(False))
        .order_by(col(EditionArticle.position))
    ).all()
    stories = tuple(to_story(a, settings.base_url) for _, a in rows)
    section_of = {ea.article_id: ea.section for ea, _ in rows}
    order = list(dict.fromkeys(ea.section for ea, _ in rows))
    if cfg.sections:
        order = [s for s in cfg.sections if s in order] + [s for s in order if s not in cfg.sections]
    drops, cut = _left_out(session, saved_id(edition))
    return EditionContent(ranked=stories, section_of=section_of, section_order=tuple(order), drops=drops, cut=cut)


CUT_REASON = "max_articles"


def _left_out(session: Session, edition_id: int) -> tuple[tuple[Drop, ...], tuple[Cut, ...]]:
    """The stories an edition left out, as recorded when it was built (articles removed since are gone)."""
    kept = aliased(Article)
    rows = session.exec(
        select(EditionLeftOut, Article, kept)
        .join(Article, col(Article.id) == EditionLeftOut.article_id)
        .outerjoin(kept, col(kept.id) == EditionLeftOut.kept_id)
        .where(EditionLeftOut.edition_id == edition_id)
        .order_by(col(EditionLeftOut.position))
    ).all()
    drops = tuple(
        Drop(saved_id(k), k.title, k.source, saved_id(a), a.title, a.source, row.reason)
        for row, a, k in rows
        if row.kept_id is not None and k is not None
    )
    cut = tuple(Cut(saved_id(a), a.title, a.source) for row, a, _ in rows if row.kept_id is None)
    return drops, cut


def find_edition(session: Session, digest: str, slot: str) -> Edition | None:
    return session.exec(select(Edition).where(Edition.digest == digest, Edition.slot == slot)).first()


def build_edition(
    engine: Engine, settings: Settings, name: str, series: Series, slot: str, now: datetime
) -> tuple[Edition, EditionContent, bool]:
    """The edition of ``slot``: found, or built from the articles as of ``now`` and stored.

    Returns ``(edition, content, created)``. Two processes racing to build the same
    slot both end up with the one row the unique constraint let through.
    """
    cfg = edition_config(settings.digests[name], series)
    with session_scope(engine) as session:
        existing = find_edition(session, name, slot)
        if existing is not None:
            return existing, load_content(session, settings, cfg, existing), False
        content = compute_content(session, settings, name, series, slot, now)
    empty = not content.ranked and not cfg.send_empty
    status = EditionStatus.EMPTY if empty else EditionStatus.READY
    edition = Edition(digest=name, slot=slot, built_at=now, article_count=len(content.ranked), status=status)
    stored = store_edition(engine, edition, content)
    if stored is not None:
        return stored, content, True
    with session_scope(engine) as session:
        existing = find_edition(session, name, slot)
        if existing is None:  # the conflict was not the slot: a real error
            raise RuntimeError(f"edition {name} {slot}: insert conflicted, yet no such edition exists")
        return existing, load_content(session, settings, cfg, existing), False


def store_edition(engine: Engine, edition: Edition, content: EditionContent) -> Edition | None:
    """Insert ``edition`` with its article list; None when its (digest, slot) already has one.

    The unique (digest, slot) constraint settles a race between two processes: the
    loser gets None and reads the winner's row.
    """
    try:
        with session_scope(engine) as session:
            session.add(edition)
            session.flush()
            edition_id = _id(edition)
            for pos, story in enumerate(content.ranked):
                session.add(
                    EditionArticle(
                        edition_id=edition_id, article_id=story.id, position=pos, section=content.section_of[story.id]
                    )
                )
            left_out: list[tuple[int, int | None, str]] = [(d.dropped_id, d.kept_id, d.reason) for d in content.drops]
            left_out += [(c.id, None, CUT_REASON) for c in content.cut]
            for pos, (article_id, kept_id, reason) in enumerate(left_out):
                session.add(
                    EditionLeftOut(
                        edition_id=edition_id, article_id=article_id, kept_id=kept_id, reason=reason[:200], position=pos
                    )
                )
        return edition
    except IntegrityError:
        with session_scope(engine) as session:
            if find_edition(session, edition.digest, edition.slot) is None:
                raise
        return None


def build_alert(engine: Engine, settings: Settings, name: str, article: Article, now: datetime) -> tuple[Edition, bool]:
    """The alert edition of ``article`` under digest ``name``: found, or built at ``now``.

    Returns ``(edition, created)``. One per article and digest, ever (the slot is the
    article's): an alert is never built, so never sent, twice.
    """
    slot = alert_slot(saved_id(article))
    with session_scope(engine) as session:
        existing = find_edition(session, name, slot)
    if existing is not None:
        return existing, False
    content = alert_content(article, settings.base_url)
    edition = Edition(digest=name, slot=slot, kind=EditionKind.ALERT, built_at=now, article_count=1)
    stored = store_edition(engine, edition, content)
    if stored is not None:
        return stored, True
    with session_scope(engine) as session:
        found = find_edition(session, name, slot)
    if found is None:
        raise RuntimeError(f"alert {name} {slot}: insert conflicted, yet no such edition exists")
    return found, False


def get_or_build_edition(
    engine: Engine, settings: Settings, name: str, now: datetime
) -> tuple[Edition, EditionContent, bool]:
    """The edition of the digest's own schedule (the default series) due at ``now``."""
    _, cfg = settings.digest(name)
    return build_edition(engine, settings, name, default_series(cfg), edition_slot(cfg, now), now)


def current_content(
    session: Session, settings: Settings, name: str, now: datetime
) -> tuple[str, datetime, EditionContent]:
    """``(slot, built_at, content)`` of the edition due at ``now``, without storing anything.

    An edition already built for the slot is shown as stored, so a preview after a
    send shows exactly what went out.
    """
    _, cfg = settings.digest(name)
    slot = edition_slot(cfg, now)
    existing = find_edition(session, name, slot)
    if existing is not None:
        return slot, existing.built_at, load_content(session, settings, cfg, existing)
    return slot, now, compute_content(session, settings, name, default_series(cfg), slot, now)


def edition_content(
    engine: Engine, settings: Settings, edition_id: int
) -> tuple[Edition, DigestConfig, EditionContent] | None:
    """A stored edition with the configuration its editions use and its articles.

    The configuration is the *series'* (the zone its date is in, its lookback), so
    a resend or an archive page carries the same date as the copy first sent. None
    when the edition does not exist or its digest is no longer configured.
    """
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None or edition.digest not in settings.digests:
            return None
        if edition.kind == EditionKind.ALERT:
            cfg = alert_config(settings.digests[edition.digest])
        else:
            _, series = parse_slot(edition.slot)
            cfg = edition_config(settings.digests[edition.digest], series)
        return edition, cfg, load_content(session, settings, cfg, edition)


def _id(edition: Edition) -> int:
    if edition.id is None:  # flushed rows always have one: a broken session otherwise
        raise RuntimeError("edition row has no id after flush")
    return edition.id
