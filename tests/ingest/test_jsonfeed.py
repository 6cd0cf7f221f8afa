"""JSON Feed 1.0/1.1 reader, through the content-detecting reader (any extension)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.ingest import ReadResult
from digest.ingest.reader import read_source

VERSION = "https://jsonfeed.org/version/1.1"


def _read(tmp_path: Path, items: list[dict[str, Any]], name: str = "feed.json", **feed: Any) -> ReadResult:
    doc = {"version": VERSION, "title": "Harbour Gazette", "home_page_url": "https://gazette.example/", **feed}
    path = tmp_path / name
    path.write_text(json.dumps({**doc, "items": items}), encoding="utf-8")
    return read_source(str(path), default_category="Local")


def test_item_fields_are_mapped(tmp_path: Path) -> None:
    item = {
        "id": "g-1",
        "url": "https://gazette.example/ferry",
        "title": "Ferry timetable changes",
        "content_html": "<p>Winter <b>ferries</b> run hourly.</p><script>x()</script>",
        "summary": "Hourly ferries from December.",
        "image": "https://gazette.example/ferry.jpg",
        "date_published": "2026-11-30T08:00:00+01:00",
        "tags": ["Transport", "Ferries"],
        "language": "en-gb",
        "authors": [{"name": "Ann Lee"}],
        "_ext": {"ignored": True},
    }
    result = _read(tmp_path, [item])
    assert result.problems == []
    (d,) = result.drafts
    assert (d.title, d.url, d.guid, d.source) == ("Ferry timetable changes", item["url"], "g-1", "Harbour Gazette")
    assert d.body == "<p>Winter <b>ferries</b> run hourly.</p>"
    assert (d.summary, d.category, d.tags) == ("Hourly ferries from December.", "Transport", ["Transport", "Ferries"])
    assert (d.image_url, d.language, d.author) == (item["image"], "en-GB", "Ann Lee")
    assert d.published_at == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


def test_content_text_becomes_paragraphs_and_feed_language_applies(tmp_path: Path) -> None:
    item = {"id": "1", "url": "https://gazette.example/1", "title": "T", "content_text": "One <b>.\n\nTwo."}
    (d,) = _read(tmp_path, [item], language="fa").drafts
    assert d.body == "<p>One &lt;b&gt;.</p>\n<p>Two.</p>"
    assert (d.summary, d.language, d.category) == ("One <b>.", "fa", "Local")


def test_untitled_micro_post_gets_its_first_sentence_as_title(tmp_path: Path) -> None:
    item = {"id": "https://m.example/1", "content_text": "Forgejo is up. Moving repositories next."}
    (d,) = _read(tmp_path, [item]).drafts
    assert (d.title, d.url) == ("Forgejo is up.", "https://m.example/1")


def test_undated_item_is_undated_and_date_modified_is_the_fallback(tmp_path: Path) -> None:
    items = [
        {"id": "1", "url": "https://gazette.example/1", "title": "A"},
        {"id": "2", "url": "https://gazette.example/2", "title": "B", "date_modified": "2026-11-29T10:00:00Z"},
    ]
    first, second = _read(tmp_path, items).drafts
    assert first.published_at is None
    assert second.published_at == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_relative_url_is_resolved_against_the_home_page(tmp_path: Path) -> None:
    (d,) = _read(tmp_path, [{"id": "1", "url": "/2026/a", "title": "A"}]).drafts
    assert d.url == "https://gazette.example/2026/a"


def test_bad_item_is_a_problem_with_its_index_and_the_others_are_kept(tmp_path: Path) -> None:
    items = [
        {"id": "1", "url": "javascript:alert(1)", "title": "Bad"},
        {"id": "3", "url": "https://gazette.example/3", "title": "Kept"},
    ]
    result = _read(tmp_path, items, name="export")  # no extension: detected by content
    assert [d.title for d in result.drafts] == ["Kept"]
    assert [p.where for p in result.problems] == [f"{tmp_path}/export[item 0]"]
    assert "url 'javascript:alert(1)' is not an absolute http(s) URL" in result.problems[0].problem


def test_date_without_timezone_keeps_the_item_undated_with_a_warning(tmp_path: Path) -> None:
    items = [{"id": "2", "url": "https://gazette.example/2", "title": "Naive", "date_published": "2018-01-06T08:00"}]
    result = _read(tmp_path, items)
    assert [(d.title, d.published_at) for d in result.drafts] == [("Naive", None)]
    assert result.problems == []
    assert [w.problem for w in result.warnings] == [
        "date_published '2018-01-06T08:00' has no timezone; kept as undated"
    ]
