"""The look of the daily edition: render a realistic edition and screenshot it in Chromium.

The screenshots land in ``test-artifacts/`` (git-ignored) for a human to look at:
``email-800.png`` (desktop, with margins), ``email-600.png`` (the 600 px column),
``email-375.png`` (phone) and ``email-dark.png``
(prefers-color-scheme: dark). No network is touched: the hero image is a ``data:`` URI
and Chromium runs with background networking disabled.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.compose.inline import inline_css
from digest.compose.render import Markers, build_context, make_environment, render_variant
from digest.core.settings import DigestConfig
from digest.edition.select import EditionContent, Story

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary at /usr/bin/chromium or on PATH (apt install chromium)"
)


# --- a realistic edition ---------------------------------------------------------------


def hero_png(width: int = 536, height: int = 302) -> bytes:
    """A small synthetic 'photo' (dawn sky, sun, two hills) as PNG bytes, no Pillow needed."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type: none
        t = y / height
        for x in range(width):
            sky = (int(250 - 120 * t), int(190 - 60 * t), int(120 + 60 * t))
            d = math.hypot(x - width * 0.68, y - height * 0.45)
            if d < height * 0.16:
                px = (255, 236, 170)
            else:
                glow = max(0.0, 1 - d / (height * 0.9))
                px = tuple(min(255, int(c + 60 * glow)) for c in sky)
            far = height * (0.70 + 0.06 * math.sin(x / width * 5.0))
            near = height * (0.80 + 0.08 * math.sin(x / width * 3.0 + 2.0))
            if y > near:
                px = (34, 58, 64)
            elif y > far:
                px = (70, 98, 104)
            row.extend(px)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def story(n: int, title: str, summary: str, source: str, category: str, **kw: object) -> Story:
    fields: dict[str, object] = dict(
        id=n,
        title=title,
        link=f"https://news.example.com/{category.lower()}/{n}",
        summary=summary,
        source=source,
        category=category,
        author="",
        image_url=None,
        image_alt="",
        published_at=datetime(2026, 11, 25, 6, n, tzinfo=UTC),
        breaking=False,
        priority=0,
        reading_minutes=3,
    )
    fields.update(kw)
    return Story(**fields)  # type: ignore[arg-type]


def realistic_edition() -> EditionContent:
    image = "data:image/png;base64," + base64.b64encode(hero_png()).decode()
    stories = (
        story(
            1,
            "Parliament passes sweeping clean-air bill after all-night session",
            "The measure phases out coal heating in cities by 2030 and funds 40,000 heat-pump "
            "installations a year. Opponents warn of costs for rural households; the upper house "
            "votes next week.",
            "The Capital Ledger",
            "Politics",
            author="Maria Okafor",
            image_url=image,
            image_alt="Sunrise over the hills outside the capital",
            image_width=536,
            image_height=302,
            breaking=True,
            priority=9,
            reading_minutes=6,
        ),
        story(
            2,
            "Coalition talks stall over defence budget",
            "Negotiators broke off after midnight without agreement on the 2 % target; both "
            "sides say they will meet again on Friday.",
            "Reuters",
            "Politics",
            reading_minutes=4,
        ),
        story(
            3,
            "Mayor & council agree on night-bus network",
            "Twelve new routes start in March, running every 20 minutes between midnight and 5 a.m.",
            "City Desk",
            "Politics",
            reading_minutes=2,
        ),
        story(
            4,
            "Central bank holds rates, signals cut in spring",
            "Inflation has eased to 2.4 %, but the bank wants to see wage growth cool before it "
            "moves; markets now price a March cut at 70 %.",
            "Financial Wire",
            "Business",
            breaking=True,
            reading_minutes=5,
        ),
        story(
            5,
            "Chipmaker to build €4bn plant in the north",
            "The factory will employ 2,000 people when it opens in 2029 and make chips for cars "
            "and industrial machinery.",
            "Tech & Trade",
            "Business",
            reading_minutes=3,
        ),
        story(
            6,
            "Supermarkets trial refill stations for pasta and rice",
            "Shoppers bring their own containers; the pilot runs in 30 stores for six months.",
            "Retail Weekly",
            "Business",
            reading_minutes=2,
        ),
        story(
            7,
            "Astronomers spot water vapour on a temperate rocky exoplanet",
            "The planet, 40 light years away, orbits within its star's habitable zone; the "
            "finding still needs confirmation from a second instrument.",
            "Science Daily",
            "Science",
            reading_minutes=4,
        ),
        story(
            8,
            "Why the first frost came three weeks late this year",
            "Meteorologists point to an unusually warm North Atlantic and a stalled jet stream.",
            "Weather Desk",
            "Science",
            reading_minutes=3,
        ),
    )
    return EditionContent(
        ranked=stories,
        section_of={s.id: s.category for s in stories},
        section_order=("Politics", "Business", "Science"),
    )


def render_edition_html() -> str:
    markers = Markers.new()
    context = build_context(
        digest_name="daily",
        digest_title="The Morning Briefing",
        edition_date=date(2026, 11, 25),
        slot="2026-11-25",
        view=realistic_edition().view(),
        base_url="https://digest.example.com",
        postal_address="Example News Ltd, 1 Example Street, Springfield 12345",
        markers=markers,
    )
    rendered = render_variant(make_environment(), "daily", "{{ digest.title }}", context, markers)
    html = inline_css(rendered.html)
    personal = {
        "greeting": "Hi Ana,",
        "name": "Ana",
        "email": "ana@example.org",
        "unsubscribe_url": "https://digest.example.com/u/abc123",
        "preferences_url": "https://digest.example.com/p/abc123",
    }
    for name, value in personal.items():
        html = html.replace(markers.marker(name), value)
    return html


# --- screenshots ---------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def screenshot(page: Path, png: Path, width: int, height: int, tmp: Path, *extra: str) -> None:
    assert CHROMIUM is not None
    png.unlink(missing_ok=True)
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / ('profile-' + png.stem)}",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        *extra,
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert png.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def email_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "email.html"
    page.write_text(render_edition_html(), encoding="utf-8")
    return page


@needs_chromium
@pytest.mark.parametrize(("width", "height"), [(800, 2200), (600, 2200), (375, 3000)])
def test_screenshot_widths(email_page: Path, tmp_path: Path, width: int, height: int) -> None:
    png = ARTIFACTS / f"email-{width}.png"
    screenshot(email_page, png, width, height, tmp_path)
    assert png.stat().st_size > 10_000
    assert png_size(png)[0] == width


@needs_chromium
def test_screenshot_dark_mode(email_page: Path, tmp_path: Path) -> None:
    png = ARTIFACTS / "email-dark.png"
    screenshot(email_page, png, 600, 2200, tmp_path, "--force-dark-mode", "--blink-settings=preferredColorScheme=0")
    assert png.stat().st_size > 10_000
    assert png_size(png)[0] == 600


# --- issue 11: a right-to-left edition, an image-heavy edition, a phone without <style> ----------


def png_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(hero_png(width, height)).decode()


def urdu_edition() -> EditionContent:
    ur = {"language": "ur"}
    stories = (
        story(1, "کراچی میں شدید بارش، 24 گھنٹوں میں 120 ملی میٹر ریکارڈ", "محکمہ موسمیات کے مطابق "
              "بارش کا سلسلہ جمعرات تک جاری رہے گا؛ شہر کے کئی علاقوں میں بجلی معطل ہے۔", "روزنامہ جنگ",
              "پاکستان", author="عائشہ خان", breaking=True, reading_minutes=4, lead="بارش جمعرات تک جاری رہے گی۔",
              **ur),
        story(2, "اسٹیٹ بینک نے شرح سود 12 فیصد پر برقرار رکھی", "مرکزی بینک کا کہنا ہے کہ مہنگائی "
              "میں کمی کا رجحان برقرار ہے۔ اگلا اجلاس جنوری میں ہوگا۔", "ڈان نیوز", "کاروبار", reading_minutes=3, **ur),
        story(3, "پی ایس ایل 10: لاہور قلندرز نے فائنل جیت لیا", "قلندرز نے آخری اوور میں 8 رنز "
              "بنا کر میچ اپنے نام کیا۔", "جیو", "کھیل", reading_minutes=None, **ur),
        story(4, "Markets rally as oil falls below $70", "An English story inside the Urdu edition. "
              "It keeps its own direction.", "Reuters", "کاروبار", reading_minutes=2, language="en"),
        story(5, "سائنسدانوں نے نیا سیارچہ دریافت کر لیا", "یہ سیارچہ زمین سے 3 کروڑ کلومیٹر دور ہے۔",
              "", "سائنس", reading_minutes=None, **ur),
    )  # fmt: skip
    return EditionContent(
        ranked=stories,
        section_of={s.id: s.category for s in stories},
        section_order=("پاکستان", "کاروبار", "کھیل", "سائنس"),
    )


def image_edition() -> EditionContent:
    stories = (
        story(1, "Harbour opens new ferry terminal", "A 640 px photo: wide enough for the hero slot.",
              "Harbour Times", "City", image_url=png_uri(640, 360), image_width=640, image_height=360,
              image_alt="The new terminal at dawn", reading_minutes=5),
        story(2, "Rail line reopens after repairs", "A 240 px photo: a side image at 120 px.",
              "Daily Ledger", "City", image_url=png_uri(240, 160), image_width=240, image_height=160,
              reading_minutes=3),
        story(3, "Forum post: my first sourdough", "A 30x30 avatar: not shown at all.", "Bakers' Forum",
              "City", image_url=png_uri(30, 30), image_width=30, image_height=30, reading_minutes=None),
        story(4, "Chipmaker plans northern plant", "An image of unknown size (really 60 px): kept at its own "
              "size, never stretched.", "Tech & Trade", "Business", image_url=png_uri(60, 60),
              reading_minutes=2),
        story(5, "Lenders tighten credit", "A 460 px photo: a side image, not a stretched hero.",
              "Financial Wire", "Business", image_url=png_uri(460, 300), image_width=460, image_height=300,
              reading_minutes=4),
        story(6, "A very long URL in a summary", "https://example.com/" + "a-very-long-path-segment-" * 6,
              "Link Blog", "Business", reading_minutes=None),
    )  # fmt: skip
    return EditionContent(
        ranked=stories, section_of={s.id: s.category for s in stories}, section_order=("City", "Business")
    )


def render_page(content: EditionContent, language: str = "en", strip_style: bool = False) -> str:
    markers = Markers.new()
    context = build_context(
        digest_name="daily", digest_title="The Morning Briefing", edition_date=date(2026, 11, 25),
        slot="2026-11-25", view=content.view(), base_url="https://digest.example.com",
        postal_address="Example News Ltd, 1 Example Street, Springfield 12345", markers=markers, language=language,
        lead_in_count=DigestConfig().lead_ins,
    )  # fmt: skip
    html = inline_css(render_variant(make_environment(), "daily", "{{ digest.title }}", context, markers).html)
    for name in ("greeting", "name", "email", "unsubscribe_url", "preferences_url"):
        value = {"greeting": "Hi Ana,", "email": "ana@example.org"}.get(name, "https://digest.example.com/u/x")
        html = html.replace(markers.marker(name), value)
    if strip_style:  # as Gmail's non-Gmail-account apps and some webmails do
        html = re.sub(r"<style[^>]*>.*?</style>", "", html, flags=re.DOTALL)
    return html


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium or on PATH")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def open_page(browser: Any, html: str, width: int, name: str) -> Any:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(path.as_uri())
    return page


@pytest.mark.parametrize("width", [600, 375])
def test_screenshot_right_to_left_edition(browser: Any, width: int) -> None:
    page = open_page(browser, render_page(urdu_edition(), language="ur"), width, f"email-rtl-{width}")
    page.screenshot(path=str(ARTIFACTS / f"email-rtl-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.dir") == "rtl"
    # An Urdu headline is laid out right to left; the English one inside it left to right.
    directions = page.evaluate(
        "[...document.querySelectorAll('h2.top-headline, h3.item-headline')].map(e => getComputedStyle(e).direction)"
    )
    assert directions.count("rtl") == 4 and directions.count("ltr") == 1
    # Each bold lead-in opens its paragraph on the paragraph's own start side: the right for
    # Urdu, the left for the English story among them.
    leads = page.evaluate(
        """[...document.querySelectorAll('strong.lead-in')].map(s => {
             const p = s.parentElement, a = s.getClientRects()[0], b = p.getBoundingClientRect();
             const rtl = getComputedStyle(p).direction === 'rtl';
             return [getComputedStyle(p).direction, Math.round(rtl ? b.right - a.right : a.left - b.left)];
           })"""
    )
    assert [d for d, _ in leads] == ["rtl", "rtl", "ltr"] and all(gap <= 1 for _, gap in leads), leads
    page.close()


@pytest.mark.parametrize("width", [600, 375])
def test_screenshot_image_heavy_edition(browser: Any, width: int) -> None:
    page = open_page(browser, render_page(image_edition()), width, f"email-images-{width}")
    page.screenshot(path=str(ARTIFACTS / f"email-images-{width}.png"), full_page=True)
    sizes = page.evaluate("[...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().width])")
    assert len(sizes) == 4  # the 30 px avatar is left out
    assert all(shown <= natural for natural, shown in sizes), sizes  # nothing upscaled
    page.close()


@pytest.mark.parametrize("content", [realistic_edition, image_edition, urdu_edition])
def test_phone_layout_without_style_block_does_not_overflow(browser: Any, content: Any) -> None:
    page = open_page(browser, render_page(content(), strip_style=True), 375, "email-nostyle-375")
    if content is image_edition:
        page.screenshot(path=str(ARTIFACTS / "email-nostyle-375.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.close()
