"""Drafts -> article rows on every backend: one story per link, undated stories keep their first-seen time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Article
from tests.conftest import NOW, draft


def _rows(engine: Engine) -> list[Article]:
    with session_scope(engine) as s:
        rows = list(s.exec(select(Article).order_by(Article.id)).all())  # type: ignore[arg-type]
        s.expunge_all()
    return rows


def test_same_link_with_another_guid_is_merged_into_one_story(engine: Engine) -> None:
    first = draft("Entry One", url="https://x.example/post/1", guid="0524a046")
    second = draft("Entry One Again", url="https://x.example/post/1", guid="0524a35c")
    with session_scope(engine) as s:
        report = upsert_articles(s, [first, second], NOW)
    assert (report.inserted, report.updated, report.merged) == (1, 0, 1)
    (row,) = _rows(engine)
    assert (row.guid, row.title) == ("0524a046", "Entry One")


def test_same_link_with_another_guid_in_a_later_import_updates_the_story(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("Entry One", url="https://x.example/post/1", guid="0524a046")], NOW)
    with session_scope(engine) as s:
        report = upsert_articles(s, [draft("Entry One, fixed", url="https://x.example/post/1", guid="0524a35c")], NOW)
    assert (report.updated, report.merged) == (0, 1)
    (row,) = _rows(engine)
    assert (row.guid, row.title) == ("0524a046", "Entry One, fixed")


def test_the_same_story_twice_in_one_import_is_a_merge(engine: Engine) -> None:
    bookmark = draft("Greenbelt - Homepage Section", url="http://www.greenbelt.org.uk/", guid=None)
    again = draft("Greenbelt festival (uk)", url="http://www.greenbelt.org.uk/", guid=None)
    with session_scope(engine) as s:
        report = upsert_articles(s, [bookmark, again], NOW)
    assert (report.inserted, report.updated, report.merged) == (1, 0, 1)


def test_same_guid_and_link_again_is_an_update_not_a_merge(engine: Engine) -> None:
    one = draft("A", url="https://x.example/a", guid="g-a")
    with session_scope(engine) as s:
        upsert_articles(s, [one], NOW)
        report = upsert_articles(s, [draft("A, corrected", url="https://x.example/a", guid="g-a")], NOW)
    assert (report.updated, report.merged) == (1, 0)


def test_undated_story_is_marked_and_keeps_its_first_seen_time_on_reimport(engine: Engine) -> None:
    undated = draft("Status: all systems go", url=None, guid="status-1", published_at=None)
    with session_scope(engine) as s:
        upsert_articles(s, [undated], NOW)
    with session_scope(engine) as s:
        upsert_articles(
            s, [draft("Status: all systems go", url=None, guid="status-1", published_at=None)], NOW + timedelta(hours=6)
        )
    (row,) = _rows(engine)
    assert row.dated is False
    assert row.published_at == NOW


def test_link_less_update_keeps_the_link_the_story_has(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("A", url="https://x.example/a", guid="g-a")], NOW)
        upsert_articles(s, [draft("A", url=None, guid="g-a")], NOW)
    assert _rows(engine)[0].url == "https://x.example/a"


def test_language_and_declared_image_size_are_stored(engine: Engine) -> None:
    d = draft("خبر", url="https://x.example/ur", language="ur", image_url="https://x.example/i.jpg")
    d.image_width, d.image_height = 460, 259
    with session_scope(engine) as s:
        upsert_articles(s, [d], NOW)
    row = _rows(engine)[0]
    assert (row.language, row.image_width, row.image_height) == ("ur", 460, 259)


def test_updated_at_moves_only_when_the_story_changed(engine: Engine) -> None:
    def save(story: object, at: object) -> None:
        with session_scope(engine) as s:
            upsert_articles(s, [story], at)  # type: ignore[list-item, arg-type]

    story = draft("Dam breach upstream", 10)
    save(story, NOW)
    save(story, NOW + timedelta(minutes=15))  # the feed polled again, same item
    assert [a.updated_at for a in _rows(engine)] == [NOW]

    save(draft("Dam breach upstream", 10, summary="Water levels are falling."), NOW + timedelta(minutes=30))
    assert [a.updated_at for a in _rows(engine)] == [NOW + timedelta(minutes=30)]


URL = "https://x.example/post/1"


def test_the_editors_lead_survives_a_feed_polled_again_and_an_empty_one_clears_it(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("Entry One", url=URL, lead="Why it matters: one warning.")], NOW)
    with session_scope(engine) as s:
        upsert_articles(s, [draft("Entry One, fixed", url=URL)], NOW)  # a feed: no lead at all
    kept = [(a.title, a.lead) for a in _rows(engine)]
    with session_scope(engine) as s:
        upsert_articles(s, [draft("Entry One, fixed", url=URL, lead="")], NOW)
    assert kept == [("Entry One, fixed", "Why it matters: one warning.")]
    assert [a.lead for a in _rows(engine)] == [""]
