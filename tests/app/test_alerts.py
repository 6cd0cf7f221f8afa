"""Breaking alerts through the real outbox and a real SMTP server, and the digest after them."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from email.message import EmailMessage

from sqlalchemy.engine import Engine

from digest.app.alerts import send_alerts
from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import NOW, draft

STORM = draft("Storm surge floods harbour district", 10, breaking=True, priority=9, category="World")
OTHERS = [
    draft("Rail tunnel reopens after repairs", 60, category="World"),
    draft("Lenders tighten credit for small firms", 90, category="Business"),
]


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def text_of(data: bytes) -> str:
    part = parsed(data).get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return, attr-defined]


def subscribe(engine: Engine, address: str, **kw: object) -> None:
    with session_scope(engine) as session:
        add_subscriber(session, address, NOW - timedelta(days=1), **kw)  # type: ignore[arg-type]


def store(engine: Engine, *drafts: object, at: object = NOW) -> None:
    with session_scope(engine) as session:
        upsert_articles(session, list(drafts), at)  # type: ignore[arg-type]


def received(sink: SmtpSink, address: str) -> list[bytes]:
    return [m.data for m in sink.messages if m.rcpt_tos == [address]]


def test_alert_goes_to_opted_in_subscribers_and_the_digest_leaves_the_story_out(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    store(engine, STORM, *OTHERS)
    subscribe(engine, "ana@example.org", alerts=True)
    subscribe(engine, "ben@example.org")

    run = send_alerts(engine, settings, clock)

    assert run.send is not None and run.send.sent == 1
    (alert,) = received(sink, "ana@example.org")
    msg = parsed(alert)
    assert msg["Subject"] == "Breaking: Storm surge floods harbour district"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Storm surge floods harbour district" in text_of(alert)
    send_digest(engine, settings, "daily", None, clock)
    ana_digest, ben_digest = received(sink, "ana@example.org")[1], received(sink, "ben@example.org")[0]
    assert "Storm surge" not in text_of(ana_digest) and "Rail tunnel reopens" in text_of(ana_digest)
    assert "Storm surge floods harbour district" in text_of(ben_digest)
