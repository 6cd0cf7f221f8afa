"""Rendering of the daily edition: escaping, strict templates, overrides, inlining, text part."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import lxml.html
import pytest

from digest.compose.inline import inline_css
from digest.compose.render import Markers, Rendered, build_context, make_environment, render_variant
from digest.core.errors import TemplateError
from digest.edition.select import DigestView, EditionContent, Section, Story

ARCHIVE_URL = "https://digest.example.com/archive/daily/2026-11-25"
POSTAL = "Example News Ltd, 1 Example Street, Springfield 12345"
EVIL = "<script>alert(1)</script> & {{ 7*7 }} {% include 'x' %}"
LONG_SUMMARY = (
    "The measure phases out coal heating in cities by 2030 and funds forty thousand heat-pump "
    "installations a year; opponents warn of the costs for rural households."
)
PERSONAL = {
    "greeting": "Hi Ana,",
    "name": "Ana",
    "email": "ana@example.org",
    "unsubscribe_url": "https://digest.example.com/u/tok123",
    "preferences_url": "https://digest.example.com/p/tok123",
}


def make_story(n: int, title: str, category: str, **kw: object) -> Story:
    fields: dict[str, object] = dict(
        id=n,
        title=title,
        link=f"https://news.example.com/{category.lower()}/{n}?ref=digest&n={n}",
        summary=f"Summary of story {n}, one sentence long.",
        source=f"Source {n}",
        category=category,
        author="",
        image_url=None,
        image_alt="",
        published_at=datetime(2026, 11, 25, 6, n, tzinfo=UTC),
        breaking=False,
        priority=0,
        reading_minutes=n,
    )
    fields.update(kw)
    return Story(**fields)  # type: ignore[arg-type]


def edition(*extra: Story) -> EditionContent:
    stories = (
        make_story(
            1,
            "Parliament passes clean-air bill",
            "Politics",
            summary=LONG_SUMMARY,
            image_url="https://img.example.com/parliament.jpg",
            image_alt="The parliament building at dawn",
            image_width=1200,
            image_height=675,
            author="Maria Okafor",
            breaking=True,
        ),
        make_story(2, "Coalition talks stall over budget", "Politics"),
        make_story(3, "Mayor & council agree on night buses", "Politics", summary=LONG_SUMMARY),
        make_story(4, "Central bank holds rates", "Business", breaking=True),
        make_story(5, "Chipmaker to build a new plant", "Business"),
        *extra,
    )
    return EditionContent(
        ranked=stories,
        section_of={s.id: s.category for s in stories},
        section_order=("Politics", "Business"),
    )


def render(view: DigestView | None = None, override_dir: Path | None = None, template: str = "daily") -> Rendered:
    markers = Markers.new()
    context = build_context(
        digest_name="daily",
        digest_title="The Morning Briefing",
        edition_date=date(2026, 11, 25),
        slot="2026-11-25",
        view=edition().view() if view is None else view,
        base_url="https://digest.example.com",
        postal_address=POSTAL,
        markers=markers,
    )
    env = make_environment(override_dir)
    return render_variant(env, template, "{{ digest.title }}", context, markers)


def personalise(text: str, markers: Markers) -> str:
    for name, value in PERSONAL.items():
        text = text.replace(markers.marker(name), value)
    return text


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render()


@pytest.fixture(scope="module")
def inlined(rendered: Rendered) -> str:
    return inline_css(rendered.html)


@pytest.fixture(scope="module")
def doc(inlined: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(inlined)


# --- CSS helpers ----------------------------------------------------------------------------


def top_level_rules(css: str) -> list[tuple[str, str]]:
    """Split a stylesheet into ``(prelude, body)`` pairs of its top-level rules."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    rules, depth, start, prelude = [], 0, 0, ""
    for i, ch in enumerate(css):
        if ch == "{":
            if depth == 0:
                prelude, start = css[start:i].strip(), i + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                rules.append((prelude, css[start:i]))
                start = i + 1
    return rules


def stylesheet(html: str) -> str:
    return "\n".join(s.text or "" for s in lxml.html.document_fromstring(html).iter("style"))


def declarations(block: str) -> list[str]:
    return [d.strip() for body in re.findall(r"\{([^{}]*)\}", block) for d in body.split(";") if d.strip()]


def by_class(root: lxml.html.HtmlElement, name: str) -> list[lxml.html.HtmlElement]:
    return root.xpath(f".//*[contains(concat(' ', normalize-space(@class), ' '), ' {name} ')]")


def text_lines(rendered: Rendered) -> list[str]:
    return personalise(rendered.text, rendered.markers).splitlines()


# --- escaping ---------------------------------------------------------------------------------


def hostile_view() -> DigestView:
    top = make_story(9, EVIL, "World", summary=EVIL, source=EVIL)
    item = make_story(10, EVIL, "World", summary=EVIL, author=EVIL)
    return DigestView(top, (Section("World <b>&</b> {{ 6*7 }}", (item,)),))


def test_html_prints_a_hostile_headline_escaped_and_literal() -> None:
    html = render(hostile_view()).html
    assert "<script" not in html and "<b>" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; {{ 7*7 }} {% include &#39;x&#39; %}"
    assert html.count(escaped) >= 6  # title, preheader, headlines, summaries, source
    assert "World &lt;b&gt;&amp;&lt;/b&gt; {{ 6*7 }}" in html
    assert not re.search(r"\b(49|42)\b", lxml.html.document_fromstring(html).text_content())


def test_text_prints_a_hostile_headline_literally() -> None:
    text = render(hostile_view()).text
    assert EVIL in text
    assert "WORLD <B>&</B> {{ 6*7 }}" in text
    assert "&lt;" not in text and "&amp;" not in text
    assert not re.search(r"\b(49|42)\b", text)


# --- strictness and overrides --------------------------------------------------------------------


def test_undefined_variable_in_override_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "email" / "daily.html"
    path.parent.mkdir()
    path.write_text("<html>\n<body>\n<h1>{{ digset.title }}</h1>\n</body>\n</html>\n")
    with pytest.raises(TemplateError) as info:
        render(override_dir=tmp_path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)
    assert "digset" in str(info.value)


def test_override_template_is_used_before_the_builtin(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "daily.txt").write_text("OVERRIDDEN {{ digest.title }}\n")
    result = render(override_dir=tmp_path)
    assert result.text == "OVERRIDDEN The Morning Briefing\n"
    assert "The Morning Briefing" in result.html  # the HTML part still comes from the built-ins


def test_override_can_extend_the_builtin_base(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "daily.html").write_text(
        '{% extends "email/base.html" %}{% block eyebrow %}Custom eyebrow{% endblock %}'
        '{% block content %}<tr><td class="intro">Custom body</td></tr>{% endblock %}'
    )
    html = render(override_dir=tmp_path).html
    assert "Custom eyebrow" in html and "Custom body" in html
    assert "Your daily briefing" not in html


# --- inlining -------------------------------------------------------------------------------------


def test_every_styled_class_gets_a_style_attribute(rendered: Rendered, doc: lxml.html.HtmlElement) -> None:
    plain_rules = [p for p, _ in top_level_rules(stylesheet(rendered.html)) if not p.startswith("@")]
    styled = {c for p in plain_rules for c in re.findall(r"\.([A-Za-z][\w-]*)", p)}
    assert {"masthead-title", "top-headline", "item-link", "breaking", "footer-link"} <= styled
    checked = 0
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue  # comments
        classes = set((el.get("class") or "").split())
        if classes & styled:
            checked += 1
            assert el.get("style"), f"<{el.tag} class={el.get('class')!r}> has no style attribute"
    assert checked > 30


def test_only_media_rules_stay_in_the_style_block(inlined: str) -> None:
    rules = top_level_rules(stylesheet(inlined))
    assert rules
    assert all(prelude.startswith("@media") for prelude, _ in rules), [p for p, _ in rules]


@pytest.mark.parametrize("query", ["screen", "max-width: 620px", "prefers-color-scheme: dark"])
def test_kept_media_rules_keep_important(inlined: str, query: str) -> None:
    bodies = [body for prelude, body in top_level_rules(stylesheet(inlined)) if query in prelude]
    assert len(bodies) == 1
    decls = declarations(bodies[0])
    assert decls
    assert all(d.endswith("!important") for d in decls), [d for d in decls if "!important" not in d]


def test_head_declares_language_charset_viewport_and_colour_schemes(doc: lxml.html.HtmlElement) -> None:
    assert doc.get("lang") == "en"
    assert doc.xpath("//meta[@charset='utf-8']")
    assert "width=device-width" in doc.xpath("string(//meta[@name='viewport']/@content)")
    assert doc.xpath("string(//meta[@name='color-scheme']/@content)") == "light dark"
    assert doc.xpath("string(//meta[@name='supported-color-schemes']/@content)") == "light dark"
    assert doc.findtext(".//title") == "The Morning Briefing · Wednesday, 25 November 2026"


def test_layout_is_presentation_tables_at_most_600_wide(inlined: str, doc: lxml.html.HtmlElement) -> None:
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    [container] = by_class(doc, "container")
    assert container.get("width") == "100%"
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert '<!--[if mso]><table role="presentation" width="600"' in inlined  # Outlook desktop


# --- content --------------------------------------------------------------------------------------


def test_preheader_is_first_and_hidden(rendered: Rendered, doc: lxml.html.HtmlElement) -> None:
    first = doc.body[0]
    assert "preheader" in first.get("class")
    assert first.text_content().startswith(
        "Parliament passes clean-air bill · Coalition talks stall over budget · Mayor & council"
    )
    style = first.get("style").replace(" ", "")
    for rule in ("display:none", "max-height:0", "overflow:hidden", "mso-hide:all"):
        assert rule in style


def test_masthead_shows_title_and_long_date(doc: lxml.html.HtmlElement) -> None:
    assert doc.findtext(".//h1") == "The Morning Briefing"
    assert "Wednesday, 25 November 2026" in by_class(doc, "masthead")[0].text_content()


def test_view_in_browser_links_to_the_archive(doc: lxml.html.HtmlElement) -> None:
    first_link = doc.xpath("//a")[0]
    assert first_link.text_content() == "View in browser"
    assert first_link.get("href") == ARCHIVE_URL


def test_top_story_has_kicker_linked_headline_and_sized_image(doc: lxml.html.HtmlElement) -> None:
    [top] = by_class(doc, "top")
    assert "Top story" in by_class(top, "kicker")[0].text_content()
    headline = top.xpath(".//h2/a")[0]
    assert headline.text_content() == "Parliament passes clean-air bill"
    assert headline.get("href").startswith("https://news.example.com/politics/1")
    img = top.xpath(".//img")[0]
    assert img.get("src") == "https://img.example.com/parliament.jpg"
    assert img.get("alt") == "The parliament building at dawn"
    assert (img.get("width"), img.get("height")) == ("536", "302")  # not premailer's "100%"/"auto"
    assert "max-width:100%" in img.get("style").replace(" ", "")


def test_breaking_stories_get_a_label_and_others_do_not(doc: lxml.html.HtmlElement) -> None:
    labelled = [el.getparent().text_content() for el in by_class(doc, "breaking") if el.text_content() == "Breaking"]
    assert len(labelled) == 2
    assert any("Central bank holds rates" in t for t in labelled)
    assert not any("Chipmaker" in t for t in labelled)


def test_sections_list_compact_items_with_source_and_reading_time(doc: lxml.html.HtmlElement) -> None:
    headings = [h.text_content() for h in by_class(doc, "section-heading")]
    assert headings == ["Politics", "Business"]
    items = by_class(doc, "item-body")
    assert len(items) == 4
    assert "Source 5 · 5 min read" in items[-1].text_content()
    assert items[1].xpath("string(.//h3/a)") == "Mayor & council agree on night buses"


def test_footer_has_preferences_unsubscribe_and_address(rendered: Rendered) -> None:
    doc = lxml.html.document_fromstring(inline_css(rendered.html))
    [footer] = by_class(doc, "footer")
    links = {a.text_content(): a.get("href") for a in footer.iter("a")}
    assert links["Unsubscribe"] == rendered.markers.marker("unsubscribe_url")
    assert links["Manage preferences"] == rendered.markers.marker("preferences_url")
    assert POSTAL in footer.text_content()
    assert rendered.markers.marker("email") in footer.text_content()


def test_images_have_alt_text(doc: lxml.html.HtmlElement) -> None:
    images = doc.xpath("//img")
    assert images
    assert all((img.get("alt") or "").strip() for img in images)


def test_every_href_and_src_is_absolute_once_personalised(rendered: Rendered) -> None:
    html = personalise(inline_css(rendered.html), rendered.markers)
    doc = lxml.html.document_fromstring(html)
    urls = doc.xpath("//@href | //@src")
    assert len(urls) >= 10
    assert all(re.match(r"https?://[^/\s]+", u) for u in urls), [u for u in urls if "://" not in u]


def test_empty_edition_renders_a_friendly_note() -> None:
    result = render(DigestView(None, ()))
    doc = lxml.html.document_fromstring(inline_css(result.html))
    assert "No new stories since the last edition" in by_class(doc, "empty")[0].text_content()
    assert not by_class(doc, "top") and not by_class(doc, "section")
    assert "No new stories since the last edition" in result.text


# --- the text part ----------------------------------------------------------------------------------


def test_text_has_header_greeting_and_headings(rendered: Rendered) -> None:
    lines = text_lines(rendered)
    assert lines[0] == "The Morning Briefing · Wednesday, 25 November 2026"
    assert lines[1] == "=" * len(lines[0])
    assert "Hi Ana," in lines
    for heading in ("TOP STORY", "POLITICS", "BUSINESS"):
        i = lines.index(heading)
        assert set(lines[i + 1]) == {"-"} and len(lines[i + 1]) == len(heading)


def test_text_numbers_items_within_each_section(rendered: Rendered) -> None:
    numbered = [line for line in text_lines(rendered) if re.match(r"^\d+\. ", line)]
    assert numbered == [
        "1. Coalition talks stall over budget",
        "2. Mayor & council agree on night buses",
        "1. [BREAKING] Central bank holds rates",
        "2. Chipmaker to build a new plant",
    ]


def test_text_item_shows_summary_source_and_link(rendered: Rendered) -> None:
    lines = text_lines(rendered)
    i = lines.index("1. Coalition talks stall over budget")
    assert lines[i + 1 : i + 4] == [
        "   Summary of story 2, one sentence long.",
        "   Source 2 · 2 min read",
        "   https://news.example.com/politics/2?ref=digest&n=2",
    ]


def test_text_puts_every_link_on_its_own_line(rendered: Rendered) -> None:
    stripped = [line.strip() for line in text_lines(rendered)]
    for n, category in [(1, "politics"), (2, "politics"), (3, "politics"), (4, "business"), (5, "business")]:
        assert f"https://news.example.com/{category}/{n}?ref=digest&n={n}" in stripped
    assert any(line.endswith(PERSONAL["unsubscribe_url"]) for line in stripped)
    assert any(line.endswith(PERSONAL["preferences_url"]) for line in stripped)
    assert POSTAL in stripped


def test_text_top_story_block_has_headline_wrapped_summary_and_link(rendered: Rendered) -> None:
    lines = text_lines(rendered)
    block = lines[lines.index("TOP STORY") : lines.index("POLITICS")]
    summary = textwrap.fill(LONG_SUMMARY, 72).splitlines()
    assert len(summary) > 1
    i = block.index("Parliament passes clean-air bill")
    assert block[i - 1] == "[BREAKING]"
    assert block[i + 2 : i + 2 + len(summary)] == summary
    assert "Source 1 · By Maria Okafor · 1 min read" in block
    assert "https://news.example.com/politics/1?ref=digest&n=1" in block


def test_text_lines_fit_78_columns_except_urls() -> None:
    long_title = "A very long headline about the budget " * 4
    result = render(edition(make_story(6, long_title.strip(), "Business", summary=LONG_SUMMARY * 2)).view())
    for line in text_lines(result):
        assert len(line) <= 78 or re.search(r"https?://", line), line


# --- issue 11: subject, images, direction, briefing look ---------------------------------------


def render_with(stories: tuple[Story, ...], subject: str = "{{ digest.title }}", language: str = "en") -> Rendered:
    content = EditionContent(
        ranked=stories,
        section_of={s.id: s.category for s in stories},
        section_order=tuple(dict.fromkeys(s.category for s in stories)),
    )
    markers = Markers.new()
    context = build_context(
        digest_name="daily", digest_title="The Morning Briefing", edition_date=date(2026, 11, 25),
        slot="2026-11-25", view=content.view(), base_url="https://digest.example.com",
        postal_address=POSTAL, markers=markers, language=language,
    )  # fmt: skip
    return render_variant(make_environment(), "daily", subject, context, markers)


def doc_of(result: Rendered) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(inline_css(result.html))


def test_subject_is_not_html_escaped() -> None:
    top = make_story(1, "Faith & Joy! l'état <b>", "World")
    result = render_with((top,), subject="{{ digest.title }}: {{ top_story.title }}")
    assert result.subject == "The Morning Briefing: Faith & Joy! l'état <b>"


def test_subject_stays_one_line() -> None:
    top = make_story(1, "Line one\nline two\r\n", "World")
    assert render_with((top,), subject="{{ top_story.title }}\n").subject == "Line one line two"


def image_of(result: Rendered, story_id: int) -> lxml.html.HtmlElement | None:
    found = doc_of(result).xpath(f"//a[contains(@href, '/{story_id}?')]/img")
    return found[0] if found else None


def hero_story(**kw: object) -> Story:
    return make_story(1, "Top", "World", image_url="https://img.example.com/a.jpg", **kw)


def test_large_image_becomes_a_hero_at_the_column_width() -> None:
    img = image_of(render_with((hero_story(image_width=1200, image_height=800),)), 1)
    assert img is not None and "hero-img" in img.get("class")
    assert (img.get("width"), img.get("height")) == ("536", "357")


def test_image_narrower_than_the_column_is_a_side_image_not_a_stretched_hero() -> None:
    img = image_of(render_with((hero_story(image_width=460, image_height=300),)), 1)
    assert img is not None and "side-img" in img.get("class")
    assert (img.get("width"), img.get("height")) == ("120", "78")


def test_small_image_is_never_upscaled() -> None:
    img = image_of(render_with((hero_story(image_width=110, image_height=110),)), 1)
    assert img is not None and img.get("width") == "110"


def test_avatar_sized_image_is_not_shown() -> None:
    assert image_of(render_with((hero_story(image_width=30, image_height=30),)), 1) is None
    assert image_of(render_with((hero_story(image_width=600, image_height=20),)), 1) is None


def test_image_of_unknown_size_is_a_side_image_kept_at_its_own_size() -> None:
    img = image_of(render_with((hero_story(),)), 1)
    assert img is not None and img.get("class") == "side-img side-img-auto"
    assert img.get("width") is None and img.get("height") is None  # no attribute to upscale it
    assert "max-width:120px" in img.get("style").replace(" ", "")


def test_secondary_story_shows_a_small_image() -> None:
    second = make_story(2, "Second", "World", image_url="https://img.example.com/b.jpg", image_width=800,
                        image_height=600)  # fmt: skip
    img = image_of(render_with((make_story(1, "Top", "World"), second)), 2)
    assert img is not None and "side-img" in img.get("class") and img.get("width") == "120"


def test_edition_language_comes_from_the_digest_config() -> None:
    assert doc_of(render_with((make_story(1, "x", "World"),), language="de")).get("lang") == "de"


def test_right_to_left_edition_sets_the_page_direction() -> None:
    assert doc_of(render_with((make_story(1, "x", "World"),), language="ur")).get("dir") == "rtl"


def test_each_story_carries_its_language_and_automatic_direction() -> None:
    urdu = make_story(2, "پاکستان میں بارش", "World", language="ur", summary="شدید بارش کی پیش گوئی")
    doc = doc_of(render_with((make_story(1, "Top", "World"), urdu)))
    headline = doc.xpath("//h3[.//a[contains(@href, '/2?')]]")[0]
    assert headline.get("dir") == "auto"
    assert headline.getparent().getparent().getparent().getparent().get("lang") == "ur"  # td.item-body
    assert doc.xpath("//p[@class='item-summary']")[0].get("dir") == "auto"


def test_meta_line_isolates_each_field_from_bidi_reordering() -> None:
    urdu = make_story(2, "خبر", "World", source="جنگ", reading_minutes=4)
    doc = doc_of(render_with((make_story(1, "Top", "World"), urdu)))
    meta = by_class(doc, "item-body")[0].xpath(".//p[contains(@class, 'meta')]")[0]
    assert [(s.get("dir"), s.text_content()) for s in meta.iter("span")] == [("auto", "جنگ"), ("auto", "4 min read")]


def test_breaking_label_does_not_decide_the_headline_direction() -> None:
    urdu = make_story(2, "خبر", "World", breaking=True)
    doc = doc_of(render_with((make_story(1, "Top", "World"), urdu)))
    [label] = [el for el in by_class(doc, "breaking") if el.getparent().tag == "h3"]
    assert label.get("dir") == "ltr"  # dir="auto" of the headline skips elements with their own dir


def test_overview_lists_the_top_headlines_in_order() -> None:
    stories = tuple(make_story(n, f"Headline {n}", "World") for n in range(1, 8))
    doc = doc_of(render_with(stories))
    [overview] = by_class(doc, "overview")
    assert "In today’s edition" in overview.text_content()
    assert [a.text_content() for a in overview.iter("a")] == [f"Headline {n}" for n in range(1, 6)]


def test_text_part_has_the_overview_too() -> None:
    stories = tuple(make_story(n, f"Headline {n}", "World") for n in range(1, 5))
    lines = text_lines(render_with(stories))
    i = lines.index("In today's edition:")
    assert lines[i + 1 : i + 5] == ["- Headline 1", "- Headline 2", "- Headline 3", "- Headline 4"]


def test_short_edition_has_no_overview() -> None:
    stories = tuple(make_story(n, f"Headline {n}", "World") for n in range(1, 4))
    assert not by_class(doc_of(render_with(stories)), "overview")


def test_unknown_reading_time_is_not_shown() -> None:
    stories = (make_story(1, "Top", "World", reading_minutes=None), make_story(2, "Two", "World", reading_minutes=None))
    result = render_with(stories)
    assert "min read" not in result.html and "min read" not in result.text
    assert "of reading in all" not in result.html


def test_reading_time_total_counts_the_known_ones() -> None:
    stories = (make_story(1, "Top", "World", reading_minutes=None), make_story(2, "Two", "World", reading_minutes=4))
    assert "about 4 minutes of reading in all" in render_with(stories).html


def test_missing_source_leaves_no_stray_separator() -> None:
    stories = (make_story(1, "Top", "World", source="", reading_minutes=3), make_story(2, "Two", "World", source=""))
    doc = doc_of(render_with(stories))
    metas = [m.text_content() for m in by_class(doc, "meta")]
    assert metas == ["3 min read", "2 min read"]


def test_meta_line_is_left_out_when_nothing_is_known() -> None:
    stories = (make_story(1, "Top", "World"), make_story(2, "Two", "World", source="", reading_minutes=None))
    assert len(by_class(doc_of(render_with(stories)), "meta")) == 1


def test_thin_sections_are_folded_into_one_brief_section_naming_each_topic() -> None:
    stories = (
        make_story(1, "Top", "World"),
        make_story(2, "Sci", "Science"),
        make_story(3, "Biz", "Business"),
        make_story(4, "Art", "Culture"),
    )
    doc = doc_of(render_with(stories))
    assert [h.text_content() for h in by_class(doc, "section-heading")] == ["In brief"]
    assert [m.text_content() for m in by_class(doc, "meta")][1:] == [
        "Science · Source 2 · 2 min read",
        "Business · Source 3 · 3 min read",
        "Culture · Source 4 · 4 min read",
    ]


def relative_luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def style_value(el: lxml.html.HtmlElement, prop: str) -> str:
    m = re.search(rf"(?:^|;)\s*{prop}\s*:\s*(#[0-9a-fA-F]{{6}})", el.get("style") or "")
    assert m, f"<{el.tag} class={el.get('class')!r}> has no {prop}"
    return m.group(1)


def test_footer_text_meets_wcag_aa_contrast(doc: lxml.html.HtmlElement) -> None:
    [wrapper] = by_class(doc, "wrapper")
    background = style_value(wrapper, "background-color")
    [footer] = by_class(doc, "footer")
    texts = [el for el in footer.iter("p", "a") if el.text_content().strip()]
    assert len(texts) >= 4
    for el in texts:
        ratio = contrast(style_value(el, "color"), background)
        assert ratio >= 4.5, f"{el.get('class')}: {ratio:.2f}:1"


def test_meta_text_meets_wcag_aa_contrast(doc: lxml.html.HtmlElement) -> None:
    for el in by_class(doc, "meta"):
        assert contrast(style_value(el, "color"), "#ffffff") >= 4.5


def test_masthead_shows_the_name_once(doc: lxml.html.HtmlElement) -> None:
    [masthead] = by_class(doc, "masthead")
    assert masthead.text_content().count("Briefing") == 1


def test_text_part_wraps_wide_characters_by_display_width() -> None:
    import unicodedata

    title = "北京市政府宣布新的空气质量改善计划" * 6
    result = render_with((make_story(1, title, "World", summary=title * 2),))

    def columns(line: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)

    lines = [line for line in text_lines(result) if "北京" in line]
    assert len(lines) > 4
    assert max(columns(line) for line in lines) <= 78


def test_template_text_keeps_its_own_direction_in_a_right_to_left_edition() -> None:
    doc = doc_of(render_with((make_story(1, "خبر", "World", language="ur"),), language="ur"))
    for name in ("greeting", "intro-text", "footer-text", "footer-address"):
        assert all(el.get("dir") == "auto" for el in by_class(doc, name)), name
    assert by_class(doc, "button")[0].get("dir") == "ltr"
