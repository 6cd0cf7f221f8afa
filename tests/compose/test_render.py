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


def test_layout_is_presentation_tables_600_wide(doc: lxml.html.HtmlElement) -> None:
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    [container] = by_class(doc, "container")
    assert container.get("width") == "600"
    assert "max-width:600px" in container.get("style").replace(" ", "")


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
    assert img.get("width").isdigit() and img.get("height").isdigit()  # not premailer's "100%"/"auto"
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
