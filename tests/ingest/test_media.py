"""Language tags and guesses, image choice: the helpers every reader shares."""

from __future__ import annotations

import pytest

from digest.ingest.media import Image, best_image, language_from_text, language_tag, settle_language, title_from_text


@pytest.mark.parametrize(
    ("value", "tag"),
    [("en-us", "en-US"), ("EN", "en"), ("zh_hant_tw", "zh-Hant-TW"), ("de-DE", "de-DE"), ("null", ""), ("", "")],
)
def test_language_tag_is_bcp47_in_its_usual_case(value: str, tag: str) -> None:
    assert language_tag(value) == tag


@pytest.mark.parametrize("value", ["english please", "en/us", "a", "123"])
def test_language_tag_refuses_what_is_not_a_tag(value: str) -> None:
    assert language_tag(value) == ""


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("لينکدونی | جلسهی امریکن انترپرایز برای تقسیم قومی ایران", "fa"),
        ("بارش کے بعد شہر میں پانی کھڑا ہے", "ur"),
        ("الأمم المتحدة تدعو إلى وقف إطلاق النار", "ar"),
        ("ניצחון ענק למכבי תל אביב ביורוליג", "he"),
        ("シックス・アパートが、スパム対策強化の提供を開始", "ja"),
        ("今天是植树节，动员群众参加义务造林", "zh"),
        ("Harbour cities agree storm pact", ""),
        ("خبر", ""),  # too short to tell
    ],
)
def test_language_from_text_reads_the_script(text: str, language: str) -> None:
    assert language_from_text(text) == language


def test_a_declared_language_contradicted_by_the_script_gives_way() -> None:
    assert settle_language("en-US", "پروژهی هاروارد، قدم دوم و سوم") == "fa"


def test_a_declared_language_of_the_same_script_stays() -> None:
    assert settle_language("ar", "پروژهی هاروارد، قدم دوم و سوم") == "ar"
    assert settle_language("de-DE", "Lecker, lecker und nicht billig") == "de-DE"


def test_largest_declared_image_wins_and_ties_keep_the_first() -> None:
    images = [Image("https://x/a.jpg", 140, 79), Image("https://x/b.jpg", 460, 259), Image("https://x/c.jpg", 460, 259)]
    assert best_image(images) == Image("https://x/b.jpg", 460, 259)


def test_image_of_unknown_size_beats_a_declared_icon() -> None:
    images = [Image("https://x/avatar.png", 30, 30), Image("https://x/photo.jpg")]
    assert best_image(images) == Image("https://x/photo.jpg")


def test_relative_image_is_resolved_and_unusable_ones_are_skipped() -> None:
    images = [Image("javascript:alert(1)", 900, 900), Image("/img/a.jpg", 300, 200)]
    assert best_image(images, "https://news.example/story/1") == Image("https://news.example/img/a.jpg", 300, 200)


def test_title_from_text_is_the_first_sentence_or_words() -> None:
    assert title_from_text("OK, Forgejo is up. Time to migrate.") == "OK, Forgejo is up."
    assert len(title_from_text("word " * 100)) <= 100
