"""Inbound mail: replies to the List-Unsubscribe mailto and delivery status notifications.

The DSNs below are written after real ones (Postfix's layout, RFC 3464
multipart/report with message/delivery-status and the returned headers).
"""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy.engine import Engine

from digest.clock import FixedClock
from digest.db import session_scope
from digest.deliver import recipient_for
from digest.inbound import InboundKind, process_message
from digest.lifecycle import BounceResult
from digest.models import Subscriber, SubscriberStatus
from digest.settings import Settings
from digest.subscribers import add_subscriber, find_subscriber
from tests.conftest import NOW

DIGEST = Path(sys.executable).parent / "digest"


def dsn(
    recipient: str, action: str, status: str, diagnostic: str, mid: str = "<20261125061502.4F2A1C0@mx.example.org>"
) -> bytes:
    """An RFC 3464 report in Postfix's layout."""
    return f"""\
Return-Path: <>
Received: by mx.example.org (Postfix) id 4F2A1C0; Wed, 25 Nov 2026 06:15:02 +0000 (UTC)
Date: Wed, 25 Nov 2026 06:15:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
Subject: {"Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)"}
To: briefing@news.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="4F2A1C0.1795587302/mx.example.org"
Message-Id: {mid}

This is a MIME-encapsulated message.

--4F2A1C0.1795587302/mx.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mail.example.org[192.0.2.25] said: {diagnostic}

--4F2A1C0.1795587302/mx.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
X-Postfix-Queue-ID: 4F2A1C0
X-Postfix-Sender: rfc822; briefing@news.example.com
Arrival-Date: Wed, 25 Nov 2026 06:00:01 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; {diagnostic}

--4F2A1C0.1795587302/mx.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: The Briefing <briefing@news.example.com>
To: <{recipient}>
Subject: The Briefing: Harbour cities agree storm warning pact
Date: Wed, 25 Nov 2026 06:00:00 +0000
Message-ID: <daily.2026-11-25.s1@news.example.com>
List-Id: The Briefing <daily.news.example.com>

--4F2A1C0.1795587302/mx.example.org--
""".replace("\n", "\r\n").encode()


def permanent(recipient: str = "ana@example.org", mid: str = "<p1@mx.example.org>") -> bytes:
    return dsn(
        recipient, "failed", "5.1.1", "550 5.1.1 <ana@example.org>: Recipient address rejected: User unknown", mid
    )


def delayed(recipient: str = "ana@example.org") -> bytes:
    return dsn(recipient, "delayed", "4.4.1", "451 4.4.1 Connection timed out", "<d1@mx.example.org>")


def reply(subject: str, sender: str = "Ana Lima <ana@example.org>", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: unsubscribe@news.example.com\r\nSubject: {subject}\r\n"
        f"Date: Wed, 25 Nov 2026 07:00:00 +0000\r\nMessage-ID: <reply.{abs(hash(subject))}@example.org>\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease take me off the list.\r\n"
    ).encode()


@pytest.fixture
def ana(engine: Engine) -> Subscriber:
    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, "ana@example.org", NOW, name="Ana Lima")
        add_subscriber(s, "ben@example.org", NOW)
        return sub


def status(engine: Engine, address: str = "ana@example.org") -> tuple[str, int]:
    with session_scope(engine) as s:
        sub = find_subscriber(s, address)
        assert sub is not None
        return sub.status, sub.bounce_count


def mailto_subject(settings: Settings, sub: Subscriber) -> str:
    """The subject the List-Unsubscribe mailto of ``sub``'s digest asks a mail client to send."""
    mailto = recipient_for(settings, sub).unsubscribe_mailto
    return unquote(mailto.split("subject=", 1)[1])


# ---------------------------------------------------------------- unsubscribe by mail


def test_reply_to_the_mailto_unsubscribes_the_token_owner(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    # Sent from another address (a forwarding alias): the token decides, not the sender.
    message = reply(mailto_subject(web_settings, ana), sender="alias@elsewhere.example")

    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.UNSUBSCRIBE
    assert status(engine) == (SubscriberStatus.UNSUBSCRIBED, 0)
    assert status(engine, "ben@example.org") == (SubscriberStatus.ACTIVE, 0)


def test_reply_without_a_valid_token_unsubscribes_the_sender(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    result = process_message(engine, web_settings, clock, reply("Re: unsubscribe"))

    assert result.kind == InboundKind.UNSUBSCRIBE
    assert status(engine)[0] == SubscriberStatus.UNSUBSCRIBED


def test_forged_token_in_the_subject_falls_back_to_the_sender(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    forged = "unsubscribe " + "WzIsImFiY2RlZjAxMjMiXQ.ZzAAAA.forgedsignatureforgedsignature"

    result = process_message(engine, web_settings, clock, reply(forged, sender="ben@example.org"))

    assert result.kind == InboundKind.UNSUBSCRIBE
    assert status(engine)[0] == SubscriberStatus.ACTIVE
    assert status(engine, "ben@example.org")[0] == SubscriberStatus.UNSUBSCRIBED


def test_automatic_reply_is_ignored(engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber) -> None:
    message = reply("Re: unsubscribe", extra="Auto-Submitted: auto-replied\r\n")

    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.IGNORED
    assert status(engine)[0] == SubscriberStatus.ACTIVE


def test_ordinary_mail_is_ignored(engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber) -> None:
    result = process_message(engine, web_settings, clock, reply("Loved today's top story"))

    assert result.kind == InboundKind.IGNORED
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


# ---------------------------------------------------------------- bounces


def test_permanent_failure_counts_and_marks_bounced_at_the_limit(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    results = [
        process_message(engine, web_settings, clock, permanent(mid=f"<p{i}@mx.example.org>"))
        for i in range(web_settings.bounce_limit)
    ]

    assert [r.kind for r in results] == [InboundKind.BOUNCE] * web_settings.bounce_limit
    assert results[0].bounces == {"ana@example.org": BounceResult.COUNTED}
    assert results[-1].bounces == {"ana@example.org": BounceResult.BOUNCED}
    assert status(engine) == (SubscriberStatus.BOUNCED, web_settings.bounce_limit)


def test_the_same_report_read_twice_counts_once(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    process_message(engine, web_settings, clock, permanent())
    again = process_message(engine, web_settings, clock, permanent())

    assert again.bounces == {"ana@example.org": BounceResult.DUPLICATE}
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


def test_temporary_failure_is_recorded_only(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    result = process_message(engine, web_settings, clock, delayed())

    assert result.kind == InboundKind.BOUNCE
    assert result.bounces == {"ana@example.org": BounceResult.RECORDED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


def test_bounce_for_an_unknown_address_changes_nothing(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    result = process_message(engine, web_settings, clock, permanent("stranger@example.net"))

    assert result.bounces == {"stranger@example.net": BounceResult.UNKNOWN}
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


def test_report_that_mentions_unsubscribe_is_still_a_bounce(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    # The returned headers of a digest carry List-Unsubscribe; the subject of a DSN
    # is the MTA's. Neither may turn a bounce into an unsubscribe.
    message = permanent().replace(b"Subject: Undelivered", b"Subject: unsubscribe Undelivered")

    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.BOUNCE
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


# ---------------------------------------------------------------- the command


def run_inbound(settings: Settings, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_DATABASE_URL=settings.database_url, DIGEST_SECRET_KEY="test-secret", DIGEST_CONFIG="/dev/null")
    return subprocess.run([str(DIGEST), "inbound", *args], input=stdin, capture_output=True, env=env, timeout=60)


@pytest.mark.slow
def test_command_reads_one_message_from_stdin(engine: Engine, web_settings: Settings, ana: Subscriber) -> None:
    done = run_inbound(web_settings, stdin=reply(mailto_subject(web_settings, ana)))

    assert done.returncode == 0, done.stderr.decode()
    assert b"unsubscribe: unsubscribed a\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2a@example.org" in done.stdout
    assert status(engine)[0] == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.slow
def test_command_processes_an_mbox(engine: Engine, web_settings: Settings, ana: Subscriber, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for message in (permanent(mid="<a@mx>"), permanent(mid="<b@mx>"), delayed(), reply("hello")):
        box.add(message)
    box.close()

    done = run_inbound(web_settings, "--mbox", str(tmp_path / "bounces.mbox"))

    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 4 message(s): 0 unsubscribe, 3 bounce, 1 ignored" in done.stdout
    assert status(engine) == (SubscriberStatus.ACTIVE, 2)


@pytest.mark.slow
def test_command_processes_a_maildir(engine: Engine, web_settings: Settings, ana: Subscriber, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for i in range(3):
        box.add(permanent(mid=f"<m{i}@mx>"))
    box.close()

    done = run_inbound(web_settings, "--maildir", str(tmp_path / "Maildir"))

    assert done.returncode == 0, done.stderr.decode()
    assert status(engine) == (SubscriberStatus.BOUNCED, 3)


@pytest.mark.slow
def test_command_reports_a_missing_mailbox(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'digest.db'}")

    done = run_inbound(settings, "--mbox", str(tmp_path / "nope.mbox"))

    assert done.returncode == 3
    assert b"no such mbox file" in done.stderr
