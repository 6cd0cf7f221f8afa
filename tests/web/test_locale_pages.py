"""A reader's language on the web pages: chosen on the preferences page, used by their pages and notices."""

from __future__ import annotations

import httpx
from sqlalchemy.engine import Engine

from digest.app.subscriptions import CONFIRM_SUBJECT
from digest.transport.sink import SmtpSink
from digest.web import WebServer
from tests.conftest import NOW
from tests.web.helpers import csrf_of, parsed, subscribe
from tests.web.test_web import active, subscriber, token


def save(client: httpx.Client, url: str, locale: str) -> httpx.Response:
    field = csrf_of(client.get(url).text)
    return client.post(url, data={"csrf": field, "action": "save", "frequency": "daily", "locale": locale})


def test_choosing_a_language_on_the_preferences_page_switches_the_page(client: httpx.Client, engine: Engine) -> None:
    url = f"/preferences/{token('preferences', active(engine, 'ana@example.org'))}"
    before = client.get(url).text
    assert '<html lang="en" dir="ltr">' in before and "Your preferences" in before
    assert '<option value="fr" lang="fr">Français</option>' in before

    answer = save(client, url, "fr")

    assert answer.status_code == 200
    assert '<html lang="fr" dir="ltr">' in answer.text and "Enregistré." in answer.text
    assert '<option value="fr" lang="fr" selected>Français</option>' in answer.text
    assert subscriber(engine, "ana@example.org").locale == "fr"  # type: ignore[union-attr]
    # "Same as the newsletter" clears it.
    assert save(client, url, "").status_code == 200
    assert subscriber(engine, "ana@example.org").locale is None  # type: ignore[union-attr]


def test_an_unknown_language_is_refused_naming_the_field(client: httpx.Client, engine: Engine) -> None:
    url = f"/preferences/{token('preferences', active(engine, 'ana@example.org', locale='de'))}"

    answer = save(client, url, "klingon")

    assert answer.status_code == 400 and 'id="locale" name="locale" aria-invalid="true"' in answer.text
    assert subscriber(engine, "ana@example.org").locale == "de"  # type: ignore[union-attr]


def test_the_unsubscribe_pages_speak_the_readers_language(client: httpx.Client, engine: Engine) -> None:
    layla = active(engine, "layla@example.org", locale="ar")

    page = client.get(f"/unsubscribe/{token('unsubscribe', layla)}")

    assert page.status_code == 200
    assert '<html lang="ar" dir="rtl">' in page.text and "إلغاء الاشتراك؟" in page.text
    assert "<bdi>l***@example.org</bdi>" in page.text


def test_the_confirmation_mail_speaks_the_readers_language(server: WebServer, engine: Engine) -> None:
    sub = active(engine, "eva@example.org", name="Eva Ruiz", locale="es", status="pending")

    _, data = server.app.state.web.mailer.build(
        sub, "confirm", CONFIRM_SUBJECT, NOW, confirm_url="https://news.example.com/confirm/T"
    )

    msg = parsed(data)
    assert msg["Subject"] == "Confirme su suscripción a The Briefing"
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert '<html lang="es" dir="ltr"' in html and "Sí, suscribirme" in html
    assert "Hola, Eva:" in text and "El enlace es válido durante" in text


def test_a_german_browser_subscribes_in_german(client: httpx.Client, engine: Engine, sink: SmtpSink) -> None:
    client.headers["Accept-Language"] = "de-AT,de;q=0.9,en;q=0.5"
    form = client.get("/")
    assert '<html lang="de" dir="ltr">' in form.text and "Abonnieren" in form.text

    answer = subscribe(client, "jonas@example.org")

    assert answer.status_code == 200 and "Sehen Sie in Ihr Postfach" in answer.text
    assert subscriber(engine, "jonas@example.org").locale == "de"  # type: ignore[union-attr]
    [mail] = sink.messages
    assert parsed(mail.data)["Subject"] == "Bestätigen Sie Ihr Abonnement von The Briefing"


def test_a_browser_asking_for_the_site_language_or_an_unknown_one_stores_no_locale(
    client: httpx.Client, engine: Engine
) -> None:
    client.headers["Accept-Language"] = "tlh, en-GB;q=0.8"
    assert '<html lang="en" dir="ltr">' in client.get("/").text

    subscribe(client, "kim@example.org")

    assert subscriber(engine, "kim@example.org").locale is None  # type: ignore[union-attr]
