"""Every reader's language: catalogs complete, editions in German and Arabic, one render per (topics, locale)."""

from __future__ import annotations

import email
from datetime import date
from email import policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from digest.compose.i18n import available_locales, catalog_dirs
from digest.compose.message import Recipient
from digest.compose.render import builtin_templates_dir, for_locale, make_environment
from digest.compose.variants import Variants, make_variants
from digest.edition.select import select_articles
from tests.compose.test_message import NOW, settings
from tests.compose.test_render import make_story
from tests.edition.test_select import art

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ("en", "de", "fr", "es", "ar")


def template_messages() -> dict[str, tuple[str, ...]]:
    """What `make messages` extracts (babel.cfg): msgid -> all its forms."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[str, tuple[str, ...]] = {}
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        forms = message if isinstance(message, tuple) else (message,)
        found[forms[0]] = forms
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_every_catalog_translates_every_template_string(locale: str) -> None:
    extracted = template_messages()
    assert "In today’s edition" in extracted and "Hi %(name)s," in extracted  # templates and Python alike
    with (builtin_templates_dir() / "locale" / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    missing, untranslated = [], []
    for msgid, forms in extracted.items():
        entry = catalog.get(msgid)
        if entry is None:
            missing.append(msgid)
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy or not all(strings) or (len(forms) > 1 and len(strings) != catalog.num_plurals):
            untranslated.append(msgid)
    assert not missing, f"{locale}: not in the catalog (run `make messages`): {missing}"
    assert not untranslated, f"{locale}: untranslated or fuzzy: {untranslated}"
    # Babel's checkers: every translation keeps the placeholders of its msgid.
    problems = [(m.id, [str(e) for e in errs]) for m, errs in catalog.check()]
    assert not problems, problems


def test_languages_with_a_catalog_are_offered() -> None:
    assert set(LOCALES) <= set(available_locales(catalog_dirs(builtin_templates_dir(), None)))


def variants_of(**digest: object) -> Variants:
    s = settings(**digest)
    arts = [
        art(1, "Harbour cities agree storm warning pact", 20, breaking=True, source="Harbour Times"),
        art(2, "Volunteers map new asteroids", 60, category="Science", source="Lab Notes"),
        art(3, "Rail tunnel reopens after repairs", 90, source="Daily Ledger"),
        art(4, "Ports reopen after the storm", 95, source="Daily Ledger"),
    ]
    content = select_articles(arts, s.digests["daily"], NOW, base_url=s.base_url)
    return make_variants(s, "daily", "2026-11-25", NOW, content)


def reader(name: str = "Ana Lima") -> Recipient:
    return Recipient(
        email="ana@example.org",
        name=name,
        subscriber_id=42,
        unsubscribe_url="https://news.example.com/unsubscribe/TOKEN42",
        preferences_url="https://news.example.com/preferences/PREF42",
        unsubscribe_mailto="mailto:unsubscribe@news.example.com?subject=unsubscribe%20TOKEN42",
    )


def copy_for(variants: Variants, locale: str | None, name: str = "Ana Lima") -> EmailMessage:
    prepared = variants.for_topics((), True, locale)
    assert prepared is not None
    return email.message_from_bytes(prepared.fill(reader(name), NOW), policy=policy.default)  # type: ignore[return-value]


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


def test_a_german_reader_gets_german_wording_dates_and_lang() -> None:
    msg = copy_for(variants_of(), "de")
    text, html = parts(msg)
    doc = lxml.html.fromstring(html.encode())
    assert doc.get("lang") == "de" and doc.get("dir") == "ltr"
    assert "Hallo Ana," in text and "Hallo Ana," in html
    assert "Mittwoch, 25. November 2026" in text
    assert "Hier sind die 4 Meldungen, die sich heute lohnen" in " ".join(text.split())
    assert "In dieser Ausgabe" in html and "Topmeldung" in html and "Eilmeldung" in html
    assert "Einstellungen verwalten" in html and "Abbestellen" in html and "Im Browser ansehen" in html
    # Article text stays as published.
    assert "Harbour cities agree storm warning pact" in html
    assert "Manage preferences" not in html and "Hello" not in text


def test_an_arabic_reader_gets_a_right_to_left_copy() -> None:
    msg = copy_for(variants_of(), "ar", name="")
    text, html = parts(msg)
    doc = lxml.html.fromstring(html.encode())
    assert (doc.get("lang"), doc.get("dir")) == ("ar", "rtl")
    assert doc.body.get("dir") == "rtl"
    assert "مرحبًا،" in text
    assert "الأربعاء، 25 نوفمبر 2026" in text
    assert "إدارة التفضيلات" in html and "الخبر الرئيسي" in html
    # Mirrored: "View in browser" sits at the line's end (the left), the button points left.
    [topbar] = doc.find_class("topbar")
    assert "text-align:left" in topbar.get("style").replace(" ", "")
    [button] = doc.find_class("button")
    assert button.get("dir") == "rtl" and button.text_content().endswith("←")


def test_a_reader_without_locale_reads_the_digest_language() -> None:
    _, html = parts(copy_for(variants_of(language="fr"), None))
    assert lxml.html.fromstring(html.encode()).get("lang") == "fr"
    assert "Gérer mes préférences" in html and "mercredi 25 novembre 2026" in html


def test_a_locale_without_catalog_gets_its_dates_and_english_words() -> None:
    text, html = parts(copy_for(variants_of(), "it"))
    assert "mercoledì 25 novembre 2026" in text
    assert "Manage preferences" in html and lxml.html.fromstring(html.encode()).get("lang") == "it"


def test_numbers_follow_the_locale() -> None:
    env = make_environment()
    assert for_locale(env, "de").filters["number"](1234.5) == "1.234,5"
    assert env.filters["number"](1234.5) == "1,234.5"
    assert for_locale(env, "de") is for_locale(for_locale(env, "fr"), "de")  # one environment per language


def test_the_meta_line_is_localised() -> None:
    story = make_story(1, "Titel", "World", author="Maria Okafor", reading_minutes=3)
    meta = for_locale(make_environment(), "de").globals["story_meta"]
    assert meta(story, author=True) == ["Source 1", "Von Maria Okafor", "3 Min. Lesezeit"]


def test_one_render_per_topics_and_locale() -> None:
    v = variants_of()
    asked = [
        ((), "de"),
        ((), "de"),
        ((), "ar"),
        (("Science",), "de"),
        (("Science",), "de"),
        ((), None),
        ((), "en"),  # the digest's language: the same variant as None
    ]
    got = [v.for_topics(topics, True, locale) for topics, locale in asked]
    assert v.prepared_count == 4
    assert got[0] is got[1] and got[3] is got[4] and got[5] is got[6]
    assert got[0] is not got[2] and got[0] is not got[3]


def test_the_web_copy_links_the_feeds() -> None:
    doc = lxml.html.fromstring(variants_of().web_copy().encode())
    links = {(el.get("type"), el.get("href")) for el in doc.iter("link") if el.get("rel") == "alternate"}
    assert links == {
        ("application/atom+xml", "https://news.example.com/archive/daily.atom"),
        ("application/feed+json", "https://news.example.com/archive/daily.json"),
    }


def test_longdate_keeps_the_english_house_style() -> None:
    assert make_environment().filters["longdate"](date(2026, 11, 25)) == "Wednesday, 25 November 2026"
