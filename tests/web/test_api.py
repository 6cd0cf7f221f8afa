"""The REST API through real HTTP (uvicorn on loopback), with keys of each scope, on every backend."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from digest.app.apikeys import create_key, revoke_key
from digest.core.clock import FixedClock
from digest.core.settings import ApiSettings, Settings
from digest.store.db import session_scope
from digest.store.models import (
    Article,
    Delivery,
    Edition,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
)
from digest.store.subscribers import add_subscriber
from digest.store.suppressions import email_hash, suppress
from digest.transport.sink import SmtpSink, free_port
from digest.web import WebServer, make_app
from tests.conftest import NOW

ALL = "articles:write,subscribers:write,read"
RATE = 10  # requests a key may make a minute: more than any other test makes with one key
MAX_BODY = 1_000_000
Client = Callable[..., httpx.Client]


@pytest.fixture
def api_settings(web_settings: Settings) -> Settings:
    return web_settings.model_copy(update={"api": ApiSettings(rate_per_minute=RATE, max_body_bytes=MAX_BODY)})


@pytest.fixture
def api(engine: Engine, api_settings: Settings, clock: FixedClock, web_port: int) -> Iterator[WebServer]:
    with WebServer(make_app(api_settings, engine, clock), api_settings, "127.0.0.1", web_port) as srv:
        yield srv


@pytest.fixture
def client(api: WebServer, engine: Engine, clock: FixedClock) -> Iterator[Client]:
    """``client(scopes)``: an HTTP client with a new key of those scopes (None: no key)."""
    opened: list[httpx.Client] = []

    def notices_sent(response: httpx.Response) -> None:
        api.app.state.web.mailer.drain()

    def make(scopes: str | None = ALL) -> httpx.Client:
        headers = {}
        if scopes is not None:
            key = create_key(engine, clock, f"k{len(opened)}", scopes).key
            headers["Authorization"] = f"Bearer {key}"
        c = httpx.Client(
            base_url=f"{api.url}/api/v1", headers=headers, timeout=20, event_hooks={"response": [notices_sent]}
        )
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def story(n: int, **extra: object) -> dict[str, object]:
    return {"title": f"Story {n}", "url": f"https://news.example.com/{n}", "category": "World", **extra}


# ---------------------------------------------------------------- articles


def test_a_repeated_batch_updates_and_never_duplicates(client: Client, engine: Engine) -> None:
    cms = client()
    batch = [story(1), story(2, guid="wire-2", published_at="2026-11-25T05:00:00+01:00")]

    first = cms.post("/articles", json=batch)
    again = cms.post("/articles", json=[story(1, title="Story 1, updated"), story(2, guid="wire-2")])

    assert first.status_code == 200, first.text
    assert (first.json()["inserted"], again.json()["inserted"], again.json()["updated"]) == (2, 0, 2)
    assert [a["id"] for a in again.json()["articles"]] == [a["id"] for a in first.json()["articles"]]
    assert count(engine, Article) == 2
    listed = cms.get("/articles", params={"since": "2026-11-24T00:00:00Z"}).json()["articles"]
    assert sorted(a["title"] for a in listed) == ["Story 1, updated", "Story 2"]


def test_a_bad_article_rejects_the_batch_naming_its_index_and_field(client: Client, engine: Engine) -> None:
    batch = [story(1), story(2, url="ftp://x.example/2"), story(3, tags=5), story(4, headline="x")]

    response = client().post("/articles", json=batch)

    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert locs == [["body", 1, "url"], ["body", 2, "tags"], ["body", 3, "headline"]]
    assert count(engine, Article) == 0


def test_a_batch_may_exceed_the_pages_64_kib_up_to_api_max_body_bytes(client: Client) -> None:
    text = "<p>" + "Harbour news. " * 3000 + "</p>"  # about 42 KB an article
    cms = client()

    taken = cms.post("/articles", json=[story(n, body=text) for n in range(3)])
    refused = cms.post("/articles", json=[story(n, body=text) for n in range(30)])  # ~1.3 MB

    assert taken.status_code == 200, taken.text
    assert taken.json()["inserted"] == 3
    assert refused.status_code == 413


def test_a_batch_holds_at_most_500_articles(client: Client) -> None:
    response = client().post("/articles", json=[story(n) for n in range(501)])

    assert response.status_code == 422
    assert "at most 500" in response.json()["detail"][0]["msg"]


def test_lead_is_stored_shown_kept_by_a_post_without_it_and_cleared_by_an_empty_one(
    client: Client, engine: Engine
) -> None:
    cms = client()
    posted = cms.post("/articles", json=story(1, lead="Why it matters: one <b>warning</b>."))
    cms.post("/articles", json=story(1, title="Story 1, updated"))
    listed = cms.get("/articles", params={"since": "2026-11-24T00:00:00Z"}).json()["articles"]
    cms.post("/articles", json=story(1, lead=""))

    assert posted.status_code == 200, posted.text
    assert [a["lead"] for a in listed] == ["Why it matters: one warning."]
    with session_scope(engine) as session:
        assert session.get(Article, posted.json()["articles"][0]["id"]).lead == ""  # type: ignore[union-attr]


def test_a_too_long_lead_is_a_422_naming_the_field(client: Client, engine: Engine) -> None:
    response = client().post("/articles", json=[story(1), story(2, lead="x" * 281)])

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", 1, "lead"], "msg": "lead is 281 characters; at most 280", "type": "value_error"}
    ]
    assert count(engine, Article) == 0


def test_delete_hides_the_article(client: Client, engine: Engine) -> None:
    cms = client()
    article_id = cms.post("/articles", json=story(1)).json()["articles"][0]["id"]

    assert cms.delete(f"/articles/{article_id}").status_code == 204
    assert cms.delete("/articles/999999").status_code == 404
    with session_scope(engine) as session:
        assert session.get(Article, article_id).hidden  # type: ignore[union-attr]


# ---------------------------------------------------------------- subscribers


def test_a_subscriber_without_consent_is_pending_and_gets_the_confirmation_mail(
    client: Client, sink: SmtpSink, engine: Engine
) -> None:
    response = client().post("/subscribers", json={"email": "ana@example.org", "topics": ["World"]})

    assert response.status_code == 201, response.text
    assert response.json()["status"] == SubscriberStatus.PENDING
    assert len(sink.messages) == 1
    assert "/confirm/" in sink.messages[0].data.decode()
    with session_scope(engine) as session:
        sources = {e.source for e in session.exec(select(SubscriberEvent)).all()}
    assert sources == {"api"}


def test_consent_makes_an_active_subscriber_and_is_kept_as_the_confirmation(
    client: Client, sink: SmtpSink, engine: Engine
) -> None:
    consent = {"source": "signup form", "at": "2026-11-25T05:59:00Z", "ip": "203.0.113.9"}
    body = {"email": "bo@example.org", "topics": ["Science"], "frequency": "weekly", "weekday": 4, "consent": consent}

    response = client().post("/subscribers", json=body)

    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["weekday"]) == ("active", 4)
    assert sink.messages == []
    with session_scope(engine) as session:
        event = session.exec(select(SubscriberEvent)).one()
    assert (event.kind, event.source, json.loads(event.detail)) == ("confirmed", "api", consent)


def test_consent_cannot_bring_back_a_suppressed_address(client: Client, engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, "gone@example.org", "complained", "arf", NOW)

    response = client().post("/subscribers", json={"email": "gone@example.org", "consent": {"source": "cms"}})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]
    assert count(engine, Subscriber) == 0


def test_preferences_unsubscribe_and_erase(client: Client, engine: Engine) -> None:
    cms = client()
    sub = cms.post("/subscribers", json={"email": "cy@example.org", "consent": {"source": "cms"}}).json()
    path = f"/subscribers/{sub['id']}"

    found = cms.get("/subscribers", params={"email": "CY@example.org"}).json()["subscribers"]
    changed = cms.patch(path, json={"topics": ["Business"], "send_time": "7:30", "breaking": False})
    bad = cms.patch(path, json={"timezone": "Mars/Olympus"})
    left = cms.post(f"{path}/unsubscribe")
    erased = cms.delete(path)

    assert [s["id"] for s in found] == [sub["id"]]
    assert changed.json()["topics"] == ["Business"] and changed.json()["send_time"] == "07:30"
    assert (bad.status_code, bad.json()["detail"][0]["loc"]) == (422, ["body", "timezone"])
    assert left.json()["status"] == "unsubscribed"
    assert erased.status_code == 204
    assert cms.get(path).status_code == 404
    with session_scope(engine) as session:
        kept = session.exec(select(Suppression)).one()
    assert (kept.email_hash, kept.email) == (email_hash("cy@example.org"), "")


def test_a_pending_subscriber_gets_the_confirmation_mail_in_their_locale(client: Client, sink: SmtpSink) -> None:
    response = client().post("/subscribers", json={"email": "de@example.org", "locale": "de"})

    mail = email.message_from_bytes(sink.messages[0].data, policy=email.policy.default)
    assert (response.status_code, response.json()["locale"]) == (201, "de")
    assert str(mail["Subject"]).startswith("Bestätigen Sie Ihr Abonnement")


def test_locale_alerts_and_quiet_hours_are_preferences_of_the_api(client: Client) -> None:
    cms = client()
    sub = cms.post(
        "/subscribers", json={"email": "ar@example.org", "consent": {"source": "cms"}, "locale": "ar"}
    ).json()

    changed = cms.patch(
        f"/subscribers/{sub['id']}", json={"locale": "fr", "alerts": True, "quiet_start": "22:00", "quiet_end": "7:00"}
    ).json()
    bad = cms.patch(f"/subscribers/{sub['id']}", json={"locale": "klingon"})

    assert sub["locale"] == "ar"
    assert (changed["locale"], changed["alerts"], changed["quiet_start"], changed["quiet_end"]) == (
        "fr", True, "22:00", "07:00",
    )  # fmt: skip
    assert (bad.status_code, bad.json()["detail"][0]["loc"]) == (422, ["body", "locale"])


# ---------------------------------------------------------------- editions


def test_an_edition_counts_its_deliveries_by_status(client: Client, engine: Engine) -> None:
    with session_scope(engine) as session:
        edition = Edition(digest="daily", slot="2026-11-25", status="sending", built_at=NOW, article_count=3)
        session.add(edition)
        session.flush()
        for n, status in enumerate(("sent", "sent", "queued", "failed_permanent")):
            sub, _ = add_subscriber(session, f"r{n}@example.org", NOW)
            session.add(Delivery(edition_id=edition.id, subscriber_id=sub.id, status=status, created_at=NOW))  # type: ignore[arg-type]
        edition_id = edition.id

    reader = client("read")
    one = reader.get(f"/editions/{edition_id}").json()
    listed = reader.get("/editions", params={"digest": "daily"}).json()["editions"]

    assert one["deliveries"] == {"sent": 2, "queued": 1, "failed_permanent": 1}
    assert [e["id"] for e in listed] == [edition_id]


# ---------------------------------------------------------------- keys, scopes, rate


@pytest.mark.parametrize(
    ("scopes", "allowed", "refused"),
    [
        ("read", ("GET", "/editions"), ("POST", "/articles")),
        ("articles:write", ("POST", "/articles"), ("GET", "/articles")),
        ("subscribers:write", ("POST", "/subscribers"), ("POST", "/articles")),
    ],
)
def test_each_scope_opens_its_routes_only(
    client: Client, scopes: str, allowed: tuple[str, str], refused: tuple[str, str]
) -> None:
    bodies = {"/articles": story(1), "/subscribers": {"email": "dee@example.org"}}
    c = client(scopes)

    ok = c.request(allowed[0], allowed[1], json=bodies.get(allowed[1]))
    no = c.request(refused[0], refused[1], json=bodies.get(refused[1]))

    assert ok.status_code in (200, 201), ok.text
    assert no.status_code == 403
    needed = "read" if refused[0] == "GET" else "articles:write"
    assert needed in no.json()["detail"]
    assert f'scope="{needed}"' in no.headers["WWW-Authenticate"]


def test_no_key_a_wrong_key_and_a_revoked_key_get_401(client: Client, engine: Engine, clock: FixedClock) -> None:
    anonymous = client(None).get("/editions")
    wrong = client(None).get("/editions", headers={"Authorization": "Bearer dg_000000000000_" + "x" * 43})
    revoked = client("read")
    revoke_key(engine, clock, "k2")

    assert (anonymous.status_code, anonymous.headers["WWW-Authenticate"]) == (401, 'Bearer realm="digest"')
    assert "Authorization: Bearer" in anonymous.json()["detail"]
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "unknown API key")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    gone = revoked.get("/editions")
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]


def test_the_rate_is_counted_across_processes_sharing_the_database(
    client: Client, engine: Engine, api_settings: Settings, clock: FixedClock
) -> None:
    c = client("read")
    key = c.headers["Authorization"]
    with WebServer(make_app(api_settings, engine, clock), api_settings, "127.0.0.1", free_port()) as other:
        here = [c.get("/editions").status_code for _ in range(RATE // 2)]
        there = [
            httpx.get(f"{other.url}/api/v1/editions", headers={"Authorization": key}).status_code
            for _ in range(RATE // 2)
        ]
        refused = httpx.get(f"{other.url}/api/v1/editions", headers={"Authorization": key})

    assert here + there == [200] * RATE
    assert refused.status_code == 429


def test_a_key_past_its_rate_gets_429_with_retry_after(client: Client) -> None:
    c = client("read")
    answers = [c.get("/editions").status_code for _ in range(RATE)]

    assert answers == [200] * RATE
    refused = c.get("/editions")
    assert refused.status_code == 429
    # NOW is on the minute: the window ends a minute later.
    assert refused.headers["Retry-After"] == "60"
