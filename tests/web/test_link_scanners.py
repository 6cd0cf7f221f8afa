"""Link scanners (Safe Links, Mimecast) open every link of a mail within seconds of its delivery.

Real mails through the SMTP sink, the real app on loopback, every backend: opening
links changes nothing; the page's button acts only after ``[web] link_protection``
(or when pressed again); the RFC 8058 one-click POST acts at once.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import SubscriberStatus
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.transport.sink import SmtpSink
from digest.web import WebServer
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.helpers import link_in, parsed, path_of, subscribe

TABLES = ("subscriber", "subscriber_event", "suppression", "delivery")


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables a link could change."""
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))] for t in TABLES}


def status(engine: Engine, address: str) -> str:
    with session_scope(engine) as s:
        sub = find_subscriber(s, address)
        assert sub is not None
        return sub.status


def app_links(data: bytes, base_url: str) -> list[str]:
    """Every link to the app in a message: List-Unsubscribe, the HTML part's hrefs, the text part's URLs."""
    msg = parsed(data)
    found = re.findall(r"<(http[^>]+)>", str(msg.get("List-Unsubscribe", "")))
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            body = part.get_content()  # type: ignore[attr-defined]
            found += re.findall(r'href="([^"]+)"', body) + re.findall(r"https?://[^\s\"'<>]+", body)
    return sorted({u.replace("&amp;", "&") for u in found if u.startswith(base_url + "/")})


def scan(urls: list[str], rounds: int = 3) -> list[int]:
    """What a scanner does: HEAD and GET every link, a few times over, following nothing."""
    codes = []
    for _ in range(rounds):
        for url in urls:
            parts = urlsplit(url)
            for method in ("HEAD", "GET"):
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
                conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
                response = conn.getresponse()
                response.read()
                conn.close()
                codes.append(response.status)
    return codes


def one_click(url: str) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    conn.request(
        "POST",
        parts.path,
        body=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


@pytest.fixture
def digest_sent(engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock) -> Iterator[bytes]:
    """A real digest to one active subscriber (ana@example.org), as received by the SMTP server."""
    from digest.app.send import send_digest
    from digest.transport.smtp import SMTPTransport, parse_smtp_url

    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW)
    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        send_digest(engine, web_settings, "daily", t, clock)
    [received] = sink.messages
    yield received.data


# ---------------------------------------------------------------- opening links changes nothing


def test_a_scanner_opening_every_link_of_a_confirmation_mail_changes_nothing(
    client: httpx.Client, engine: Engine, sink: SmtpSink, web_settings: Settings
) -> None:
    subscribe(client, "ana@example.org")
    [received] = sink.messages
    links = app_links(received.data, web_settings.base_url)
    assert any("/confirm/" in u for u in links)
    before = snapshot(engine)

    codes = scan(links)

    assert set(codes) == {200}
    assert snapshot(engine) == before
    assert status(engine, "ana@example.org") == SubscriberStatus.PENDING


def test_a_scanner_opening_every_link_of_a_digest_changes_nothing(
    server: WebServer, engine: Engine, web_settings: Settings, digest_sent: bytes
) -> None:
    links = app_links(digest_sent, web_settings.base_url)
    assert {"unsubscribe", "preferences"} <= {urlsplit(u).path.split("/")[1] for u in links}
    before = snapshot(engine)

    codes = scan(links)

    assert 200 in codes and not [c for c in codes if c >= 500]
    assert snapshot(engine) == before
    assert status(engine, "ana@example.org") == SubscriberStatus.ACTIVE


# ---------------------------------------------------------------- confirm: the button


def test_confirm_pressed_right_after_sending_asks_again_and_changes_nothing(
    client: httpx.Client, engine: Engine, sink: SmtpSink
) -> None:
    subscribe(client, "ana@example.org")
    link = path_of(link_in(sink.messages[0].data, "confirm"))

    answer = client.post(link, data={"action": "confirm"})

    assert answer.status_code == 200 and "Please confirm again" in answer.text and 'name="again"' in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.PENDING


def test_confirm_pressed_after_link_protection_confirms(
    client: httpx.Client, engine: Engine, sink: SmtpSink, clock: FixedClock, web_settings: Settings
) -> None:
    subscribe(client, "ana@example.org")
    link = path_of(link_in(sink.messages[0].data, "confirm"))
    clock.advance(web_settings.web.link_protection)

    answer = client.post(link, data={"action": "confirm"})

    assert answer.status_code == 200 and "You're subscribed" in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.ACTIVE


def test_confirm_pressed_again_confirms_within_link_protection(
    client: httpx.Client, engine: Engine, sink: SmtpSink
) -> None:
    subscribe(client, "ana@example.org")
    link = path_of(link_in(sink.messages[0].data, "confirm"))
    asked = client.post(link, data={"action": "confirm"})
    again = re.search(r'name="again" value="([^"]+)"', asked.text).group(1)  # type: ignore[union-attr]

    answer = client.post(link, data={"action": "confirm", "again": again})

    assert answer.status_code == 200 and "You're subscribed" in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.ACTIVE


def test_an_again_field_of_another_link_does_not_confirm(
    client: httpx.Client, engine: Engine, sink: SmtpSink, server: WebServer
) -> None:
    subscribe(client, "ana@example.org")
    subscribe(client, "ben@example.org")
    ana_link, ben_link = (path_of(link_in(m.data, "confirm")) for m in sink.messages)
    asked = client.post(ben_link, data={"action": "confirm"})
    bens_again = re.search(r'name="again" value="([^"]+)"', asked.text).group(1)  # type: ignore[union-attr]

    answer = client.post(ana_link, data={"action": "confirm", "again": bens_again})

    assert "Please confirm again" in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.PENDING


# ---------------------------------------------------------------- unsubscribe


def test_one_click_post_right_after_sending_unsubscribes_at_once(
    server: WebServer, engine: Engine, digest_sent: bytes
) -> None:
    header = parsed(digest_sent)["List-Unsubscribe"]
    url = re.search(r"<(http[^>]+)>", header).group(1)  # type: ignore[union-attr]

    assert one_click(url) == 200
    assert status(engine, "ana@example.org") == SubscriberStatus.UNSUBSCRIBED


def test_unsubscribe_button_right_after_a_digest_asks_again(
    client: httpx.Client, engine: Engine, digest_sent: bytes
) -> None:
    link = path_of(link_in(digest_sent, "unsubscribe"))

    answer = client.post(link, data={"action": "unsubscribe"})

    assert answer.status_code == 200 and "Please confirm again" in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.ACTIVE


def test_unsubscribe_button_after_link_protection_unsubscribes(
    client: httpx.Client, engine: Engine, digest_sent: bytes, clock: FixedClock, web_settings: Settings
) -> None:
    link = path_of(link_in(digest_sent, "unsubscribe"))
    clock.advance(web_settings.web.link_protection)

    answer = client.post(link, data={"action": "unsubscribe"})

    assert answer.status_code == 200 and "You're unsubscribed" in answer.text
    assert status(engine, "ana@example.org") == SubscriberStatus.UNSUBSCRIBED
