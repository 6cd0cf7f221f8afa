"""Preview's warning about stories that look like data (a wrong file imported), not news."""

from __future__ import annotations

import pytest

from digest.compose.checks import check_stories
from digest.edition.select import Story
from tests.conftest import NOW


def story(title: str, summary: str = "") -> Story:
    return Story(
        id=7, title=title, link="https://news.example.com/7", summary=summary, source="", category="", author="",
        image_url=None, image_alt="", published_at=NOW, breaking=False, priority=0, reading_minutes=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "title, summary",
    [
        ("Lenders, banks and insurers tighten credit", "Rates rose 0.25%, 0.5% and 1% in turn."),
        ("Budget of 1,000,000,000 approved; vote due", "Write to the editor at our site."),
        ("Q&A: what the storm pact means", ""),
    ],
)
def test_news_is_not_flagged(title: str, summary: str) -> None:
    assert check_stories([story(title, summary)]) == []


def test_a_subscriber_row_is_flagged_with_its_addresses_masked() -> None:
    warnings = check_stories([story("ana@example.org,Ana Lima,World", "bob@example.org,Bob,Science")])

    assert warnings == [
        "article 7 'a***@example.org,Ana Lima,World' looks like data, not news "
        "(2 e-mail address(es), rows like a CSV file): digest articles hide 7"
    ]


def test_markup_in_a_summary_is_flagged() -> None:
    warnings = check_stories([story("Storm pact agreed", '<div class="story">Harbour cities agree</div>')])

    assert len(warnings) == 1 and "(markup)" in warnings[0]
