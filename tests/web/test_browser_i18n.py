"""A German and an Arabic reader in headless Chromium: their emails (sent by the real engine)
and their preferences pages, screenshotted to ``test-artifacts/i18n-*.png`` for a human to look at."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.app.subscriptions import make_link
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from digest.web import WebServer
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.helpers import parsed
from tests.web.test_browser import ARTIFACTS, browser  # noqa: F401 - the module's Chromium fixture

pytestmark = pytest.mark.browser

READERS = {"de": "hanna@example.org", "ar": "layla@example.org"}


@pytest.fixture
def sent(engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock) -> dict[str, str]:
    """Each reader's HTML part, as the real send put it on the wire."""
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, READERS["de"], NOW, name="Hanna Schmidt", locale="de")
        add_subscriber(s, READERS["ar"], NOW, name="ليلى", locale="ar")
    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        report = send_digest(engine, web_settings, "daily", t, clock)
    assert report.sent == 2
    by_rcpt = {m.rcpt_tos[0]: parsed(m.data) for m in sink.messages}
    return {
        locale: by_rcpt[addr].get_body(("html",)).get_content()  # type: ignore[union-attr]
        for locale, addr in READERS.items()
    }


def open_html(chromium: Any, html: str, width: int = 600) -> Any:
    page = chromium.new_page(viewport={"width": width, "height": 900})
    page.set_content(html, wait_until="load")
    return page


def test_german_email_and_preferences_page(
    browser: Any,  # noqa: F811
    sent: dict[str, str],
    server: WebServer,
    engine: Engine,
    web_settings: Settings,
) -> None:
    page = open_html(browser, sent["de"])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "i18n-email-de.png"), full_page=True)
    body = page.inner_text("body")
    assert "Hallo Hanna," in body and "Mittwoch, 25. November 2026" in body.title()
    assert "Einstellungen verwalten" in body and "Harbour cities agree storm warning pact" in body
    assert page.evaluate("document.documentElement.lang") == "de"
    page.close()

    with session_scope(engine) as s:
        sub = find_subscriber(s, READERS["de"])
        assert sub is not None
        link = make_link(web_settings, "preferences", sub, NOW)
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(link.replace(web_settings.base_url, server.url))
    page.screenshot(path=str(ARTIFACTS / "i18n-preferences-de.png"), full_page=True)
    assert page.locator("h1").inner_text() == "Ihre Einstellungen"
    assert page.locator("#locale option:checked").inner_text() == "Deutsch"
    assert page.get_by_role("button", name="Einstellungen speichern").count() == 1
    page.close()


def test_arabic_email_and_preferences_page_are_right_to_left(
    browser: Any,  # noqa: F811
    sent: dict[str, str],
    server: WebServer,
    engine: Engine,
    web_settings: Settings,
) -> None:
    page = open_html(browser, sent["ar"])
    page.screenshot(path=str(ARTIFACTS / "i18n-email-ar.png"), full_page=True)
    assert page.evaluate("[document.documentElement.lang, getComputedStyle(document.body).direction]") == ["ar", "rtl"]
    body = page.inner_text("body")
    assert "مرحبًا ليلى،" in body and "الأربعاء، 25 نوفمبر 2026" in body and "إدارة التفضيلات" in body
    # Right to left: the greeting starts at the card's right edge, "View in browser" sits left.
    greeting = page.locator(".greeting").bounding_box()
    card = page.locator(".card").first.bounding_box()
    topbar = page.locator(".topbar-link").bounding_box()
    assert greeting["x"] + greeting["width"] > card["x"] + card["width"] - 40
    assert topbar["x"] < card["x"] + 40
    page.close()

    with session_scope(engine) as s:
        sub = find_subscriber(s, READERS["ar"])
        assert sub is not None
        link = make_link(web_settings, "preferences", sub, NOW)
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(link.replace(web_settings.base_url, server.url))
    page.screenshot(path=str(ARTIFACTS / "i18n-preferences-ar.png"), full_page=True)
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["ar", "rtl"]
    assert page.locator("h1").inner_text() == "تفضيلاتك"
    assert page.locator("#locale option:checked").inner_text() == "العربية"
    heading = page.locator("h1").bounding_box()
    card = page.locator(".card").bounding_box()
    assert heading["x"] + heading["width"] > card["x"] + card["width"] - 40  # aligned right
    page.close()
