"""Preview: exactly what a subscriber gets, the same code path as sending, nothing recorded."""

from __future__ import annotations

import email
import random
from email import policy
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.send import preview_message, send_digest
from digest.core.clock import FixedClock
from digest.core.errors import NotFoundError, TemplateError
from digest.core.settings import Settings
from digest.store.db import session_scope
from digest.store.models import Delivery, Edition
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from tests.conftest import NOW, STANDARD_DRAFTS, draft, seed

SUBS = [("ana@example.org", "Ana Lima", None), ("ben@example.org", "Ben Okafor", "Science")]


def preview(engine: Engine, settings: Settings, clock: FixedClock, who: str | None = None):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return preview_message(s, settings, "daily", clock, who)


def test_preview_records_nothing(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    seed(engine, STANDARD_DRAFTS, SUBS)
    preview(engine, settings, clock, "ana@example.org")
    with session_scope(engine) as s:
        assert s.exec(select(Edition)).all() == [] and s.exec(select(Delivery)).all() == []


def test_preview_is_byte_identical_to_the_sent_message_but_for_the_date(
    engine: Engine, settings: Settings, clock: FixedClock, sink: SmtpSink
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBS)
    before = preview(engine, settings, clock, "ben@example.org")
    with SMTPTransport(parse_smtp_url(settings.smtp_url.get_secret_value())) as t:
        send_digest(engine, settings, "daily", t, clock)
    sent = next(m.data for m in sink.messages if m.rcpt_tos == ["ben@example.org"])

    def body(data: bytes) -> tuple[str, str, str]:
        msg = email.message_from_bytes(data, policy=policy.default)
        return (
            str(msg["Subject"]),
            msg.get_body(("html",)).get_content(),  # type: ignore[union-attr]
            msg.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
        )

    import difflib

    a, b = body(before.data), body(sent)
    assert a[0] == b[0]
    assert a[1] == b[1], list(difflib.unified_diff(a[1].splitlines(), b[1].splitlines(), lineterm="", n=0))[:12]
    assert a[2] == b[2]
    assert email.message_from_bytes(before.data)["Message-ID"] == email.message_from_bytes(sent)["Message-ID"]


def test_preview_shows_the_subscribers_own_topics_and_name(
    engine: Engine, settings: Settings, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, SUBS)
    result = preview(engine, settings, clock, "ben@example.org")
    assert "Hi Ben," in result.text
    assert "Volunteers map new asteroids" in result.text and "Rail tunnel" not in result.text


def test_preview_leaves_out_breaking_stories_for_a_subscriber_who_opted_out(
    engine: Engine, settings: Settings, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, [])
    with session_scope(engine) as s:
        add_subscriber(s, "cara@example.org", NOW, name="Cara", topics="Science", breaking=False)
    result = preview(engine, settings, clock, "cara@example.org")
    assert "Volunteers map new asteroids" in result.text and "Harbour cities" not in result.text


def test_preview_of_unknown_subscriber_is_an_error(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    with pytest.raises(NotFoundError, match="nobody@example.org"):
        preview(engine, settings, clock, "nobody@example.org")


def test_preview_warns_about_an_empty_edition(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    result = preview(engine, settings, clock)
    assert any("no new articles" in w for w in result.warnings)


def test_preview_warns_about_gmail_clipping(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    settings.digests["daily"] = settings.digests["daily"].model_copy(update={"max_articles": 300})
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    titles = [" ".join("".join(rng.choices(letters, k=7)) for _ in range(6)) for _ in range(300)]
    long = [draft(t, 5 + i, summary="x" * 400) for i, t in enumerate(titles)]
    seed(engine, long, [])
    result = preview(engine, settings, clock)
    assert any("102 KB" in w for w in result.warnings)


def test_preview_warns_about_relative_links_and_missing_alt(
    engine: Engine, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "daily.html").write_text(
        '{% extends "email/base.html" %}{% block content %}'
        '<a href="/relative/page">x</a><img src="https://x.example/i.png">{% endblock %}'
    )
    settings.templates_dir = str(tmp_path)
    seed(engine, STANDARD_DRAFTS, [])
    warnings = preview(engine, settings, clock).warnings
    assert any("relative link" in w and "/relative/page" in w for w in warnings)
    assert any("without alt" in w for w in warnings)


def test_template_typo_fails_preview_with_file_and_line(
    engine: Engine, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "daily.html").write_text("<p>fine</p>\n<p>{{ digset.title }}</p>\n")
    settings.templates_dir = str(tmp_path)
    seed(engine, STANDARD_DRAFTS, [])
    with pytest.raises(TemplateError) as info:
        preview(engine, settings, clock)
    assert "daily.html:2" in str(info.value) and "digset" in str(info.value)


def test_personal_links_are_not_reported_as_relative(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    seed(engine, STANDARD_DRAFTS, SUBS)
    assert preview(engine, settings, clock, "ana@example.org").warnings == []
