"""Lead-ins: the top stories open with a bold line, the editor's or the summary's first sentence."""

from __future__ import annotations

from datetime import date

import lxml.html

from digest.compose.render import Markers, Rendered, build_context, make_environment, render_variant
from digest.edition.select import DigestView, EditionContent
from tests.compose.test_message import NOW, html_of, parse, prepared, recipient, text_of
from tests.compose.test_render import POSTAL, make_story

SUMMARY = "Dr. Mei Chen's team logged 31 new objects. None of them is a threat to Earth."
FIRST = "Dr. Mei Chen's team logged 31 new objects."
REST = "None of them is a threat to Earth."


def view(*stories: object) -> DigestView:
    ranked = tuple(stories)
    content = EditionContent(
        ranked=ranked,  # type: ignore[arg-type]
        section_of={s.id: s.category for s in ranked},  # type: ignore[attr-defined]
        section_order=("World",),
    )
    return content.view()


def render(v: DigestView, lead_ins: int = 3) -> Rendered:
    markers = Markers.new()
    context = build_context(
        digest_name="daily",
        digest_title="The Briefing",
        edition_date=date(2026, 11, 25),
        slot="2026-11-25",
        view=v,
        base_url="https://digest.example.com",
        postal_address=POSTAL,
        markers=markers,
        lead_in_count=lead_ins,
    )
    return render_variant(make_environment(), "daily", "{{ digest.title }}", context, markers)


def leads(r: Rendered) -> list[str]:
    return [e.text_content() for e in lxml.html.document_fromstring(r.html).xpath("//strong[@class='lead-in']")]


def paragraph_of(r: Rendered, lead: str) -> lxml.html.HtmlElement:
    (strong,) = lxml.html.document_fromstring(r.html).xpath(f"//strong[.={lead!r}]")
    return strong.getparent()


def stories(n: int, **kw: object) -> list[object]:
    return [make_story(i, f"Story {i}", "World", summary=SUMMARY, **kw) for i in range(1, n + 1)]


def test_the_editors_lead_wins_and_the_whole_summary_follows() -> None:
    r = render(view(make_story(1, "Asteroids mapped", "World", summary=SUMMARY, lead="Why it matters: none hits.")))
    assert leads(r) == ["Why it matters: none hits."]
    assert paragraph_of(r, "Why it matters: none hits.").text_content() == f"Why it matters: none hits. {SUMMARY}"


def test_without_one_the_first_sentence_is_the_lead_and_is_not_repeated() -> None:
    r = render(view(make_story(1, "Asteroids mapped", "World", summary=SUMMARY)))
    assert leads(r) == [FIRST]  # "Dr." does not end the sentence
    assert paragraph_of(r, FIRST).text_content() == f"{FIRST} {REST}"
    assert lxml.html.document_fromstring(r.html).text_content().count("31 new objects") == 1
    assert r.text.count("31 new objects") == 1


def test_a_summary_of_one_sentence_gets_no_automatic_lead_in() -> None:
    r = render(view(make_story(1, "Asteroids mapped", "World", summary=FIRST)))
    assert leads(r) == []
    assert lxml.html.document_fromstring(r.html).xpath("//p[@class='top-summary']")[0].text_content() == FIRST


def test_the_top_story_and_the_next_ones_up_to_lead_ins_get_one() -> None:
    r = render(view(*stories(5)), lead_ins=3)
    doc = lxml.html.document_fromstring(r.html)
    top = doc.xpath("//p[@class='top-summary']/strong[@class='lead-in']")
    items = [p.find("strong") is not None for p in doc.xpath("//p[@class='item-summary']")]
    assert (len(top), items) == (1, [True, True, False, False])


def test_lead_ins_0_turns_them_off() -> None:
    r = render(view(*stories(3, lead="Why it matters.")), lead_ins=0)
    assert leads(r) == []
    assert "Why it matters" not in r.html and "Why it matters" not in r.text
    top = lxml.html.document_fromstring(r.html).xpath("//p[@class='top-summary']")[0]
    assert top.text_content() == SUMMARY  # the top story's whole summary, as before


def test_the_setting_reaches_the_sent_message() -> None:
    on = parse(prepared().fill(recipient(), NOW))
    off = parse(prepared(lead_ins=0).fill(recipient(), NOW))
    assert 'class="lead-in"' in html_of(on) and "*Why it matters" in text_of(on)
    assert 'class="lead-in"' not in html_of(off) and "*" not in text_of(off)


def test_a_right_to_left_lead_sets_the_direction_of_its_paragraph() -> None:
    summary = "یہ کراچی کی بندرگاہ کی خبر ہے۔ جہاز کل صبح روانہ ہوں گے۔"
    r = render(view(make_story(1, "کراچی کی بندرگاہ", "World", summary=summary, language="ur")))
    paragraph = paragraph_of(r, "یہ کراچی کی بندرگاہ کی خبر ہے۔")
    (strong,) = paragraph.findall("strong")
    # No dir on the bold part: dir="auto" of the paragraph must see its first (Urdu) letters.
    assert (paragraph.get("dir"), strong.get("dir")) == ("auto", None)
    assert paragraph.xpath("ancestor::td[@lang][1]/@lang") == ["ur"]
    assert paragraph.text_content().endswith("جہاز کل صبح روانہ ہوں گے۔")


def test_chinese_and_arabic_sentences_end_at_their_own_marks() -> None:
    zh = make_story(1, "北京", "World", summary="北京今天下雨。明天会放晴。", language="zh")
    ar = make_story(2, "غزة", "World", summary="هل تمطر غدا؟ نعم، بعد الظهر.", language="ar")
    assert leads(render(view(zh, ar))) == ["北京今天下雨。", "هل تمطر غدا؟"]


def test_the_text_part_marks_the_lead_on_its_own_lines_within_72_columns() -> None:
    long_lead = "Why it matters: " + "the coast gets one warning system " * 3
    r = render(view(make_story(1, "Storm pact", "World", summary=SUMMARY, lead=long_lead.strip()), *stories(2)[1:]))
    lines = r.text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("*Why it matters"))
    end = next(i for i in range(start, len(lines)) if lines[i].endswith("*"))
    assert end > start and all(len(line) <= 72 for line in lines[start : end + 1])
    assert lines[end + 1] == "Dr. Mei Chen's team logged 31 new objects. None of them is a threat to"
    assert "   *Dr. Mei Chen's team logged 31 new objects.*" in lines  # the item's, indented


def test_a_hostile_lead_is_printed_literally() -> None:
    evil = "<script>alert(1)</script> & {{ 7*7 }}"
    r = render(view(make_story(1, "T", "World", summary=SUMMARY, lead=evil)))
    assert leads(r) == [evil]
    assert "<script>alert" not in r.html and evil in r.text
