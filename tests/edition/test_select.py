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


KURSK = "Seoul says Russian troops have withdrawn from the Kursk region after weeks of fighting, officials said."


def test_near_identical_titles_and_summaries_from_different_sources_are_one_story() -> None:
    arts = [
        art(1, "Russia withdraws troops from Kursk, says South Korea", 30, source="A", summary=KURSK),
        art(2, "Russia Withdraws Troops From Kursk, Says South Korea!", 20, source="B", summary=KURSK + " More."),
        art(3, "Central bank holds rates steady", 25, source="C", summary=KURSK),
    ]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    assert titles(content) == [
        "Russia Withdraws Troops From Kursk, Says South Korea!",
        "Central bank holds rates steady",
    ]


def test_same_source_items_with_similar_titles_are_all_kept() -> None:
    arts = [
        art(1, "Tails 4.13 is out", 30, source="Tails", summary="This release fixes many security holes."),
        art(2, "Tails 4.14 is out", 20, source="Tails", summary="This release fixes many security holes."),
        art(3, "Photo", 25, source="Forum", summary="a photo"),
        art(4, "Photo", 26, source="Forum", summary="a photo"),
    ]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    assert len(content.ranked) == 4 and content.drops == ()


def test_similar_titles_with_different_numbers_are_different_stories() -> None:
    arts = [
        art(1, "Quote #17705", 30, source="A", summary="a quote of the day"),
        art(2, "Quote #17703", 20, source="B", summary="a quote of the day"),
    ]
    assert len(select_articles(arts, DigestConfig(), NOW, base_url=BASE).ranked) == 2


def test_similar_titles_with_different_summaries_are_different_stories() -> None:
    arts = [
        art(
            1, "Storm warning for the coast", 30, source="A", summary="Gales of 100 km/h expected in the north tonight."
        ),
        art(
            2, "Storm warning for the coast!", 20, source="B", summary="Ferries cancelled and schools closed on Friday."
        ),
    ]
    assert len(select_articles(arts, DigestConfig(), NOW, base_url=BASE).ranked) == 2


def test_similar_titles_without_summaries_are_not_dropped() -> None:
    arts = [art(1, "Weekly update", 30, source="A"), art(2, "Weekly update", 20, source="B")]
    assert len(select_articles(arts, DigestConfig(), NOW, base_url=BASE).ranked) == 2


def test_same_page_under_another_url_from_another_source_is_one_story() -> None:
    arts = [
        art(1, "Rates held", 30, source="A", url="https://www.bank.example/news/rates/?utm_source=rss#top"),
        art(2, "Central bank keeps rates", 20, source="B", url="http://bank.example/news/rates"),
    ]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    [drop] = content.drops
    assert (drop.kept_title, drop.dropped_title) == ("Central bank keeps rates", "Rates held")
    assert drop.reason == "same page (canonical link)"


def test_every_drop_is_recorded_with_both_titles_and_reason() -> None:
    arts = [
        art(1, "Russia withdraws troops from Kursk", 30, source="A", summary=KURSK),
        art(2, "Russia withdraws troops from Kursk", 20, source="B", summary=KURSK),
    ]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    [drop] = content.drops
    assert (drop.kept_id, drop.dropped_id, drop.reason) == (2, 1, "same title and summary")
    assert "'Russia withdraws troops from Kursk' (A)" in drop.describe()


def test_articles_over_the_maximum_are_named() -> None:
    arts = [art(i, f"Story {w}", i) for i, w in enumerate(["alpha", "beta", "gamma", "delta"], 1)]

    content = select_articles(arts, DigestConfig(max_articles=3), NOW, base_url=BASE)

    assert content.over_limit == 1
    assert [c.describe() for c in content.cut] == [
        "left out 'Story delta' (no source): the edition is full (max_articles)"
    ]


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
    arts = [art(1, "world lead", 5, category="World", priority=5), art(2, "science item", 10, category="Science")]
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


def test_reading_time_comes_from_the_body_text() -> None:
    body = "<p>" + "word " * 920 + "</p>"
    content = select_articles([art(2, "long one", body=body, word_count=1)], DigestConfig(), NOW, base_url=BASE)
    assert content.ranked[0].reading_minutes == 4


def test_reading_time_is_unknown_without_a_body_worth_timing() -> None:
    arts = [art(1, "teaser", summary="word " * 50, body="<p>Read more</p>", word_count=460)]
    assert select_articles(arts, DigestConfig(), NOW, base_url=BASE).ranked[0].reading_minutes is None


def test_reading_time_counts_chinese_characters() -> None:
    body = "<p>" + "中文新闻报道" * 130 + "</p>"  # 780 characters, no spaces
    content = select_articles([art(1, "中文", body=body)], DigestConfig(), NOW, base_url=BASE)
    assert content.ranked[0].reading_minutes == 3


def test_breaking_stories_reach_subscribers_of_other_topics() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True), art(2, "comet", 10, category="Science")]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    view = content.view(content.variant_key(["Science"]))
    assert [view.top_story.title if view.top_story else None] == ["quake"]
    assert [s.title for sec in view.sections for s in sec.stories] == ["comet"]


def test_breaking_news_category_is_a_flag_and_the_story_goes_to_its_real_section() -> None:
    arts = [art(1, "quake", 5, category="Breaking News", tags=["Breaking News", "World"]), art(2, "x", 10)]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    assert content.ranked[0].breaking and content.section_of[1] == "World"
    assert "Breaking News" not in content.section_order


def test_one_story_sections_are_folded_into_one_brief_section() -> None:
    arts = [
        art(1, "lead", 1, category="World"),
        art(2, "w2", 2, category="World"),
        art(3, "w3", 3, category="World"),
        art(4, "s", 4, category="Science"),
        art(5, "b", 5, category="Business"),
    ]
    view = select_articles(arts, DigestConfig(), NOW, base_url=BASE).view()
    assert [(s.name, [x.title for x in s.stories]) for s in view.sections] == [
        ("World", ["w2", "w3"]),
        ("In brief", ["s", "b"]),
    ]


def test_same_inputs_give_the_same_edition() -> None:
    words = ["apples", "bridges", "comets", "dunes", "elections", "ferries", "glaciers", "harvests", "islands"]
    arts = [art(i, f"News about {w}", i * 7, priority=i % 3) for i, w in enumerate(words, 1)]
    a = select_articles(arts, DigestConfig(max_articles=8), NOW, base_url=BASE)
    b = select_articles(list(reversed(arts)), DigestConfig(max_articles=8), NOW, base_url=BASE)
    assert a.article_ids == b.article_ids


def test_breaking_story_reaches_a_subscriber_whose_topics_match_no_section() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True), art(2, "comet", 10, category="Science")]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    view = content.view(content.variant_key(["Gardening"]))
    assert view.top_story is not None and view.top_story.title == "quake" and view.story_count == 1


def test_subscriber_who_opted_out_gets_no_breaking_story_outside_their_topics() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True), art(2, "comet", 10, category="Science")]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    view = content.view(content.variant_key(["Science"], breaking=False))
    assert view.top_story is not None and view.top_story.title == "comet" and view.story_count == 1


def test_opting_out_of_breaking_stories_keeps_those_in_the_own_topics() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True), art(2, "comet", 10, category="Science")]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    view = content.view(content.variant_key(["World"], breaking=False))
    assert view.top_story is not None and view.top_story.title == "quake" and view.story_count == 1


def test_opt_out_makes_a_variant_of_its_own_only_when_it_changes_the_content() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True), art(2, "comet", 10, category="Science")]
    content = select_articles(arts, DigestConfig(sections=["World", "Science"]), NOW, base_url=BASE)
    assert content.variant_key(["Science"], breaking=False) != content.variant_key(["Science"])
    assert content.variant_key(["World"], breaking=False) == content.variant_key(["World"])
    assert content.variant_key([], breaking=False) == content.variant_key([])


def test_opted_out_subscriber_whose_topics_match_no_section_gets_nothing() -> None:
    arts = [art(1, "quake", 5, category="World", breaking=True)]
    content = select_articles(arts, DigestConfig(), NOW, base_url=BASE)
    assert content.view(content.variant_key(["Gardening"], breaking=False)).is_empty
