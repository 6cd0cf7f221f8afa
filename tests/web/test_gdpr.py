"""GDPR self-service on the preferences page over real HTTP: download my data, delete me."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Delivery, SubscriberEvent, SubscriberStatus, SuppressionReason
from digest.store.subscribers import set_status
from digest.store.suppressions import email_hash, list_suppressions
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.helpers import csrf_of, subscribe
from tests.web.test_web import active, subscriber, token


def sent_digest(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    """One real edition sent to every active subscriber (through the test SMTP server)."""
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
    send_digest(engine, settings, "daily", None, clock)


def save_preferences(client: httpx.Client, url: str) -> None:
    """Save the preferences form once (which records a ``preferences`` event)."""
    answer = client.post(url, data={"csrf": csrf_of(client.get(url).text), "action": "save", "frequency": "daily"})
    assert answer.status_code == 200


def count(engine: Engine, table: type, subscriber_id: int) -> int:
    t = table.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stmt = select(func.count()).select_from(t).where(t.c.subscriber_id == subscriber_id)
        return int(conn.execute(stmt).scalar_one())


def test_download_my_data_is_a_json_attachment_of_their_own_data_only(
    client: httpx.Client, engine: Engine, web_settings: Settings, clock: FixedClock
) -> None:
    ana, _ = active(engine, "ana@example.org", name="Ana"), active(engine, "ben@example.org", name="Ben")
    sent_digest(engine, web_settings, clock)
    with session_scope(engine) as s:
        set_status(s, "ana@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    url = f"/preferences/{token('preferences', ana)}"
    assert "Download my data" in client.get(url).text
    save_preferences(client, url)

    answer = client.get(f"{url}/data")

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.headers["content-disposition"] == 'attachment; filename="my-data.json"'
    data = json.loads(answer.text)
    assert data["subscriber"]["email"] == "ana@example.org" and data["subscriber"]["status"] == "unsubscribed"
    assert [(d["digest"], d["status"]) for d in data["deliveries"]] == [("daily", "sent")]
    assert data["deliveries"][0]["sent_at"].startswith("2026-11-25")
    assert data["suppression"]["reason"] == SuppressionReason.UNSUBSCRIBED
    assert [e["kind"] for e in data["events"]] == ["preferences"]
    assert "ben" not in answer.text.lower()


def test_download_with_a_forged_token_shows_the_bad_link_page(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")
    answer = client.get(f"/preferences/{token('preferences', ana, secret='another-secret-key-0123456789')}/data")
    assert answer.status_code == 400 and "ana@" not in answer.text


def test_delete_me_asks_first_then_erases_everything_but_a_suppression_hash(
    client: httpx.Client, engine: Engine, web_settings: Settings, clock: FixedClock
) -> None:
    ana, ben = active(engine, "ana@example.org"), active(engine, "ben@example.org")
    sent_digest(engine, web_settings, clock)
    assert ana.id is not None and count(engine, Delivery, ana.id) == 1
    url = f"/preferences/{token('preferences', ana)}"
    assert f"{url}/delete" in client.get(url).text
    save_preferences(client, url)
    assert count(engine, SubscriberEvent, ana.id) == 1

    confirm_page = client.get(f"{url}/delete")
    assert confirm_page.status_code == 200 and subscriber(engine, "ana@example.org") is not None
    answer = client.post(f"{url}/delete", data={"csrf": csrf_of(confirm_page.text), "confirm": "erase"})

    assert answer.status_code == 200 and "deleted" in answer.text
    assert subscriber(engine, "ana@example.org") is None
    assert count(engine, Delivery, ana.id) == 0 and count(engine, SubscriberEvent, ana.id) == 0
    with engine.connect() as conn:
        [entry] = list_suppressions(conn)
    assert entry.email_hash == email_hash("ana@example.org") and entry.email == ""
    # Someone else is untouched.
    assert ben.id is not None and count(engine, Delivery, ben.id) == 1
    # The link now says the data is gone, and the address gets no mail without a fresh confirmation.
    after = client.get(url)
    assert after.status_code == 410 and "Your data has been deleted" in after.text
    assert client.get(f"{url}/data").status_code == 410


def test_delete_without_the_confirmation_step_or_csrf_erases_nothing(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")
    url = f"/preferences/{token('preferences', ana)}/delete"
    field = csrf_of(client.get(url).text)

    no_csrf = client.post(url, data={"confirm": "erase"})
    unconfirmed = client.post(url, data={"csrf": field})

    assert no_csrf.status_code == 403 and unconfirmed.status_code == 200
    assert subscriber(engine, "ana@example.org") is not None


def test_an_erased_address_signing_up_again_is_not_mailed_until_confirmed(client: httpx.Client, engine: Engine) -> None:
    ana = active(engine, "ana@example.org")
    url = f"/preferences/{token('preferences', ana)}/delete"
    client.post(url, data={"csrf": csrf_of(client.get(url).text), "confirm": "erase"})

    subscribe(client, "ana@example.org")

    again = subscriber(engine, "ana@example.org")
    assert again is not None and again.status == SubscriberStatus.PENDING
