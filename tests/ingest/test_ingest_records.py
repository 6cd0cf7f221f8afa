"""JSON/NDJSON records reader, and the sanitising every reader relies on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.ingest import ArticleDraft, ReadResult
from digest.ingest.reader import read_source
from digest.ingest.sanitize import clean_html, clean_text, summary_from_html, text_to_html, truncate_words


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def _read_one(tmp_path: Path, record: dict[str, Any], **kwargs: Any) -> ReadResult:
    path = _write(tmp_path, "one.json", json.dumps(record))
    return read_source(str(path), **kwargs)


def _only_draft(result: ReadResult) -> ArticleDraft:
    assert result.problems == []
    assert len(result.drafts) == 1
    return result.drafts[0]


def _only_problem(result: ReadResult) -> str:
    assert result.drafts == []
    assert len(result.problems) == 1
    return str(result.problems[0])


# --- field mapping ---------------------------------------------------------------------


def test_every_documented_field_is_mapped(tmp_path: Path) -> None:
    record = {
        "title": "Harbour wall repaired",
        "url": "https://news.example.com/harbour-wall",
        "guid": "hw-2025-001",
        "source": "Coast Times",
        "summary": "The harbour wall is whole again.",
        "body": "<p>The harbour wall is whole again.</p><p>Work took a month.</p>",
        "category": "Local",
        "tags": ["harbour", "works"],
        "author": "Ines Varga",
        "image_url": "https://img.example.com/wall.jpg",
        "image_alt": "The repaired wall at low tide",
        "published_at": "2025-03-14T08:30:00+00:00",
        "breaking": True,
        "priority": 5,
    }
    draft = _only_draft(_read_one(tmp_path, record))
    assert draft.title == "Harbour wall repaired"
    assert draft.url == "https://news.example.com/harbour-wall"
    assert draft.guid == "hw-2025-001"
    assert draft.source == "Coast Times"
    assert draft.summary == "The harbour wall is whole again."
    assert draft.body == "<p>The harbour wall is whole again.</p><p>Work took a month.</p>"
    assert draft.category == "Local"
    assert draft.tags == ["harbour", "works"]
    assert draft.author == "Ines Varga"
    assert draft.image_url == "https://img.example.com/wall.jpg"
    assert draft.image_alt == "The repaired wall at low tide"
    assert draft.published_at == datetime(2025, 3, 14, 8, 30, tzinfo=UTC)
    assert draft.breaking is True
    assert draft.priority == 5


def test_only_title_is_required_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "Just a title"}))
    assert (draft.url, draft.guid, draft.published_at, draft.image_url) == (None, None, None, None)
    assert (draft.summary, draft.body, draft.category, draft.tags) == ("", "", "", [])
    assert (draft.breaking, draft.priority) == (False, 0)


def test_section_is_an_alias_of_category(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "section": "Sport"}))
    assert draft.category == "Sport"


def test_published_is_an_alias_of_published_at(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "published": "2025-01-02T03:04:05Z"}))
    assert draft.published_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_field_and_its_alias_together_are_a_problem(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "category": "A", "section": "B"}))
    assert "'category'" in problem and "'section'" in problem


def test_tags_accept_a_comma_separated_string(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "tags": "energy, grid , ,energy,storage"}))
    assert draft.tags == ["energy", "grid", "storage"]


def test_tags_must_be_strings(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "tags": ["ok", 3]}))
    assert "tag" in problem


def test_published_at_with_offset_is_converted_to_utc(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "published_at": "2025-06-01T12:00:00+02:00"}))
    assert draft.published_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert draft.published_at.utcoffset().total_seconds() == 0


def test_naive_published_at_is_rejected(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "published_at": "2025-06-01T12:00:00"}))
    assert "timezone" in problem


def test_unparseable_published_at_is_rejected(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "published_at": "last Tuesday"}))
    assert "ISO 8601" in problem


def test_missing_title_is_a_problem(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"url": "https://a.example/x"}))
    assert "missing title" in problem


def test_title_of_only_markup_is_a_problem(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "<script>alert(1)</script>"}))
    assert "title is empty" in problem


def test_unknown_field_is_a_problem_naming_the_field(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "headline_colour": "red"}))
    assert "unknown field 'headline_colour'" in problem


def test_relative_url_is_rejected(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "url": "/news/1"}))
    assert "url '/news/1'" in problem and "http" in problem


def test_javascript_url_is_rejected(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "url": "javascript:alert(1)"}))
    assert "url" in problem


def test_image_url_must_be_http(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "image_url": "ftp://img.example/a.png"}))
    assert "image_url" in problem


def test_breaking_must_be_a_boolean(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "breaking": "yes"}))
    assert "breaking must be true or false" in problem


def test_priority_must_be_an_integer(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "T", "priority": 1.5}))
    assert "priority must be an integer" in problem


def test_lead_is_read_as_plain_text_and_absent_is_none(tmp_path: Path) -> None:
    given = _only_draft(_read_one(tmp_path, {"title": "T", "lead": "Why it <b>matters</b>:\n  one warning."}))
    absent = _only_draft(_read_one(tmp_path, {"title": "T", "lead": None}))
    assert (given.lead, absent.lead) == ("Why it matters: one warning.", None)


def test_a_too_long_lead_is_one_line_naming_the_field_and_the_record(tmp_path: Path) -> None:
    lines = [json.dumps({"title": "T1"}), json.dumps({"title": "T2", "lead": "word " * 60})]
    path = _write(tmp_path, "feed.ndjson", "\n".join(lines) + "\n")
    result = read_source(str(path))
    assert [d.title for d in result.drafts] == ["T1"]
    assert [str(p) for p in result.problems] == [f"{path}:2: lead is 299 characters; at most 280"]


def test_lead_must_be_a_string(tmp_path: Path) -> None:
    assert "lead must be a string, got a number" in _only_problem(_read_one(tmp_path, {"title": "T", "lead": 5}))


def test_null_optional_fields_count_as_absent(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "url": None, "tags": None, "breaking": None}))
    assert (draft.url, draft.tags, draft.breaking) == (None, [], False)


def test_numeric_guid_becomes_a_string(tmp_path: Path) -> None:
    assert _only_draft(_read_one(tmp_path, {"title": "T", "guid": 4711})).guid == "4711"


def test_default_category_applies_only_when_record_has_none(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.json", json.dumps([{"title": "A"}, {"title": "B", "category": "Own"}]))
    result = read_source(str(path), default_category="World")
    assert [d.category for d in result.drafts] == ["World", "Own"]


# --- summary ---------------------------------------------------------------------------


def test_missing_summary_is_the_first_paragraph_of_body(tmp_path: Path) -> None:
    body = "<h2>Intro</h2><p>First <b>bold</b> para.</p><p>Second para.</p>"
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "body": body}))
    assert draft.summary == "First bold para."


def test_derived_summary_is_cut_at_a_word_boundary(tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "body": f"<p>{words}</p>"}))
    assert len(draft.summary) <= 300
    assert draft.summary.endswith("…")
    assert words.startswith(draft.summary[:-1])
    assert draft.summary[:-1].split()[-1] in words.split()


def test_given_summary_is_kept_and_made_plain_text(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "summary": "Short <i>and</i>\nsweet", "body": "<p>x</p>"}))
    assert draft.summary == "Short and sweet"


# --- sanitising ------------------------------------------------------------------------


def test_body_scripts_handlers_and_javascript_urls_are_removed(tmp_path: Path) -> None:
    body = (
        '<p onclick="steal()">Hi <a href="javascript:alert(1)">bad</a> '
        '<a href="https://ok.example/">good</a></p><script>alert("x")</script>'
        '<img src="x.png" onerror="pwn()" alt="pic"><iframe src="https://evil.example/"></iframe>'
    )
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "body": body}))
    assert "script" not in draft.body and "alert" not in draft.body
    assert "onclick" not in draft.body and "onerror" not in draft.body
    assert "javascript:" not in draft.body and "iframe" not in draft.body
    assert '<a href="https://ok.example/" rel="noopener noreferrer">good</a>' in draft.body


def test_title_with_template_syntax_is_kept_literally(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "Maths quiz: {{ 7*7 }} {% if x %}"}))
    assert draft.title == "Maths quiz: {{ 7*7 }} {% if x %}"


def test_header_injection_in_title_is_collapsed_to_one_line(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "Hello\r\nBcc: victim@example.com\r\n\r\nbody"}))
    assert draft.title == "Hello Bcc: victim@example.com body"
    assert "\r" not in draft.title and "\n" not in draft.title


def test_author_and_source_are_single_line_plain_text(tmp_path: Path) -> None:
    draft = _only_draft(_read_one(tmp_path, {"title": "T", "author": "A\nB", "source": "<b>Daily</b> &amp; Co"}))
    assert (draft.author, draft.source) == ("A B", "Daily & Co")


def test_clean_html_keeps_allowed_tags_and_attributes() -> None:
    html = '<h3 class="x">H</h3><figure><img src="https://i.example/a.png" alt="A" width="9"></figure>'
    assert clean_html(html) == '<h3>H</h3><figure><img src="https://i.example/a.png" alt="A"></figure>'


def test_clean_html_drops_data_and_vbscript_urls() -> None:
    out = clean_html('<a href="vbscript:x">a</a><img src="data:image/png;base64,AAAA" alt="d">')
    assert "vbscript" not in out and "data:" not in out


def test_clean_html_allows_mailto_links() -> None:
    assert 'href="mailto:desk@example.com"' in clean_html('<a href="mailto:desk@example.com">mail</a>')


def test_clean_text_unescapes_entities_and_drops_control_characters() -> None:
    assert clean_text("Tom &amp; Jerry\x00\x1b[31m\u200b!") == "Tom & Jerry [31m!"


def test_text_to_html_escapes_plain_text() -> None:
    assert text_to_html(["a < b & <i>c</i>", "", "two\nlines"]) == (
        "<p>a &lt; b &amp; &lt;i&gt;c&lt;/i&gt;</p>\n<p>two lines</p>"
    )


def test_truncate_words_leaves_short_text_alone() -> None:
    assert truncate_words("short text", 300) == "short text"


def test_summary_from_html_without_paragraphs_uses_all_text() -> None:
    assert summary_from_html("<ul><li>one</li><li>two</li></ul>") == "one two"


def test_clean_text_keeps_words_in_inline_markup_together() -> None:
    assert clean_text("<p><b>F</b>irst</p><p>second<br>line</p>") == "First second line"


# --- locations: JSON lists, single objects, NDJSON lines -------------------------------


def test_json_list_reports_bad_records_by_index_and_keeps_good_ones(tmp_path: Path) -> None:
    records = [{"title": "Good 0"}, {"title": "Bad", "oops": 1}, {"title": "Good 2"}, "not an object"]
    path = _write(tmp_path, "list.json", json.dumps(records))
    result = read_source(str(path))
    assert [d.title for d in result.drafts] == ["Good 0", "Good 2"]
    assert [p.where for p in result.problems] == [f"{path}[1]", f"{path}[3]"]
    assert "expected a JSON object" in result.problems[1].problem


def test_json_list_drafts_carry_their_index_as_origin(tmp_path: Path) -> None:
    path = _write(tmp_path, "list.json", json.dumps([{"title": "A"}, {"title": "B"}]))
    assert [d.origin for d in read_source(str(path)).drafts] == [f"{path}[0]", f"{path}[1]"]


def test_json_single_object_is_one_record(tmp_path: Path) -> None:
    path = _write(tmp_path, "single.json", json.dumps({"title": "Solo"}))
    result = read_source(str(path))
    assert [(d.title, d.origin) for d in result.drafts] == [("Solo", str(path))]


def test_json_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.json", '[\n  {"title": "A"},\n  {"title": "B",,}\n]\n')
    result = read_source(str(path))
    assert result.drafts == []
    assert [p.where for p in result.problems] == [f"{path}:3"]
    assert "invalid JSON" in result.problems[0].problem


def test_json_top_level_scalar_is_a_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "scalar.json", "42")
    problem = _only_problem(read_source(str(path)))
    assert problem.startswith(f"{path}: expected a JSON object or a list")


def test_ndjson_reports_bad_lines_and_keeps_good_ones(tmp_path: Path) -> None:
    lines = [
        '{"title": "Line 1"}',
        "",
        '{"title": "Line 3", "published_at": "2025-01-01T00:00:00"}',
        "{not json",
        "   ",
        '{"title": "Line 6", "section": "Tech"}',
        '["a list"]',
    ]
    path = _write(tmp_path, "feed.ndjson", "\n".join(lines) + "\n")
    result = read_source(str(path))
    assert [(d.title, d.origin) for d in result.drafts] == [("Line 1", f"{path}:1"), ("Line 6", f"{path}:6")]
    assert [p.where for p in result.problems] == [f"{path}:3", f"{path}:4", f"{path}:7"]
    assert "timezone" in result.problems[0].problem
    assert "invalid JSON" in result.problems[1].problem
    assert "expected a JSON object" in result.problems[2].problem


def test_ndjson_line_may_contain_unicode_line_separator(tmp_path: Path) -> None:
    path = _write(tmp_path, "sep.jsonl", '{"title": "a\u2028b"}\n{"title": "c"}\n')
    result = read_source(str(path))
    assert [d.title for d in result.drafts] == ["a b", "c"]
    assert result.problems == []


def test_ndjson_with_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.ndjson"
    path.write_bytes(b'{"title": "A"}\r\n\r\n{"title": "B"}\r\n')
    assert [d.title for d in read_source(str(path)).drafts] == ["A", "B"]


# --- hostile nesting ---------------------------------------------------------------------


def test_deeply_nested_json_is_one_problem_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    result = read_source(str(path))
    assert result.drafts == []
    assert [(p.where, p.whole_source) for p in result.problems] == [(str(path), True)]
    assert "nested too deeply" in result.problems[0].problem


def test_deeply_nested_ndjson_line_is_one_problem_and_other_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "feed.ndjson"
    path.write_text('{"title": "Before"}\n' + "[" * 100_000 + '\n{"title": "After"}\n', encoding="utf-8")
    result = read_source(str(path))
    assert [d.title for d in result.drafts] == ["Before", "After"]
    assert [(p.where, p.whole_source) for p in result.problems] == [(f"{path}:2", False)]
    assert "nested too deeply" in result.problems[0].problem


# --- language and image size ------------------------------------------------------------


def test_language_and_image_size_fields_are_read(tmp_path: Path) -> None:
    record = {"title": "Rain", "language": "pt_br", "image_url": "https://x.example/i.jpg", "image_width": 460}
    draft = _only_draft(_read_one(tmp_path, {**record, "image_height": 259}))
    assert (draft.language, draft.image_width, draft.image_height) == ("pt-BR", 460, 259)


def test_language_is_told_by_the_script_when_not_given(tmp_path: Path) -> None:
    assert _only_draft(_read_one(tmp_path, {"title": "بارش کے بعد شہر میں پانی"})).language == "ur"


def test_a_language_that_is_no_tag_is_a_problem_naming_the_field(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "Rain", "language": "Portuguese (Brazil)"}))
    assert problem.endswith("language 'Portuguese (Brazil)' is not a BCP 47 tag such as 'en', 'fa' or 'pt-BR'")


def test_image_width_must_be_a_positive_integer(tmp_path: Path) -> None:
    problem = _only_problem(_read_one(tmp_path, {"title": "Rain", "image_width": "460px"}))
    assert problem.endswith("image_width must be a whole number of pixels from 1 to 100,000, got '460px'")


def test_a_priority_the_database_cannot_hold_is_a_problem_naming_the_field(tmp_path: Path) -> None:
    # Before: stored as is, SQLite raised OverflowError ("int too large") and the API answered 500.
    problem = _only_problem(_read_one(tmp_path, {"title": "Rain", "priority": 2**63}))
    assert problem.endswith("priority must be between -1,000,000 and 1,000,000, got 9,223,372,036,854,775,808")
