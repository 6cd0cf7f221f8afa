"""The whole subscriber journey in headless Chromium (Playwright), against the real server.

Subscribe through the form, read the confirmation email from the real SMTP server,
open its link, change preferences, unsubscribe. Screenshots of every page land in
``test-artifacts/web-*.png`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Edition, EditionStatus, SubscriberStatus
from digest.store.subscribers import find_subscriber
from digest.transport.sink import SmtpSink
from digest.web import WebServer, make_app
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.helpers import link_in, parsed

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium or on PATH (apt install chromium); never `playwright install`")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def status_of(engine: Engine, address: str) -> object:
    with session_scope(engine) as s:
        sub = find_subscriber(s, address)
        assert sub is not None
        return sub


def test_subscribe_confirm_change_preferences_and_unsubscribe_in_a_browser(
    browser: object, server: WebServer, engine: Engine, sink: SmtpSink, web_settings: Settings
) -> None:
    context = browser.new_context(viewport=PHONE, timezone_id="Europe/Berlin")  # type: ignore[attr-defined]
    page = context.new_page()

    # Subscribe.
    page.goto(f"{server.url}/")
    assert page.locator("#timezone").input_value() == "Europe/Berlin", "the optional script preselects the zone"
    shot(page, "subscribe")
    page.fill("#email", "ana.lima@example.org")
    page.fill("#name", "Ana")
    page.locator("label.chip", has_text="Science").click()
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("text=Check your inbox")
    shot(page, "check-inbox")
    sub = status_of(engine, "ana.lima@example.org")
    assert (sub.status, sub.topics, sub.timezone) == ("pending", ["Science"], "Europe/Berlin")  # type: ignore[attr-defined]

    # The confirmation email, as received by the real SMTP server (sent off the request path).
    server.app.state.web.mailer.drain()
    [received] = sink.messages
    html = parsed(received.data).get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    mail_view = context.new_page()
    mail_view.set_content(html)
    shot(mail_view, "confirm-email")
    mail_view.close()

    # Confirm: the emailed link shows a button; pressed right away (as a link scanner
    # would), it asks once more, and that press confirms.
    page.goto(link_in(received.data, "confirm"))
    page.wait_for_selector("h1:has-text('Confirm your subscription')")
    shot(page, "confirm")
    assert status_of(engine, "ana.lima@example.org").status == SubscriberStatus.PENDING  # type: ignore[attr-defined]
    page.get_by_role("button", name="Confirm subscription").click()
    page.wait_for_selector("h1:has-text('Please confirm again')")
    shot(page, "confirm-again")
    assert status_of(engine, "ana.lima@example.org").status == SubscriberStatus.PENDING  # type: ignore[attr-defined]
    page.get_by_role("button", name="Confirm subscription").click()
    page.wait_for_selector("text=You're subscribed!")
    shot(page, "confirmed")
    assert status_of(engine, "ana.lima@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[attr-defined]

    # Change preferences.
    page.get_by_role("link", name="Choose topics and time").click()
    page.wait_for_selector("h1:has-text('Your preferences')")
    shot(page, "preferences")
    page.locator("label.chip", has_text="World").click()
    page.locator("label.chip", has_text="Weekly").click()
    page.select_option("#weekday", "4")
    page.fill("#send_time", "07:30")
    page.select_option("#timezone", "America/New_York")
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_selector("text=Saved.")
    shot(page, "preferences-saved")
    sub = status_of(engine, "ana.lima@example.org")
    assert (sub.topics, sub.frequency, sub.weekday, sub.send_time, sub.timezone) == (  # type: ignore[attr-defined]
        ["World", "Science"],
        "weekly",
        4,
        "07:30",
        "America/New_York",
    )

    # Unsubscribe: a page with one button.
    page.get_by_role("link", name="Unsubscribe").click()
    page.wait_for_selector("h1:has-text('Unsubscribe?')")
    shot(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You're unsubscribed")
    shot(page, "unsubscribed")
    assert status_of(engine, "ana.lima@example.org").status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[attr-defined]
    context.close()


def test_other_pages_look_right_on_desktop_phone_and_in_dark_mode(
    browser: object, server: WebServer, engine: Engine, web_settings: Settings
) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
    get_or_build_edition(engine, web_settings, "daily", NOW)

    desktop = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    page = desktop.new_page()
    page.goto(f"{server.url}/")
    shot(page, "subscribe-desktop")
    page.fill("#email", "not an address")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("text=Please enter a valid email address.")
    shot(page, "subscribe-error")
    page.goto(f"{server.url}/archive/daily/2026-11-25")
    assert page.locator("text=Harbour cities agree storm warning pact").count() >= 1
    shot(page, "archive")
    with session_scope(engine) as s:
        for edition in s.exec(select(Edition)):
            edition.status = EditionStatus.SENT
    page.goto(f"{server.url}/archive")
    page.get_by_role("link", name="The Briefing, Wednesday, 25 November 2026").click()
    assert page.locator("text=Harbour cities agree storm warning pact").count() >= 1
    page.go_back()
    shot(page, "archive-list")
    desktop.close()

    phone = browser.new_context(viewport=PHONE, color_scheme="dark")  # type: ignore[attr-defined]
    page = phone.new_page()
    response = page.goto(f"{server.url}/unsubscribe/not-a-real-token")
    assert response is not None and response.status == 400
    shot(page, "bad-link-dark")
    page.goto(f"{server.url}/")
    shot(page, "subscribe-dark")
    phone.close()


@pytest.mark.parametrize(("page_host", "base_host"), [("127.0.0.1", "localhost"), ("localhost", "127.0.0.1")])
def test_subscribe_form_works_when_the_page_is_opened_at_another_host_than_base_url(
    browser: object,
    engine: Engine,
    web_settings: Settings,
    clock: FixedClock,
    web_port: int,
    page_host: str,
    base_host: str,
) -> None:
    # `digest web` listens on 127.0.0.1 while base_url says localhost (the defaults): the
    # form used to post to base_url, another host, where the CSRF cookie was never sent.
    settings = web_settings.model_copy(update={"base_url": f"http://{base_host}:{web_port}"})
    with WebServer(make_app(settings, engine, clock), settings, "127.0.0.1", web_port):
        context = browser.new_context()  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(f"http://{page_host}:{web_port}/")
        page.fill("#email", "ana.lima@example.org")
        page.get_by_role("button", name="Subscribe").click()
        page.wait_for_selector("h1")
        assert page.locator("text=Check your inbox").count() == 1, page.locator("h1").inner_text()
        context.close()
    assert status_of(engine, "ana.lima@example.org").status == SubscriberStatus.PENDING  # type: ignore[attr-defined]
