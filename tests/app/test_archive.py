"""The archive use case: web copies of stored editions, on every backend."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.archive import Archive, find_article
from digest.compose.render import make_environment
from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.store.db import session_scope
from digest.store.models import Article, Edition
from tests.conftest import NOW, STANDARD_DRAFTS, seed


def stored_edition(engine: Engine, settings: Settings) -> Edition:
    seed(engine, STANDARD_DRAFTS, [])
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    return edition


def test_copy_by_slot_and_by_id_is_the_same_page(engine: Engine, settings: Settings) -> None:
    edition = stored_edition(engine, settings)
    archive = Archive(engine, settings, make_environment(settings.templates_dir))

    by_slot = archive.by_slot("daily", edition.slot)

    assert by_slot is not None and STANDARD_DRAFTS[0].title in by_slot
    assert archive.by_id(edition.id or 0) == by_slot


def test_rebuilt_edition_is_rendered_again(engine: Engine, settings: Settings) -> None:
    edition = stored_edition(engine, settings)
    archive = Archive(engine, settings, make_environment(settings.templates_dir))
    first = archive.by_slot("daily", edition.slot)
    with session_scope(engine) as s:
        row = s.get(Edition, edition.id)
        assert row is not None
        row.built_at = edition.built_at + timedelta(minutes=5)
        for article in s.exec(select(Article)).all():
            article.title = f"Corrected: {article.title}"

    again = archive.by_slot("daily", edition.slot)

    assert first is not None and "Corrected:" not in first
    assert again is not None and "Corrected:" in again


def test_unknown_edition_and_article_are_none(engine: Engine, settings: Settings) -> None:
    archive = Archive(engine, settings, make_environment(settings.templates_dir))

    assert archive.by_slot("daily", "1999-01-01") is None
    assert archive.by_id(424242) is None
    assert find_article(engine, 424242) is None
