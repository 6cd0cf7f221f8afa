"""Inbound mail: replies to the List-Unsubscribe mailto and delivery status notifications.

The DSNs below are written after real ones (Postfix's layout, RFC 3464
multipart/report with message/delivery-status and the returned headers). A real
DSN is addressed (To:, Delivered-To:) to the return path of the failed message.
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

from digest.app.bounces import BounceResult
from digest.app.inbound import InboundKind, process_message
from digest.compose.recipients import recipient_for
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.store.db import session_scope
from digest.store.models import Subscriber, SubscriberStatus
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.transport.sink import Received, SmtpSink, free_port
from tests.conftest import NOW
from tests.web.helpers import parsed

DIGEST = Path(sys.executable).parent / "digest"


FROM_MAILBOX = "briefing@news.example.com"


def dsn(
    recipient: str,
    action: str,
    status: str,
    diagnostic: str,
    mid: str = "<20261125061502.4F2A1C0@mx.example.org>",
    to: str = FROM_MAILBOX,
    returned_id: str = "<daily.2026-11-25.s1@news.example.com>",
) -> bytes:
    """An RFC 3464 report in Postfix's layout, delivered to ``to`` (the failed message's return path)."""
    return f"""\
Return-Path: <>
Delivered-To: {to}
Received: by mx.example.org (Postfix) id 4F2A1C0; Wed, 25 Nov 2026 06:15:02 +0000 (UTC)
Date: Wed, 25 Nov 2026 06:15:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
Subject: {"Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)"}
To: {to}
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
X-Postfix-Sender: rfc822; {to}
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
Message-ID: {returned_id}
List-Id: The Briefing <daily.news.example.com>

--4F2A1C0.1795587302/mx.example.org--
""".replace("\n", "\r\n").encode()


def permanent(recipient: str = "ana@example.org", mid: str = "<p1@mx.example.org>", **kw: str) -> bytes:
    return dsn(
        recipient, "failed", "5.1.1", "550 5.1.1 <ana@example.org>: Recipient address rejected: User unknown", mid, **kw
    )


def delayed(recipient: str = "ana@example.org", **kw: str) -> bytes:
    return dsn(recipient, "delayed", "4.4.1", "451 4.4.1 Connection timed out", "<d1@mx.example.org>", **kw)


def return_path(settings: Settings, sub: Subscriber) -> str:
    """The envelope sender of ``sub``'s copies, as the sender passes it to SMTP."""
    return f"briefing+{recipient_for(settings, sub).bounce_tag}@news.example.com"


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


def no_sender(subject: str = "hello") -> bytes:
    return f"To: {FROM_MAILBOX}\r\nSubject: {subject}\r\nMessage-ID: <nofrom@example.net>\r\n\r\nhi\r\n".encode()


def nested(depth: int = 2000) -> bytes:
    """A message whose MIME parts nest ``depth`` deep."""
    head = "From: x@example.net\r\nSubject: hello\r\nMessage-ID: <nested@example.net>\r\nMIME-Version: 1.0\r\n"
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    closing = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    return (head + opening + "Content-Type: text/plain\r\n\r\nhi" + closing).encode()


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


def test_token_in_the_address_unsubscribes_the_token_owner(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    token = mailto_subject(web_settings, ana).split()[1]
    message = reply(
        "please remove me",
        sender="alias@elsewhere.example",
        extra=f"Delivered-To: unsubscribe+{token}@news.example.com\r\n",
    )

    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.UNSUBSCRIBE
    assert status(engine)[0] == SubscriberStatus.UNSUBSCRIBED


def test_bare_unsubscribe_with_a_forged_sender_unsubscribes_nobody(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber, sink: SmtpSink
) -> None:
    # Anyone can write "From: ana@example.org"; without the token it proves nothing.
    result = process_message(engine, web_settings, clock, reply("Re: unsubscribe"))

    assert result.kind == InboundKind.IGNORED
    assert "without a valid token" in result.describe()
    assert status(engine)[0] == SubscriberStatus.ACTIVE
    assert sink.messages == []  # not answered either: the sender may be forged


def test_forged_token_unsubscribes_nobody(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    forged = "unsubscribe " + "WzIsImFiY2RlZjAxMjMiXQ.ZzAAAA.forgedsignatureforgedsignature"

    result = process_message(engine, web_settings, clock, reply(forged, sender="ben@example.org"))

    assert result.kind == InboundKind.IGNORED
    assert status(engine)[0] == SubscriberStatus.ACTIVE
    assert status(engine, "ben@example.org")[0] == SubscriberStatus.ACTIVE


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
    to = return_path(web_settings, ana)
    results = [
        process_message(engine, web_settings, clock, permanent(mid=f"<p{i}@mx.example.org>", to=to))
        for i in range(web_settings.bounce_limit)
    ]

    assert [r.kind for r in results] == [InboundKind.BOUNCE] * web_settings.bounce_limit
    assert results[0].bounces == {"ana@example.org": BounceResult.COUNTED}
    assert results[-1].bounces == {"ana@example.org": BounceResult.BOUNCED}
    assert status(engine) == (SubscriberStatus.BOUNCED, web_settings.bounce_limit)


def test_the_same_report_read_twice_counts_once(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    to = return_path(web_settings, ana)
    process_message(engine, web_settings, clock, permanent(to=to))
    again = process_message(engine, web_settings, clock, permanent(to=to))

    assert again.bounces == {"ana@example.org": BounceResult.DUPLICATE}
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


def test_temporary_failure_is_recorded_only(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    result = process_message(engine, web_settings, clock, delayed(to=return_path(web_settings, ana)))

    assert result.kind == InboundKind.BOUNCE
    assert result.bounces == {"ana@example.org": BounceResult.RECORDED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


def test_forged_bounces_without_our_return_path_bounce_nobody(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    # Three well-formed DSNs naming ana, sent to the From address by anyone.
    results = [
        process_message(engine, web_settings, clock, permanent(mid=f"<forged{i}@mx.example.org>"))
        for i in range(web_settings.bounce_limit)
    ]

    assert [r.kind for r in results] == [InboundKind.IGNORED] * web_settings.bounce_limit
    assert "a***@example.org" in results[0].describe() and "ana@example.org" not in results[0].describe()
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


def test_bounce_to_a_return_path_with_a_forged_signature_is_ignored(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    assert ana.id is not None
    forged = f"briefing+b-{ana.id}-0123456789abcdef@news.example.com"

    results = [process_message(engine, web_settings, clock, permanent(mid=f"<f{i}@mx>", to=forged)) for i in range(3)]

    assert {r.kind for r in results} == {InboundKind.IGNORED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


def test_return_path_decides_whose_bounce_it_is(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    # The DSN names ben, but came back to ana's return path (ana forwards to ben's mailbox):
    # the signed return path is the only part an outsider cannot write.
    result = process_message(
        engine, web_settings, clock, permanent("ben@example.org", to=return_path(web_settings, ana))
    )

    assert result.bounces == {"ana@example.org": BounceResult.COUNTED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)
    assert status(engine, "ben@example.org") == (SubscriberStatus.ACTIVE, 0)


def send_real_digest(engine: Engine, settings: Settings, clock: FixedClock, sink: SmtpSink) -> dict[str, Received]:
    """Send today's digest through the real SMTP sink; what each address received."""
    from digest.app.send import send_digest
    from digest.ingest.save import upsert_articles
    from digest.transport.smtp import SMTPTransport, parse_smtp_url
    from tests.conftest import STANDARD_DRAFTS

    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        send_digest(engine, settings, "daily", t, clock)
    return {m.rcpt_tos[0]: m for m in sink.messages}


def test_without_verp_a_bounce_must_quote_a_delivery_we_recorded(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber, sink: SmtpSink
) -> None:
    settings = web_settings.model_copy(update={"verp": False})
    received = send_real_digest(engine, settings, clock, sink)
    ours = parsed(received["ana@example.org"].data)["Message-ID"]

    assert received["ana@example.org"].mail_from == FROM_MAILBOX
    forged = process_message(engine, settings, clock, permanent(mid="<x1@mx>", returned_id="<guess@news.example.com>"))
    real = process_message(engine, settings, clock, permanent(mid="<x2@mx>", returned_id=ours))
    assert forged.kind == InboundKind.IGNORED
    assert real.bounces == {"ana@example.org": BounceResult.COUNTED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


def test_bounce_of_a_real_digest_comes_back_to_its_return_path_and_counts(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber, sink: SmtpSink
) -> None:
    mail_from = {a: m.mail_from for a, m in send_real_digest(engine, web_settings, clock, sink).items()}

    assert mail_from["ana@example.org"] != mail_from["ben@example.org"]
    assert mail_from["ana@example.org"].startswith("briefing+b-")
    result = process_message(engine, web_settings, clock, permanent(to=mail_from["ana@example.org"]))
    assert result.bounces == {"ana@example.org": BounceResult.COUNTED}
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


def test_report_that_mentions_unsubscribe_is_still_a_bounce(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber
) -> None:
    # The returned headers of a digest carry List-Unsubscribe; the subject of a DSN
    # is the MTA's. Neither may turn a bounce into an unsubscribe.
    message = permanent(to=return_path(web_settings, ana)).replace(
        b"Subject: Undelivered", b"Subject: unsubscribe Undelivered"
    )

    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.BOUNCE
    assert status(engine) == (SubscriberStatus.ACTIVE, 1)


# ---------------------------------------------------------------- malformed mail


@pytest.mark.parametrize("message", [no_sender(), nested()], ids=["no-from", "2000-nested-parts"])
def test_malformed_message_gets_a_result_and_changes_nothing(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana: Subscriber, message: bytes
) -> None:
    result = process_message(engine, web_settings, clock, message)

    assert result.kind == InboundKind.MALFORMED
    assert result.message_id in ("<nofrom@example.net>", "<nested@example.net>")
    assert status(engine) == (SubscriberStatus.ACTIVE, 0)


# ---------------------------------------------------------------- the command


def run_inbound(settings: Settings, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=settings.database_url,
        DIGEST_SECRET_KEY=settings.secret_key.get_secret_value(),
        DIGEST_CONFIG="/dev/null",
    )
    return subprocess.run([str(DIGEST), "inbound", *args], input=stdin, capture_output=True, env=env, timeout=60)


@pytest.mark.slow
def test_command_reads_one_message_from_stdin(engine: Engine, web_settings: Settings, ana: Subscriber) -> None:
    done = run_inbound(web_settings, stdin=reply(mailto_subject(web_settings, ana)))

    assert done.returncode == 0, done.stderr.decode()
    assert b"unsubscribe: unsubscribed a***@example.org" in done.stdout
    assert status(engine)[0] == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.slow
def test_command_processes_an_mbox(engine: Engine, web_settings: Settings, ana: Subscriber, tmp_path: Path) -> None:
    to = return_path(web_settings, ana)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for message in (permanent(mid="<a@mx>", to=to), permanent(mid="<b@mx>", to=to), delayed(to=to), reply("hello")):
        box.add(message)
    box.close()

    done = run_inbound(web_settings, "--mbox", str(tmp_path / "bounces.mbox"))

    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 4 message(s): 0 unsubscribe, 0 complaint, 3 bounce, 1 ignored, 0 malformed" in done.stdout
    assert status(engine) == (SubscriberStatus.ACTIVE, 2)


@pytest.mark.slow
def test_command_processes_a_maildir(engine: Engine, web_settings: Settings, ana: Subscriber, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for i in range(3):
        box.add(permanent(mid=f"<m{i}@mx>", to=return_path(web_settings, ana)))
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


@pytest.mark.slow
def test_command_answers_a_malformed_piped_message_with_exit_0(
    engine: Engine, web_settings: Settings, ana: Subscriber
) -> None:
    done = run_inbound(web_settings, stdin=no_sender())

    assert done.returncode == 0, done.stderr.decode()  # exit 1 would make the MTA bounce it (backscatter)
    assert done.stdout.startswith(b"malformed: ")
    assert b"Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_command_skips_poison_messages_and_processes_the_rest(
    engine: Engine, web_settings: Settings, ana: Subscriber, tmp_path: Path, kind: str
) -> None:
    to = return_path(web_settings, ana)
    box: mailbox.Mailbox = (
        mailbox.mbox(tmp_path / "in.mbox") if kind == "mbox" else mailbox.Maildir(tmp_path / "Maildir", create=True)
    )
    # Poison first: before the fix the run stopped there, on every run.
    for message in (no_sender(), nested(), *(permanent(mid=f"<q{i}@mx>", to=to) for i in range(3))):
        box.add(message)
    box.close()

    target = str(tmp_path / "in.mbox") if kind == "mbox" else str(tmp_path / "Maildir")
    done = run_inbound(web_settings, f"--{kind}", target)

    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 5 message(s): 0 unsubscribe, 0 complaint, 3 bounce, 0 ignored, 2 malformed" in done.stdout
    assert status(engine) == (SubscriberStatus.BOUNCED, 3)


@pytest.mark.slow
def test_command_asks_the_mta_to_retry_when_the_store_is_down(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/digest")

    done = run_inbound(settings, stdin=reply("hello"))

    assert done.returncode == 75, done.stderr.decode()
    assert b"database unavailable" in done.stderr
