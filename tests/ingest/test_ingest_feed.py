"""RSS 0.91/1.0/2.0 and Atom reader (feedparser), with hand-written fixture feeds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest import ArticleDraft, ReadResult
from digest.ingest.feed import read_feed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


def _read_fixture(name: str, **kwargs: str) -> ReadResult:
    path = FIXTURES / name
    return read_feed(path.read_bytes(), str(path), **kwargs)


def _drafts(name: str, **kwargs: str) -> list[ArticleDraft]:
    result = _read_fixture(name, **kwargs)
    assert result.problems == []
    return result.drafts


def _rss(items: str, channel_extra: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Test Feed</title><link>https://t.example/</link>{channel_extra}\n{items}\n</channel></rss>"
    ).encode()


# --- RSS 0.91 ---------------------------------------------------------------------------


def test_rss091_entries_map_title_link_summary_and_source() -> None:
    first, second = _drafts("rss091.xml")
    assert first.title == "Ferry timetable changes for the winter season"
    assert first.url == "https://gazette.example.org/2025/ferry-winter"
    assert first.source == "Harbour Town Gazette"
    assert second.title == "Lighthouse repainted after forty years"


def test_rss091_latin1_feed_is_decoded_by_its_declaration() -> None:
    first = _drafts("rss091.xml")[0]
    assert "Café opening hours" in first.summary


def test_rss091_bare_description_becomes_a_paragraph_body() -> None:
    second = _drafts("rss091.xml")[1]
    assert second.body == "<p>Volunteers spent three weekends on scaffolding.</p>"
    assert second.summary == "Volunteers spent three weekends on scaffolding."


def test_entry_without_guid_or_date_leaves_them_unset() -> None:
    first = _drafts("rss091.xml")[0]
    assert (first.guid, first.published_at) == (None, None)


def test_default_category_used_when_feed_has_no_category() -> None:
    drafts = _drafts("rss091.xml", default_category="Local")
    assert {d.category for d in drafts} == {"Local"}


# --- RSS 1.0 (RDF) ------------------------------------------------------------------------


def test_rss10_maps_dublin_core_creator_date_and_subject() -> None:
    (draft,) = _drafts("rss10.rdf")
    assert draft.title == "Pollinator counts up by a third"
    assert draft.url == "https://orchard.example.net/notes/pollinators"
    assert draft.guid == "https://orchard.example.net/notes/pollinators"
    assert draft.author == "Ada Fernsby"
    assert draft.published_at == datetime(2025, 4, 2, 7, 15, tzinfo=UTC)
    assert (draft.category, draft.tags) == ("Science", ["Science"])
    assert draft.source == "Orchard Science Notes"


# --- RSS 2.0 ----------------------------------------------------------------------------


def test_rss20_maps_guid_pubdate_author_and_categories() -> None:
    draft = _drafts("rss20.xml")[0]
    assert draft.title == "Bridge reopens & traffic returns to normal"
    assert draft.url == "https://courier.example.com/news/bridge-reopens"
    assert draft.guid == "courier-4711"
    assert draft.published_at == datetime(2025, 3, 14, 7, 30, tzinfo=UTC)
    assert draft.author == "Mira Holt"
    assert draft.tags == ["Transport", "Infrastructure"]
    assert draft.category == "Transport"
    assert draft.source == "The Valley Courier"
    assert draft.origin == f"{FIXTURES / 'rss20.xml'}[entry 0]"


def test_rss20_prefers_content_encoded_and_sanitises_it() -> None:
    draft = _drafts("rss20.xml")[0]
    assert "Engineers replaced two bearings." in draft.body
    assert '<a href="https://courier.example.com/bridge-map" rel="noopener noreferrer">Map</a>' in draft.body
    assert "script" not in draft.body and "alert" not in draft.body
    assert "onclick" not in draft.body and "javascript:" not in draft.body


def test_rss20_summary_comes_from_description() -> None:
    draft = _drafts("rss20.xml")[0]
    assert draft.summary == "The river bridge reopened on Friday morning after six weeks of repairs."


def test_media_content_image_becomes_image_url() -> None:
    assert _drafts("rss20.xml")[0].image_url == "https://cdn.courier.example.com/img/bridge.jpg"


def test_media_thumbnail_becomes_image_url() -> None:
    assert _drafts("rss20.xml")[1].image_url == "https://cdn.courier.example.com/img/lanes-thumb.jpg"


def test_image_enclosure_becomes_image_url_and_audio_is_ignored() -> None:
    assert _drafts("rss20.xml")[2].image_url == "https://cdn.courier.example.com/img/podcast-12.png"


def test_feed_level_category_is_the_fallback_category() -> None:
    drafts = _drafts("rss20.xml", default_category="Ignored")
    assert drafts[1].category == "Regional"
    assert drafts[1].tags == []


def test_gmt_pubdate_is_aware_utc() -> None:
    published = _drafts("rss20.xml")[1].published_at
    assert published == datetime(2025, 3, 13, 17, 0, tzinfo=UTC)
    assert published is not None and published.tzinfo is not None


# --- Atom -------------------------------------------------------------------------------


def test_atom_maps_entry_fields() -> None:
    draft = _drafts("atom.xml")[0]
    assert draft.url == "https://observatory.example.org/posts/aurora-forecast"
    assert draft.guid == "tag:observatory.example.org,2025:aurora-forecast"
    assert draft.author == "Jonas Ek"
    assert draft.tags == ["Space", "Aurora"]
    assert draft.category == "Space"
    assert draft.source == "Northern Lights Observatory"
    assert draft.summary == "A geomagnetic storm is expected to peak after midnight."


def test_atom_html_title_is_reduced_to_plain_text() -> None:
    assert _drafts("atom.xml")[0].title == "Aurora forecast: strong activity tonight"


def test_atom_published_wins_over_updated() -> None:
    assert _drafts("atom.xml")[0].published_at == datetime(2025, 2, 20, 23, 45, tzinfo=UTC)


def test_atom_updated_is_used_without_published() -> None:
    assert _drafts("atom.xml")[1].published_at == datetime(2025, 2, 19, 10, 0, tzinfo=UTC)


def test_atom_html_content_keeps_safe_markup_only() -> None:
    body = _drafts("atom.xml")[0].body
    assert body.startswith("<h2>What to expect</h2><p>A geomagnetic storm")
    assert 'src="https://observatory.example.org/img/kp.png"' in body and 'alt="Kp index"' in body
    assert "onerror" not in body


def test_atom_text_content_is_escaped_into_paragraphs() -> None:
    body = _drafts("atom.xml")[1].body
    assert body == "<p>The main telescope is offline on Tuesday. Public viewing resumes on Wednesday.</p>"


# --- problems ---------------------------------------------------------------------------


def test_bozo_feed_keeps_good_entries_and_reports_the_error() -> None:
    data = _rss(
        "<item><title>First good</title><link>https://t.example/1</link></item>\n"
        "<item><title>Second & unescaped</title><link>https://t.example/2</link></item>"
    )
    result = read_feed(data, "broken.xml")
    assert [d.title for d in result.drafts] == ["First good", "Second & unescaped"]
    assert [p.where for p in result.problems] == ["broken.xml"]
    assert "malformed" in result.problems[0].problem
    assert "kept 2 good entries" in result.problems[0].problem


def test_entry_without_link_is_a_problem_with_its_index() -> None:
    data = _rss(
        "<item><title>Has link</title><link>https://t.example/1</link></item>"
        "<item><title>No link</title><description>x</description></item>"
    )
    result = read_feed(data, "f.xml")
    assert [d.title for d in result.drafts] == ["Has link"]
    assert [str(p) for p in result.problems] == ["f.xml[entry 1]: entry has no link"]


def test_entry_without_title_is_a_problem_with_its_index() -> None:
    data = _rss(
        "<item><link>https://t.example/0</link></item>"
        "<item><title>Has title</title><link>https://t.example/1</link></item>"
    )
    result = read_feed(data, "f.xml")
    assert [d.title for d in result.drafts] == ["Has title"]
    assert [str(p) for p in result.problems] == ["f.xml[entry 0]: entry has no title"]


def test_entry_with_javascript_link_is_a_problem() -> None:
    data = _rss("<item><title>Sneaky</title><link>javascript:alert(1)</link></item>")
    result = read_feed(data, "f.xml")
    assert result.drafts == []
    assert result.problems[0].where == "f.xml[entry 0]"


@pytest.mark.parametrize(
    "data",
    [b"just some words", b"<html><body><p>A web page</p></body></html>", b"", b"/etc/passwd"],
)
def test_non_feed_input_is_a_problem(data: bytes) -> None:
    result = read_feed(data, "page.xml")
    assert result.drafts == []
    assert len(result.problems) == 1
    assert result.problems[0].where == "page.xml"
    assert "not an RSS or Atom feed" in result.problems[0].problem


# --- sanitising and flags ---------------------------------------------------------------


def test_feed_title_with_template_syntax_is_kept_literally() -> None:
    data = _rss("<item><title>Puzzle: {{ 7*7 }}</title><link>https://t.example/1</link></item>")
    assert read_feed(data, "f.xml").drafts[0].title == "Puzzle: {{ 7*7 }}"


def test_feed_title_with_encoded_line_breaks_is_one_line() -> None:
    data = _rss("<item><title>Alert&#13;&#10;Bcc: x@example.com</title><link>https://t.example/1</link></item>")
    assert read_feed(data, "f.xml").drafts[0].title == "Alert Bcc: x@example.com"


def test_breaking_news_category_marks_entry_breaking() -> None:
    data = _rss(
        "<item><title>Flash</title><link>https://t.example/1</link><category>Breaking News</category></item>"
        "<item><title>Calm</title><link>https://t.example/2</link><category>Gardening</category></item>"
    )
    assert [d.breaking for d in read_feed(data, "f.xml").drafts] == [True, False]


def test_plain_text_title_keeps_angle_brackets_literally() -> None:
    data = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>'
        b'<entry><title type="text">Why 5 &lt; 6 &amp; &lt;b&gt; is bold</title>'
        b'<link href="https://t.example/1"/><id>urn:x:1</id></entry></feed>'
    )
    assert read_feed(data, "f.atom").drafts[0].title == "Why 5 < 6 & <b> is bold"
