"""Plain-text scraped page reader: the real sample plus invented pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest import ArticleDraft, ReadResult
from digest.ingest.reader import read_source

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
SAMPLE = SAMPLES / "askume-kursk-withdrawal.txt"
SAMPLE_TITLE = "Russia Withdraws North Korean Troops After Heavy Losses in Kursk, Says South Korea"

PAGE = """Home | About | Contact
Menu

– [Science], Research Desk | The Lantern

Glacier meltwater lakes doubled in a decade, survey finds

Satellite images show the number of meltwater lakes has doubled since 2015. Researchers say the trend is speeding up.

Share

How the survey worked

The team compared summer images from three satellites and counted every lake larger than a football pitch.

Advertisement

What comes next

A follow-up study will measure lake depth with drones next year.
"""


def _write(tmp_path: Path, text: str, name: str = "page.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _read(tmp_path: Path, text: str, **kwargs: str) -> ReadResult:
    return read_source(str(_write(tmp_path, text)), **kwargs)


def _draft(tmp_path: Path, text: str, **kwargs: str) -> ArticleDraft:
    result = _read(tmp_path, text, **kwargs)
    assert result.problems == []
    assert len(result.drafts) == 1
    return result.drafts[0]


def _h3s(body: str) -> list[str]:
    return re.findall(r"<h3>(.*?)</h3>", body)


# --- the real sample --------------------------------------------------------------------


@pytest.fixture
def sample() -> Path:
    if not SAMPLE.is_file():
        pytest.skip("sample ../shared/samples/askume-kursk-withdrawal.txt not present")
    return SAMPLE


@pytest.fixture
def sample_draft(sample: Path) -> ArticleDraft:
    result = read_source(str(sample))
    assert result.problems == []
    assert len(result.drafts) == 1
    return result.drafts[0]


def _sample_lines(sample: Path) -> list[str]:
    return [line.strip() for line in sample.read_text(encoding="utf-8").splitlines()]


def test_sample_title_is_the_headline(sample_draft: ArticleDraft) -> None:
    assert sample_draft.title == SAMPLE_TITLE


def test_sample_source_comes_from_the_site_line(sample_draft: ArticleDraft) -> None:
    assert sample_draft.source == "Askume"


def test_sample_category_is_the_bracketed_section(sample_draft: ArticleDraft) -> None:
    assert sample_draft.category == "Breaking News"


def test_sample_is_breaking(sample_draft: ArticleDraft) -> None:
    assert sample_draft.breaking is True


def test_sample_site_tagline_becomes_a_tag(sample_draft: ArticleDraft) -> None:
    assert sample_draft.tags == ["U.S. and World News"]


def test_sample_summary_is_the_first_paragraph(sample: Path, sample_draft: ArticleDraft) -> None:
    lines = _sample_lines(sample)
    after_headline = lines[lines.index(SAMPLE_TITLE) + 1 :]
    first_paragraph = next(line for line in after_headline if line)
    assert sample_draft.summary == first_paragraph
    assert sample_draft.body.startswith("<p>")


def test_sample_subheadings_become_h3(sample: Path, sample_draft: ArticleDraft) -> None:
    headings = _h3s(sample_draft.body)
    assert len(headings) == 5
    lines = _sample_lines(sample)
    for heading in headings:
        source_line = heading.replace("&amp;", "&")
        assert source_line in lines
        assert len(source_line) < 100
        assert not source_line.endswith((".", "!", "?"))


def test_sample_site_chrome_and_headline_are_not_in_body(sample_draft: ArticleDraft) -> None:
    assert "About" not in sample_draft.body
    assert "Askume" not in sample_draft.body
    assert SAMPLE_TITLE not in sample_draft.body


def test_sample_has_no_url_and_origin_is_the_file(sample: Path, sample_draft: ArticleDraft) -> None:
    assert sample_draft.url is None
    assert sample_draft.guid is None
    assert sample_draft.origin == str(sample)


# --- invented pages: structure ----------------------------------------------------------


def test_headline_after_chrome_and_site_line_is_the_title(tmp_path: Path) -> None:
    assert _draft(tmp_path, PAGE).title == "Glacier meltwater lakes doubled in a decade, survey finds"


def test_site_line_gives_category_tag_and_source(tmp_path: Path) -> None:
    draft = _draft(tmp_path, PAGE)
    assert (draft.category, draft.tags, draft.source) == ("Science", ["Research Desk"], "The Lantern")
    assert draft.breaking is False


def test_chrome_lines_are_dropped_everywhere(tmp_path: Path) -> None:
    body = _draft(tmp_path, PAGE).body
    for word in ("Home", "About", "Menu", "Share", "Advertisement"):
        assert word not in body


def test_short_unpunctuated_lines_before_paragraphs_are_h3(tmp_path: Path) -> None:
    assert _h3s(_draft(tmp_path, PAGE).body) == ["How the survey worked", "What comes next"]


def test_body_paragraphs_are_p_in_order(tmp_path: Path) -> None:
    paragraphs = re.findall(r"<p>(.*?)</p>", _draft(tmp_path, PAGE).body)
    assert [p.split()[0] for p in paragraphs] == ["Satellite", "The", "A"]


def test_summary_is_the_whole_first_paragraph(tmp_path: Path) -> None:
    assert _draft(tmp_path, PAGE).summary == (
        "Satellite images show the number of meltwater lakes has doubled since 2015. "
        "Researchers say the trend is speeding up."
    )


def test_heading_directly_above_its_paragraph_is_split_off(tmp_path: Path) -> None:
    text = "A headline for the test page\n\nIntro paragraph here.\n\nThe details\nThey are below.\n"
    body = _draft(tmp_path, text).body
    assert body == "<p>Intro paragraph here.</p>\n<h3>The details</h3>\n<p>They are below.</p>"


def test_short_last_line_without_following_paragraph_stays_a_paragraph(tmp_path: Path) -> None:
    text = "A headline for the test page\n\nIntro paragraph here.\n\nThanks for reading\n"
    assert _h3s(_draft(tmp_path, text).body) == []


def test_hard_wrapped_lines_are_joined_into_one_paragraph(tmp_path: Path) -> None:
    text = "A headline for the test page\n\nThis paragraph was wrapped\nat a narrow width by the\nscraper.\n"
    assert _draft(tmp_path, text).body == "<p>This paragraph was wrapped at a narrow width by the scraper.</p>"


def test_date_line_before_the_headline_is_skipped(tmp_path: Path) -> None:
    text = "Updated March 14, 2025 at 9:30 am\n\nTown hall roof gets solar panels\n\nWork starts in May.\n"
    assert _draft(tmp_path, text).title == "Town hall roof gets solar panels"


def test_markup_in_text_is_escaped_not_interpreted(tmp_path: Path) -> None:
    text = "Headline about <b>tags</b> & more\n\nA <script>alert(1)</script> paragraph.\n"
    draft = _draft(tmp_path, text)
    assert draft.title == "Headline about <b>tags</b> & more"
    assert draft.body == "<p>A &lt;script&gt;alert(1)&lt;/script&gt; paragraph.</p>"


def test_template_syntax_in_headline_is_kept_literally(tmp_path: Path) -> None:
    assert _draft(tmp_path, "Quiz night: {{ 7*7 }} answers\n\nBody text.\n").title == "Quiz night: {{ 7*7 }} answers"


def test_crlf_line_endings_are_handled(tmp_path: Path) -> None:
    draft = _draft(tmp_path, "A headline with CRLF endings\r\n\r\nFirst paragraph.\r\n")
    assert (draft.title, draft.summary) == ("A headline with CRLF endings", "First paragraph.")


def test_breaking_news_section_sets_breaking(tmp_path: Path) -> None:
    text = "– [Breaking News] | The Lantern\n\nBridge closed after barge strike\n\nTraffic is diverted.\n"
    draft = _draft(tmp_path, text)
    assert (draft.category, draft.breaking, draft.tags) == ("Breaking News", True, [])


def test_default_category_applies_without_a_site_line(tmp_path: Path) -> None:
    draft = _draft(tmp_path, "A headline without any site line\n\nBody.\n", default_category="Misc")
    assert (draft.category, draft.source, draft.url) == ("Misc", "", None)


# --- metadata lines ---------------------------------------------------------------------


def test_metadata_lines_are_honoured(tmp_path: Path) -> None:
    text = "URL: https://lantern.example/glaciers\nPublished: 2025-03-14T08:30:00+01:00\nAuthor: Noor Haddad\n\n" + PAGE
    draft = _draft(tmp_path, text)
    assert draft.url == "https://lantern.example/glaciers"
    assert draft.published_at == datetime(2025, 3, 14, 7, 30, tzinfo=UTC)
    assert draft.author == "Noor Haddad"
    assert "Noor" not in draft.body and "lantern.example" not in draft.body


def test_naive_published_line_is_a_problem_with_its_line(tmp_path: Path) -> None:
    result = _read(tmp_path, "URL: https://x.example/a\nPublished: 2025-03-14T08:30:00\n\n" + PAGE)
    assert result.drafts == []
    assert len(result.problems) == 1
    assert result.problems[0].where.endswith("page.txt:2")
    assert "timezone" in result.problems[0].problem


def test_non_http_url_line_is_a_problem(tmp_path: Path) -> None:
    result = _read(tmp_path, "URL: javascript:alert(1)\n\n" + PAGE)
    assert result.drafts == []
    assert result.problems[0].where.endswith("page.txt:1")


# --- problems ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n  \n", "About\nHome | Menu\nShare\n"])
def test_file_without_headline_is_a_problem_naming_the_file(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    result = read_source(str(path))
    assert result.drafts == []
    assert [p.where for p in result.problems] == [str(path)]
    assert "no headline" in result.problems[0].problem


def test_headline_without_body_is_a_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "Only a headline and nothing else\n\nShare\n")
    result = read_source(str(path))
    assert result.drafts == []
    assert [p.where for p in result.problems] == [str(path)]
    assert "no article text" in result.problems[0].problem


def test_wall_of_text_without_headline_is_a_problem(tmp_path: Path) -> None:
    result = _read(tmp_path, ("word " * 80).strip() + ".\n\nMore text.\n")
    assert result.drafts == []
    assert "no headline" in result.problems[0].problem
