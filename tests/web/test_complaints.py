"""Complaints: ARF feedback reports (RFC 5965; Yahoo's CFL, Microsoft's JMRP) through ``digest inbound``.

The reports in tests/fixtures/arf are written after RFC 5965's examples and the
providers' documented layouts; each quotes a digest really sent through the SMTP
sink (``@ORIGINAL@``), as the subscriber's mailbox received it (with the
Return-Path its MTA added).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.app.inbound import InboundKind, process_message
from digest.app.subscriptions import events
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.store.db import session_scope
from digest.store.models import SubscriberEventKind, SubscriberStatus
from digest.store.pauses import paused_digests
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.store.suppressions import suppression_of
from digest.transport.sink import Received, SmtpSink
from tests.conftest import NOW
from tests.web.test_inbound import DIGEST, send_real_digest

ARF = Path(__file__).resolve().parents[1] / "fixtures" / "arf"


@pytest.fixture
def sent(engine: Engine, web_settings: Settings, clock: FixedClock, sink: SmtpSink) -> dict[str, Received]:
    """Today's digest, really sent to ana and ben."""
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW, name="Ana Lima")
        add_subscriber(s, "ben@example.org", NOW)
    return send_real_digest(engine, web_settings, clock, sink)


def as_received(m: Received) -> bytes:
    """The message as the recipient's mailbox holds it: its MTA wrote the Return-Path."""
    return f"Return-Path: <{m.mail_from}>\r\n".encode() + m.data


def drop_header(data: bytes, name: str) -> bytes:
    """``data`` without header field ``name`` (and its folded lines)."""
    head, _, body = data.partition(b"\r\n\r\n")
    pattern = rb"(?im)^" + re.escape(name.encode()) + rb":.*(?:\r\n[ \t].*)*\r\n"
    return re.sub(pattern, b"", head + b"\r\n") + b"\r\n" + body


def header_block(data: bytes, *names: str) -> bytes:
    """Only the named header fields of ``data`` (a headers-only report)."""
    head = data.partition(b"\r\n\r\n")[0].decode()
    keep = [line for line in re.split(r"\r\n(?![ \t])", head) if line.split(":", 1)[0].lower() in names]
    return ("\r\n".join(keep) + "\r\n").encode()


def arf(name: str, original: bytes, report_id: str = "<fbl.1@mail.example.net>") -> bytes:
    text = (ARF / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return text.replace(b"@REPORT_ID@", report_id.encode()).replace(b"@ORIGINAL@", original)


def state(engine: Engine, address: str = "ana@example.org") -> tuple[str, str | None, list[str]]:
    """(status, suppression reason, event kinds) of an address."""
    with session_scope(engine) as s:
        sub = find_subscriber(s, address)
        assert sub is not None and sub.id is not None
        kinds = [e.kind for e in events(s, sub.id)]
        held = suppression_of(s.connection(), address)
        return sub.status, held.reason if held else None, kinds


def test_rfc5965_report_unsubscribes_suppresses_and_records_the_complaint(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    result = process_message(engine, web_settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))

    assert result.kind == InboundKind.COMPLAINT
    assert result.describe() == "complaint from a***@example.org (by unsubscribe token): unsubscribed"
    assert state(engine) == (
        SubscriberStatus.UNSUBSCRIBED,
        "complained",
        [SubscriberEventKind.COMPLAINT, SubscriberEventKind.UNSUBSCRIBED],
    )
    assert state(engine, "ben@example.org")[:2] == (SubscriberStatus.ACTIVE, None)


def test_complaint_event_names_the_edition_and_the_feedback_type(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    process_message(engine, web_settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))

    with session_scope(engine) as s:
        sub = find_subscriber(s, "ana@example.org")
        assert sub is not None and sub.id is not None
        (event,) = events(s, sub.id, SubscriberEventKind.COMPLAINT)
    assert re.fullmatch(r"edition=\d+; Feedback-Type=abuse; User-Agent=SomeGenerator/1.0; .*", event.detail)
    assert event.ref == "<fbl.1@mail.example.net>"


def test_yahoo_cfl_report_without_list_unsubscribe_is_found_by_the_return_path(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    original = drop_header(as_received(sent["ana@example.org"]), "List-Unsubscribe")
    original = drop_header(original, "To").replace(b"\r\n\r\n", b"\r\nTo: redacted@yahoo.com\r\n\r\n", 1)

    result = process_message(engine, web_settings, clock, arf("yahoo_cfl.eml", original))

    assert result.describe() == "complaint from a***@example.org (by return path): unsubscribed"
    assert state(engine)[:2] == (SubscriberStatus.UNSUBSCRIBED, "complained")


def test_microsoft_jmrp_report_is_a_complaint(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    result = process_message(
        engine, web_settings, clock, arf("microsoft_jmrp.eml", as_received(sent["ben@example.org"]))
    )

    assert result.kind == InboundKind.COMPLAINT
    assert state(engine, "ben@example.org")[:2] == (SubscriberStatus.UNSUBSCRIBED, "complained")
    assert state(engine)[:2] == (SubscriberStatus.ACTIVE, None)


def test_without_verp_a_headers_only_report_is_found_by_a_message_id_we_recorded(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    settings = web_settings.model_copy(update={"verp": False})
    original = header_block(sent["ana@example.org"].data, "message-id", "from", "subject")

    result = process_message(engine, settings, clock, arf("headers_only.eml", original))

    assert result.describe() == "complaint from a***@example.org (by Message-ID): unsubscribed"


def test_with_verp_a_message_id_alone_is_not_enough(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    original = header_block(sent["ana@example.org"].data, "message-id", "from", "subject")

    result = process_message(engine, web_settings, clock, arf("headers_only.eml", original))

    assert result.kind == InboundKind.IGNORED
    assert state(engine)[:2] == (SubscriberStatus.ACTIVE, None)


def test_report_about_a_message_we_did_not_send_changes_nothing(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    settings = web_settings.model_copy(update={"verp": False})
    forged = b"From: The Briefing <briefing@news.example.com>\r\nMessage-ID: <daily.2026-11-24.s1@news.example.com>\r\n"

    result = process_message(engine, settings, clock, arf("headers_only.eml", forged))

    assert result.kind == InboundKind.IGNORED
    assert state(engine)[:2] == (SubscriberStatus.ACTIVE, None)


def test_report_quoting_a_forged_unsubscribe_token_changes_nothing(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    original = drop_header(sent["ana@example.org"].data, "List-Unsubscribe").replace(
        b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://news.example.com/unsubscribe/" + b"A" * 40 + b">\r\n\r\n", 1
    )

    result = process_message(engine, web_settings, clock, arf("rfc5965.eml", original))

    assert result.kind == InboundKind.IGNORED
    assert state(engine)[:2] == (SubscriberStatus.ACTIVE, None)


def test_the_same_report_read_twice_records_one_complaint(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    report = arf("rfc5965.eml", as_received(sent["ana@example.org"]))
    process_message(engine, web_settings, clock, report)
    again = process_message(engine, web_settings, clock, report)

    assert again.describe() == "complaint from a***@example.org (by unsubscribe token): duplicate"
    assert state(engine)[2].count(SubscriberEventKind.COMPLAINT) == 1


def test_complained_address_gets_no_further_digest_even_after_re_import(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received], sink: SmtpSink
) -> None:
    from digest.core.errors import InputError

    process_message(engine, web_settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))
    with pytest.raises(InputError, match="suppressed \\(complained\\)"), session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW, status="active", update=True)


@pytest.mark.slow
def test_digest_inbound_command_reports_the_complaint(
    engine: Engine, web_settings: Settings, sent: dict[str, Received]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=web_settings.database_url,
        DIGEST_SECRET_KEY=web_settings.secret_key.get_secret_value(),
        DIGEST_CONFIG="/dev/null",
    )
    report = arf("yahoo_cfl.eml", as_received(sent["ana@example.org"]))

    done = subprocess.run([str(DIGEST), "inbound"], input=report, capture_output=True, env=env, timeout=60)

    assert done.returncode == 0, done.stderr.decode()
    assert (
        done.stdout.decode().strip()
        == "complaint: complaint from a***@example.org (by unsubscribe token): unsubscribed"
    )
    assert state(engine)[:2] == (SubscriberStatus.UNSUBSCRIBED, "complained")


# ---------------------------------------------------------------- complaint rate and pause


def test_complaint_rate_above_the_limit_over_the_sample_pauses_the_digest(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    settings = web_settings.model_copy(update={"complaint_min_sample": 2, "complaint_pause_rate": 0.4})

    result = process_message(engine, settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))

    with engine.connect() as conn:
        pauses = paused_digests(conn)
    assert list(pauses) == ["daily"]
    assert pauses["daily"].reason == (
        "1 complaint(s) in 2 messages of edition 2026-11-25 (50.00%), above complaint_pause_rate 40.00%"
    )
    assert result.describe().endswith("; digest paused: " + pauses["daily"].reason)


def test_complaint_rate_below_the_minimum_sample_does_not_pause(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    settings = web_settings.model_copy(update={"complaint_min_sample": 3, "complaint_pause_rate": 0.4})

    process_message(engine, settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))

    with engine.connect() as conn:
        assert paused_digests(conn) == {}


def test_complaint_rate_at_or_below_the_limit_does_not_pause(
    engine: Engine, web_settings: Settings, clock: FixedClock, sent: dict[str, Received]
) -> None:
    settings = web_settings.model_copy(update={"complaint_min_sample": 2, "complaint_pause_rate": 0.5})

    process_message(engine, settings, clock, arf("rfc5965.eml", as_received(sent["ana@example.org"])))

    with engine.connect() as conn:
        assert paused_digests(conn) == {}
