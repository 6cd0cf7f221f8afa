"""Selection is a pure function of (articles, digest settings, now, carried)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.core.settings import DigestConfig
from digest.edition.select import OTHER_SECTION, edition_slot, select_articles
from digest.store.models import Article

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
BASE = "https://news.example.com"


def art(i: int, title: str, minutes_ago: int = 10, **kw: object) -> Article:
    values: dict[str, object] = {
        "id": i,
        "guid": f"g{i}",
        "url": f"https://news.example.com/{i}",
        "title": title,
        "category": "World",
        "published_at": NOW - timedelta(minutes=minutes_ago),
        "ingested_at": NOW,
        "updated_at": NOW,
        "word_count": 460,
    }
    values.update(kw)
    return Article(**values)  # type: ignore[arg-type]


def titles(content) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.title for s in content.ranked]


def test_only_articles_inside_the_lookback_window() -> None:
    cfg = DigestConfig(lookback="24h")
    arts = [art(1, "fresh", 60), art(2, "stale", 25 * 60), art(3, "future", -5)]
    assert titles(select_articles(arts, cfg, NOW, base_url=BASE)) == ["fresh"]


def test_articles_carried_by_earlier_editions_are_not_repeated() -> None:
    arts = [art(1, "old news"), art(2, "new news")]
    content = select_articles(arts, DigestConfig(), NOW, carried={1}, base_url=BASE)
    assert titles(content) == ["new news"]


def test_carried_url_excludes_a_reimported_copy() -> None:
    arts = [art(5, "same story", url="https://x.example/a")]
    content = select_articles(arts, DigestConfig(), NOW, carried_urls={"https://x.example/a"}, base_url=BASE)
    assert titles(content) == []


def test_same_url_is_kept_once() -> None:
    arts = [art(1, "Alpha story", url="https://x/1"), art(2, "Completely different", url="https://x/1")]
    assert len(select_articles(arts, DigestConfig(), NOW, base_url=BASE).ranked) == 1


def test_near_identical_titles_from_different_sources_are_one_story() -> None:
    arts = [
        art(1, "Russia withdraws troops from Kursk, says South Korea", 30, source="A"),
        art(2, "Russia Withdraws Troops From Kursk, Says South Korea!", 20, source="B"),
        art(3, "Central bank holds rates steady", 25, source="C"),
    ]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    assert len(content.ranked) == 2


def test_ranking_is_breaking_then_priority_then_recency() -> None:
    arts = [
        art(1, "newest plain", 5),
        art(2, "older plain", 50),
        art(3, "priority story", 60, priority=3),
        art(4, "breaking story", 90, breaking=True),
    ]
    assert titles(select_articles(arts, DigestConfig(), NOW, base_url=BASE)) == [
        "breaking story",
        "priority story",
        "newest plain",
        "older plain",
    ]


def test_maximum_articles_caps_the_edition_after_ranking() -> None:
    words = ["apples", "bridges", "comets", "dunes", "elections", "ferries", "glaciers", "harvests", "islands", "jazz"]
    arts = [art(i, f"A report on {w}", i) for i, w in enumerate(words, 1)]
    arts.append(art(99, "late breaking", 300, breaking=True))
    content = select_articles(arts, DigestConfig(max_articles=3), NOW, base_url=BASE)
    assert titles(content)[0] == "late breaking" and len(content.ranked) == 3


def test_sections_follow_configured_order_and_others_go_last() -> None:
    arts = [
        art(1, "science piece", 10, category="Science"),
        art(2, "world piece", 20, category="World"),
        art(3, "sport piece", 30, category="Sport"),
        art(4, "second world", 40, category="world"),
    ]
    cfg = DigestConfig(sections=["World", "Science"])
    view = select_articles(arts, cfg, NOW, base_url=BASE).view()
    assert view.top_story is not None and view.top_story.title == "science piece"
    assert [s.name for s in view.sections] == ["World", OTHER_SECTION]
    assert [s.title for s in view.sections[0].stories] == ["world piece", "second world"]


def test_subscriber_topics_restrict_the_view_to_those_sections() -> None:
    arts = [art(1, "world lead", 5, category="World", breaking=True), art(2, "science item", 10, category="Science")]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    view = content.view(["science"])
    assert view.top_story is not None and view.top_story.title == "science item"
    assert view.story_count == 1


def test_topics_matching_nothing_give_an_empty_view() -> None:
    content = select_articles([art(1, "world lead")], DigestConfig(), NOW, base_url=BASE)
    assert content.view(["Gardening"]).is_empty
    assert content.variant_key(["Gardening"]) != content.variant_key([])


def test_subscribers_with_the_same_topics_share_a_variant() -> None:
    arts = [art(1, "w", category="World"), art(2, "s", category="Science")]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    assert content.variant_key(["science", "World"]) == content.variant_key(["world", "Science"])


def test_article_without_url_links_to_the_site() -> None:
    content = select_articles([art(7, "no link", url=None)], DigestConfig(), NOW, base_url=BASE)
    assert content.ranked[0].link == f"{BASE}/articles/7"


def test_slot_is_the_local_date_of_the_digest_timezone() -> None:
    late_utc = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    assert edition_slot(DigestConfig(timezone="UTC"), late_utc) == "2026-11-25"
    assert edition_slot(DigestConfig(timezone="Pacific/Kiritimati"), late_utc) == "2026-11-26"
    assert edition_slot(DigestConfig(timezone="Etc/GMT+12"), datetime(2026, 11, 25, 6, tzinfo=UTC)) == "2026-11-24"


def test_reading_time_is_at_least_one_minute() -> None:
    content = select_articles(
        [art(1, "short", word_count=3), art(2, "long one", word_count=920)], DigestConfig(), NOW, base_url=BASE
    )
    assert sorted(s.reading_minutes for s in content.ranked) == [1, 4]


def test_same_inputs_give_the_same_edition() -> None:
    words = ["apples", "bridges", "comets", "dunes", "elections", "ferries", "glaciers", "harvests", "islands"]
    arts = [art(i, f"News about {w}", i * 7, priority=i % 3) for i, w in enumerate(words, 1)]
    a = select_articles(arts, DigestConfig(max_articles=8), NOW, base_url=BASE)
    b = select_articles(list(reversed(arts)), DigestConfig(max_articles=8), NOW, base_url=BASE)
    assert a.article_ids == b.article_ids
