"""The web app over real HTTP: uvicorn on loopback, a real SMTP server, every backend."""

from __future__ import annotations

import asyncio
import http.client
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.core.tokens import make_token
from digest.edition.build import get_or_build_edition
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.transport.sink import SinkHandler, SmtpSink
from digest.web import WebServer, make_app
from digest.web.security import CSRF_COOKIE
from tests.conftest import NOW, STANDARD_DRAFTS, draft
from tests.web.conftest import SECRET_KEY
from tests.web.helpers import csrf_of, link_in, path_of, subscribe


def subscriber(engine: Engine, address: str) -> Subscriber | None:
    with session_scope(engine) as s:
        return find_subscriber(s, address)


def active(engine: Engine, address: str, **kw: object) -> Subscriber:
    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, address, NOW, **kw)  # type: ignore[arg-type]
        return sub


def token(purpose: str, sub: Subscriber, secret: str = SECRET_KEY) -> str:
    assert sub.id is not None
    return make_token(secret, purpose, sub.id, sub.email_key, now=NOW)


def visible_text(html: str) -> str:
    """The page without its per-request values (CSRF field, script nonce)."""
    html = re.sub(r'name="csrf" value="[^"]+"', "", html)
    return re.sub(r'nonce="[^"]+"', "", html)


# ---------------------------------------------------------------- subscribe


def test_subscribe_form_is_served_with_csrf_cookie_and_safe_headers(client: httpx.Client) -> None:
    page = client.get("/")

    assert page.status_code == 200
    assert 'name="email"' in page.text and 'name="topics" value="Science"' in page.text
    assert CSRF_COOKIE in client.cookies
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_subscribe_then_confirm_by_the_emailed_link(
    client: httpx.Client, engine: Engine, sink: SmtpSink, clock: FixedClock, web_settings: Settings
) -> None:
    answer = subscribe(client, "ana@example.org", name="Ana", topics=["Science"], timezone="Europe/Lisbon")

    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.PENDING  # type: ignore[union-attr]
    link = path_of(link_in(sink.messages[0].data, "confirm"))
    page = client.get(link)
    assert page.status_code == 200 and "Confirm subscription" in page.text
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.PENDING  # type: ignore[union-attr]
    clock.advance(web_settings.web.link_protection)
    confirmed = client.post(link, data={"action": "confirm"})
    assert confirmed.status_code == 200 and "You're subscribed" in confirmed.text
    sub = subscriber(engine, "ana@example.org")
    assert sub is not None and (sub.status, sub.topics, sub.timezone) == ("active", ["Science"], "Europe/Lisbon")


@dataclass
class SlowHandler(SinkHandler):
    """An SMTP server that takes ``delay`` seconds to accept each message, as a busy relay does."""

    delay: float = 0.0

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_answer_time_does_not_depend_on_the_address_or_on_smtp(
    engine: Engine, web_settings: Settings, clock: FixedClock, web_port: int
) -> None:
    delay = 1.0
    slow = SmtpSink()
    slow.handler = SlowHandler(delay=delay)
    slow.controller = Controller(slow.handler, hostname=slow.host, port=slow.port, decode_data=False)
    # Nine subscribe posts from one client: above the fixture's limit of five a window.
    web = web_settings.web.model_copy(update={"subscribe_limit": 20})
    settings = web_settings.model_copy(update={"smtp_url": SecretStr(slow.url), "web": web})
    active(engine, "known@example.org")
    app = make_app(settings, engine, clock)
    # The least of a few rounds: one request can be slowed by whatever else the machine runs
    # (the suite's other workers), but an SMTP wait would slow every round of its label.
    timings: dict[str, float] = {}
    with slow, WebServer(app, settings, "127.0.0.1", web_port) as srv, httpx.Client(base_url=srv.url) as c:
        c.get("/")  # the first request pays for the app's own start-up, whatever the address
        for n in range(3):
            for label, address in [
                ("new", f"ana{n}@example.org"),
                ("resend", f"ana{n}@example.org"),
                ("active", "known@example.org"),
            ]:
                form = {"csrf": csrf_of(c.get("/").text), "email": address}
                started = time.perf_counter()
                answer = c.post("/subscribe", data=form)
                elapsed = time.perf_counter() - started
                timings[label] = min(timings.get(label, elapsed), elapsed)
                assert answer.status_code == 200 and "Check your inbox" in answer.text
        app.state.web.mailer.drain()

    # Before: a first request waited for SMTP (~1.0 s), a throttled one did not (~0.01 s).
    assert max(timings.values()) < delay / 2, timings
    assert max(timings.values()) - min(timings.values()) < delay / 4, timings
    # Three confirmations and one already-subscribed notice (throttled per address) still went out.
    assert len(slow.messages) == 4


def test_answer_never_reveals_whether_the_address_is_subscribed(client: httpx.Client, engine: Engine) -> None:
    active(engine, "known@example.org")

    known = subscribe(client, "known@example.org")
    unknown = subscribe(client, "unknown@example.org")

    assert known.status_code == unknown.status_code == 200
    assert visible_text(known.text).replace("known@", "X@") == visible_text(unknown.text).replace("unknown@", "X@")


def test_invalid_address_redisplays_the_form_with_an_error(client: httpx.Client, sink: SmtpSink) -> None:
    answer = subscribe(client, "not an address", name="Ana")

    assert answer.status_code == 400
    assert "Please enter a valid email address." in answer.text and 'value="Ana"' in answer.text
    assert sink.messages == []


# ---------------------------------------------------------------- CSRF, rate limit, honeypot


def test_subscribe_without_the_csrf_field_is_refused(client: httpx.Client, engine: Engine, sink: SmtpSink) -> None:
    client.get("/")
    answer = client.post("/subscribe", data={"email": "ana@example.org"})

    assert answer.status_code == 403
    assert subscriber(engine, "ana@example.org") is None and sink.messages == []


def test_subscribe_without_the_csrf_cookie_is_refused(server: WebServer, engine: Engine, sink: SmtpSink) -> None:
    # A cross-site form post: the attacker copied a valid field, but the victim's
    # browser does not send our SameSite=Strict cookie with it.
    with httpx.Client(base_url=server.url) as own:
        field = csrf_of(own.get("/").text)
    with httpx.Client(base_url=server.url) as victim:
        answer = victim.post("/subscribe", data={"csrf": field, "email": "ana@example.org"})

    assert answer.status_code == 403 and subscriber(engine, "ana@example.org") is None


def test_csrf_field_of_another_browser_is_refused(server: WebServer, engine: Engine) -> None:
    with httpx.Client(base_url=server.url) as a, httpx.Client(base_url=server.url) as b:
        field_a = csrf_of(a.get("/").text)
        b.get("/")  # b has its own cookie
        answer = b.post("/subscribe", data={"csrf": field_a, "email": "ana@example.org"})

    assert answer.status_code == 403 and subscriber(engine, "ana@example.org") is None


def test_csrf_field_expires(client: httpx.Client, clock: FixedClock, web_settings: Settings, engine: Engine) -> None:
    field = csrf_of(client.get("/").text)
    clock.advance(web_settings.web.csrf_max_age + timedelta(seconds=1))

    answer = client.post("/subscribe", data={"csrf": field, "email": "ana@example.org"})

    assert answer.status_code == 403 and "expired" in answer.text


def test_preferences_form_field_does_not_work_for_another_subscriber(client: httpx.Client, engine: Engine) -> None:
    ana, ben = active(engine, "ana@example.org"), active(engine, "ben@example.org")
    anas_field = csrf_of(client.get(f"/preferences/{token('preferences', ana)}").text)

    answer = client.post(
        f"/preferences/{token('preferences', ben)}", data={"csrf": anas_field, "frequency": "weekly", "weekday": "1"}
    )

    assert answer.status_code == 403
    assert subscriber(engine, "ben@example.org").frequency == "daily"  # type: ignore[union-attr]


def test_subscribe_is_rate_limited_per_client_address(
    client: httpx.Client, web_settings: Settings, clock: FixedClock
) -> None:
    limit = web_settings.web.subscribe_limit
    # Refused addresses count too (and send no mail, which keeps this test fast).
    codes = [subscribe(client, f"not-an-address-{i}").status_code for i in range(limit + 1)]

    assert codes == [400] * limit + [429]
    refused = subscribe(client, "late@example.org")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    clock.advance(web_settings.web.subscribe_window)
    assert subscribe(client, "later@example.org").status_code == 200


def test_honeypot_answers_like_success_but_does_nothing(client: httpx.Client, engine: Engine, sink: SmtpSink) -> None:
    answer = subscribe(client, "bot@example.org", website="http://spam.example")

    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscriber(engine, "bot@example.org") is None and sink.messages == []


# ---------------------------------------------------------------- unsubscribe (RFC 8058)


def raw_post(url: str, body: bytes, content_type: str) -> http.client.HTTPResponse:
    """A bare HTTP POST, as a mailbox provider sends it: no cookie, no redirects followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        (
            b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["urlencoded", "multipart"],
)
def test_one_click_unsubscribe_from_a_raw_post(
    server: WebServer, engine: Engine, body: bytes, content_type: str
) -> None:
    ana = active(engine, "ana@example.org")
    active(engine, "ben@example.org")

    response = raw_post(f"{server.url}/unsubscribe/{token('unsubscribe', ana)}", body, content_type)

    assert response.status == 200
    assert response.getheader("Set-Cookie") is None and response.getheader("Location") is None
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert subscriber(engine, "ben@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_the_list_unsubscribe_link_of_a_real_digest_works_with_one_click(
    server: WebServer, engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    from digest.app.send import send_digest
    from digest.transport.smtp import SMTPTransport, parse_smtp_url

    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
    active(engine, "ana@example.org")
    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        send_digest(engine, web_settings, "daily", t, clock)
    from tests.web.helpers import parsed

    header = parsed(sink.messages[0].data)["List-Unsubscribe"]
    url = re.search(r"<(http[^>]+)>", header).group(1)  # type: ignore[union-attr]

    response = raw_post(url, b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded")

    assert response.status == 200
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_unsubscribe_page_changes_nothing_until_the_button_is_pressed(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")

    page = client.get(f"/unsubscribe/{token('unsubscribe', ana)}")

    assert page.status_code == 200 and 'value="unsubscribe"' in page.text and "a***@example.org" in page.text
    assert "set-cookie" not in page.headers
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_post_without_the_one_click_body_changes_nothing(server: WebServer, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")

    response = raw_post(
        f"{server.url}/unsubscribe/{token('unsubscribe', ana)}", b"foo=bar", "application/x-www-form-urlencoded"
    )

    assert response.status == 400
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


# ---------------------------------------------------------------- bad tokens


def test_every_bad_token_gets_the_same_friendly_400_page(
    client: httpx.Client, engine: Engine, clock: FixedClock, web_settings: Settings
) -> None:
    ana = active(engine, "ana@example.org")
    expired_confirm = token("confirm", ana)
    clock.advance(web_settings.web.confirm_max_age + timedelta(hours=1))
    paths = [
        "/unsubscribe/garbage",
        f"/unsubscribe/{token('unsubscribe', ana, secret='forged-key')}",
        f"/unsubscribe/{token('preferences', ana)}",  # another purpose
        f"/preferences/{token('unsubscribe', ana)}",
        f"/confirm/{expired_confirm}",
        "/unsubscribe/preview",  # the inert link of a test copy
    ]

    pages = [client.get(p) for p in paths]

    assert {p.status_code for p in pages} == {400}
    assert len({visible_text(p.text) for p in pages}) == 1
    assert "invalid or has expired" in pages[0].text and "ana" not in pages[0].text


# ---------------------------------------------------------------- preferences


def test_preferences_are_saved_through_the_form(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")
    url = f"/preferences/{token('preferences', ana)}"
    field = csrf_of(client.get(url).text)

    answer = client.post(
        url,
        data={
            "csrf": field,
            "action": "save",
            "topics": ["World", "Business"],
            "timezone": "Pacific/Kiritimati",
            "send_time": "07:15",
            "frequency": "weekly",
            "weekday": "0",
        },
    )

    assert answer.status_code == 200 and "Saved" in answer.text
    sub = subscriber(engine, "ana@example.org")
    assert sub is not None
    assert (sub.topics, sub.timezone, sub.send_time, sub.frequency, sub.weekday) == (
        ["World", "Business"],
        "Pacific/Kiritimati",
        "07:15",
        "weekly",
        0,
    )


def test_opting_out_of_breaking_news_is_saved_through_the_form(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org", topics="Science")
    url = f"/preferences/{token('preferences', ana)}"
    page = client.get(url).text
    assert re.search(r'name="breaking" value="yes" checked', page)  # the default: breaking news too

    # The box unticked: the browser sends only the hidden "no" before it.
    answer = client.post(url, data={"csrf": csrf_of(page), "action": "save", "topics": ["Science"], "breaking": "no"})

    assert answer.status_code == 200 and "Saved" in answer.text
    assert subscriber(engine, "ana@example.org").breaking is False  # type: ignore[union-attr]
    assert 'name="breaking" value="yes">' in answer.text  # shown unticked after saving


def test_ticking_breaking_news_again_is_saved_through_the_form(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org", topics="Science", breaking=False)
    url = f"/preferences/{token('preferences', ana)}"
    field = csrf_of(client.get(url).text)

    client.post(url, data={"csrf": field, "action": "save", "topics": ["Science"], "breaking": ["no", "yes"]})

    assert subscriber(engine, "ana@example.org").breaking is True  # type: ignore[union-attr]


def test_alerts_and_quiet_hours_are_saved_through_the_form(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")
    url = f"/preferences/{token('preferences', ana)}"
    page = client.get(url).text
    assert 'name="alerts" value="yes">' in page  # off until asked for

    data = {
        "csrf": csrf_of(page),
        "action": "save",
        "alerts": ["no", "yes"],
        "quiet_start": "22:00",
        "quiet_end": "06:30",
    }
    answer = client.post(url, data=data)

    assert answer.status_code == 200 and "Saved" in answer.text
    sub = subscriber(engine, "ana@example.org")
    assert sub is not None and (sub.alerts, sub.quiet_start, sub.quiet_end) == (True, "22:00", "06:30")
    assert 'name="alerts" value="yes" checked' in answer.text


def test_invalid_preferences_are_shown_back_with_the_problem(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org", timezone="Europe/Paris")
    url = f"/preferences/{token('preferences', ana)}"
    field = csrf_of(client.get(url).text)

    answer = client.post(url, data={"csrf": field, "action": "save", "frequency": "weekly", "timezone": "Europe/Paris"})

    assert answer.status_code == 400 and "Please check weekday" in answer.text
    assert subscriber(engine, "ana@example.org").frequency == "daily"  # type: ignore[union-attr]


# ---------------------------------------------------------------- archive, articles, health


@pytest.fixture
def edition(engine: Engine, web_settings: Settings) -> int:
    with session_scope(engine) as s:
        upsert_articles(s, [*STANDARD_DRAFTS, draft("Council publishes budget notes", 40, url=None)], NOW)
    ed, _, _ = get_or_build_edition(engine, web_settings, "daily", NOW)
    assert ed.id is not None
    return ed.id


def test_archive_shows_the_edition_without_personal_data(client: httpx.Client, edition: int) -> None:
    by_slot = client.get("/archive/daily/2026-11-25")
    by_id = client.get(f"/archive/{edition}")

    assert by_slot.status_code == by_id.status_code == 200
    assert "Harbour cities agree storm warning pact" in by_slot.text
    assert "web copy" in by_slot.text and "Unsubscribe" not in by_slot.text and "zq" not in by_slot.text
    assert "View in browser" not in by_slot.text


def test_archive_of_an_unknown_edition_is_404(client: httpx.Client) -> None:
    assert client.get("/archive/daily/1999-01-01").status_code == 404
    assert client.get("/archive/999999").status_code == 404


def test_archive_lists_past_editions_newest_first(client: httpx.Client, engine: Engine, web_settings: Settings) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
    ids = [get_or_build_edition(engine, web_settings, "daily", NOW + timedelta(days=d))[0].id for d in range(3)]
    statuses = (EditionStatus.SENT, EditionStatus.SENDING, EditionStatus.READY)
    with session_scope(engine) as s:  # the first two went out; the third is built, not sent
        for edition_id, status in zip(ids, statuses, strict=True):
            s.get(Edition, edition_id).status = status  # type: ignore[union-attr]

    page = client.get("/archive")

    assert page.status_code == 200
    links = re.findall(r'href="http://[^"]+(/archive/\d+)"', page.text)
    assert links == [f"/archive/{ids[1]}", f"/archive/{ids[0]}"]
    assert "Thursday, 26 November 2026" in page.text
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    assert all(client.get(link).status_code == 200 for link in links)


def test_story_without_a_url_has_a_page(client: httpx.Client, engine: Engine, edition: int) -> None:
    archive = client.get(f"/archive/{edition}").text
    link = re.search(r'href="(http://[^"]+/articles/\d+)"', archive)
    assert link, "the edition links the story without a URL to /articles/ID"

    page = client.get(path_of(link.group(1)))

    assert page.status_code == 200 and "Council publishes budget notes" in page.text
    assert client.get("/articles/999999").status_code == 404


def test_healthz_reports_the_database(client: httpx.Client) -> None:
    answer = client.get("/healthz")

    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_oversized_request_body_is_refused(client: httpx.Client) -> None:
    answer = client.post(
        "/subscribe", content=b"email=" + b"a" * 100_000, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert answer.status_code == 413


def test_unknown_page_is_a_friendly_404(client: httpx.Client) -> None:
    answer = client.get("/no/such/page")

    assert answer.status_code == 404 and "couldn't find" in answer.text


def test_unsubscribed_reader_can_subscribe_again_from_the_preferences_page(
    client: httpx.Client, engine: Engine
) -> None:
    ana = active(engine, "ana@example.org", status="unsubscribed")
    url = f"/preferences/{token('preferences', ana)}"
    page = client.get(url)
    assert "Subscribe again" in page.text

    answer = client.post(url, data={"csrf": csrf_of(page.text), "action": "resubscribe"})

    assert answer.status_code == 200 and "Welcome back" in answer.text
    assert subscriber(engine, "ana@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
