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
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.compose.inline import inline_css
from digest.compose.render import Markers, build_context, make_environment, render_variant
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
