"""DKIM: messages signed by DkimSigner verify with dkimpy against a key served by injected DNS."""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed
from sqlalchemy.engine import Engine

from digest.app.send import send_digest, send_test
from digest.compose.dkim import DkimSigner, canonicalize_body, generate_key, signer_from_settings, static_dns, verify
from digest.compose.message import PreparedMessage, Recipient
from digest.compose.render import Markers, Rendered
from digest.core.clock import FixedClock
from digest.core.errors import ConfigError
from digest.core.settings import DkimSettings, Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.helpers import parsed

DIGEST = Path(sys.executable).parent / "digest"
KEY = generate_key(2048)
DNS = static_dns({"s2026._domainkey.news.example.com": KEY.txt_value()})


@pytest.fixture
def signer(clock: FixedClock) -> DkimSigner:
    return DkimSigner("s2026", "news.example.com", KEY.private_pem, clock=clock)


def message(
    subject: str = "The Briefing: storm pact", unsubscribe_url: str = "https://news.example.com/unsubscribe/t0k3n"
) -> bytes:
    markers = Markers.new()
    rendered = Rendered(
        subject=subject,
        html=f"<html><body>  <p>{markers.marker('greeting')}</p>\t<p>Stories   here</p>  </body></html>",
        text=f"{markers.marker('greeting')}\n\nStories   here  \n",
        markers=markers,
    )
    prepared = PreparedMessage(
        rendered,
        inlined_html=rendered.html,
        from_addr="The Briefing <briefing@news.example.com>",
        reply_to=None,
        list_id="The Briefing <daily.news.example.com>",
        digest="daily",
        slot="2026-11-25",
    )
    who = Recipient(
        email="ana@example.org",
        name="Ana Lima",
        subscriber_id=1,
        unsubscribe_url=unsubscribe_url,
        preferences_url="https://news.example.com/preferences/p",
        unsubscribe_mailto="mailto:unsubscribe@news.example.com?subject=unsubscribe%20t0k3n",
    )
    return prepared.fill(who, NOW)


def signed_headers(data: bytes) -> list[str]:
    sig = dkim.util.parse_tag_value(parsed(data)["DKIM-Signature"].encode().replace(b"\r\n", b""))
    return [h.strip().decode() for h in sig[b"h"].split(b":")]


def test_signed_message_verifies_with_dkimpy(signer: DkimSigner) -> None:
    assert verify(signer.sign(message()), DNS)


def test_signature_covers_the_rfc_8058_and_identity_headers(signer: DkimSigner) -> None:
    h = signed_headers(signer.sign(message()))

    for name in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in h
    assert h.count("list-unsubscribe-post") == 2, "oversigned: an added copy breaks the signature"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Stories", b"St0ries", 1),
        lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
        lambda m: m.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n", 1),
        lambda m: m.replace(b"ana@example.org", b"eve@example.org"),
    ],
    ids=["body", "removed-list-unsubscribe-post", "added-list-unsubscribe-post", "to"],
)
def test_changed_message_no_longer_verifies(signer: DkimSigner, tamper: object) -> None:
    data = signer.sign(message())

    assert not verify(tamper(data), DNS)  # type: ignore[operator]


def test_whitespace_changes_in_transit_still_verify(signer: DkimSigner) -> None:
    # relaxed/relaxed: refolding and whitespace runs may change on the way.
    data = signer.sign(message())
    changed = data.replace(b"Subject: The Briefing:", b"Subject:   The Briefing:").replace(
        b"Stories   here", b"Stories here"
    )

    assert verify(changed, DNS)


def test_long_headers_are_folded_and_still_verify(signer: DkimSigner) -> None:
    long_url = "https://news.example.com/unsubscribe/" + "x" * 150
    data = signer.sign(message(subject="A very long subject " * 8, unsubscribe_url=long_url))

    header_block = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header_block.split(b"\r\n") if not line.startswith(b" <")) <= 998
    assert all(
        len(line) <= 78 for line in header_block.split(b"\r\n") if line.startswith((b"DKIM", b" ")) and b"<" not in line
    )
    assert verify(data, DNS)


def test_sign_stream_keeps_order_and_every_signature_verifies(signer: DkimSigner) -> None:
    messages = [message(subject=f"Edition {i}") for i in range(12)]

    signed = list(signer.sign_stream(iter(messages), depth=4))
    signer.close()

    assert [parsed(m)["Subject"] for m in signed] == [f"Edition {i}" for i in range(12)]
    assert all(verify(m, DNS) for m in signed)


def test_body_canonicalization_matches_dkimpy() -> None:
    rng = random.Random(8058)
    pieces = [b"a", b" ", b"\t", b"\r\n", b"  ", b"x y", b"\r\n\r\n", b"\n", b"=20", b" \t "]
    for _ in range(3000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert canonicalize_body(body) == Relaxed.canonicalize_body(body), body


def test_dkimpy_signature_of_the_same_message_also_verifies() -> None:
    # The reference path, for comparison: dkimpy signing, dkimpy verifying.
    data = message()
    header = dkim.sign(data, b"s2026", b"news.example.com", KEY.private_pem, canonicalize=(b"relaxed", b"relaxed"))

    assert verify(header + data, DNS)


# ---------------------------------------------------------------- configuration


def test_signer_is_built_from_settings(tmp_path: Path, clock: FixedClock) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(KEY.private_pem)
    settings = Settings(dkim=DkimSettings(selector="s2026", domain="news.example.com", private_key_file=str(key_file)))

    signer = signer_from_settings(settings, clock)

    assert signer is not None and verify(signer.sign(message()), DNS)
    assert signer_from_settings(Settings()) is None


def test_unreadable_or_bad_key_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    missing = Settings(
        dkim=DkimSettings(selector="s", domain="news.example.com", private_key_file=str(tmp_path / "no"))
    )
    with pytest.raises(ConfigError, match="dkim.private_key_file"):
        signer_from_settings(missing)

    with pytest.raises(ConfigError) as info:
        DkimSigner("s", "news.example.com", b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    assert "c2VjcmV0" not in str(info.value)


# ---------------------------------------------------------------- sending


def test_every_digest_sent_with_a_signer_verifies(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, signer: DkimSigner
) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW, name="Ana")
        add_subscriber(s, "ben@example.org", NOW, topics="Science")

    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        report = send_digest(engine, web_settings, "daily", t, clock, signer=signer)
        with session_scope(engine) as s:
            send_test(s, web_settings, "daily", ["test@example.org"], t, clock, signer=signer)

    assert report.sent == 2 and len(sink.messages) == 3
    assert all(verify(m.data, DNS) for m in sink.messages)


def test_every_digest_sent_carries_a_signed_feedback_id(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, signer: DkimSigner
) -> None:
    web_settings.feedback_sender_id = "news:desk"
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW, name="Ana")

    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        send_digest(engine, web_settings, "daily", t, clock, signer=signer)

    data = sink.messages[0].data
    assert parsed(data)["Feedback-ID"] == "daily:2026-11-25:daily.news.example.com:news-desk"
    assert "feedback-id" in signed_headers(data) and verify(data, DNS)


def test_a_fixed_dkim_feedback_id_setting_is_the_header_every_digest_carries(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, signer: DkimSigner
) -> None:
    web_settings.dkim.feedback_id = "daily:digest:example"  # [dkim] feedback_id, as configurations set it
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW, name="Ana")

    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        send_digest(engine, web_settings, "daily", t, clock, signer=signer)

    data = sink.messages[0].data
    assert parsed(data).get_all("Feedback-ID") == ["daily:digest:example"]
    assert verify(data, DNS)


def test_confirmation_email_is_signed_when_dkim_is_configured(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, signer: DkimSigner
) -> None:
    from digest.app import subscriptions as lifecycle
    from digest.app.notices import Mailer
    from digest.web.server import smtp_transport_factory

    mailer = Mailer(web_settings, smtp_transport_factory(web_settings), signer=signer)
    lifecycle.request_subscription(
        engine, web_settings, clock, lifecycle.SubscribeForm(email="ana@example.org"), mailer
    )

    assert verify(sink.messages[0].data, DNS)


# ---------------------------------------------------------------- keygen


@pytest.mark.slow
def test_keygen_writes_a_private_key_and_prints_the_record_that_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_CONFIG"] = "/dev/null"
    key_file = tmp_path / "keys" / "sel1.private.pem"
    cmd = [str(DIGEST), "dkim", "keygen", "--selector", "sel1", "--domain", "news.example.com", "-o", str(key_file)]

    done = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=tmp_path)

    assert done.returncode == 0, done.stderr.decode()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "sel1.public.pem").is_file()
    out = done.stdout.decode()
    assert out.startswith("sel1._domainkey.news.example.com. 3600 IN TXT (")
    txt = "".join(re.findall(r'"([^"]*)"', out))
    signer = DkimSigner("sel1", "news.example.com", key_file.read_bytes())
    assert verify(signer.sign(message()), static_dns({"sel1._domainkey.news.example.com": txt}))
    again = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=tmp_path)
    assert again.returncode == 3 and b"exists already" in again.stderr


def test_the_service_outbox_signs_what_it_sends(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, signer: DkimSigner
) -> None:
    from digest.edition.build import get_or_build_edition
    from digest.outbox.drain import drain_outbox
    from digest.outbox.ledger import queue_deliveries

    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW, name="Ana")
    edition, _, _ = get_or_build_edition(engine, web_settings, "daily", NOW)
    assert edition.id is not None
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id, NOW)

    drain_outbox(engine, web_settings, clock, transport=SMTPTransport(parse_smtp_url(sink.url)), signer=signer)

    assert len(sink.messages) == 1 and verify(sink.messages[0].data, DNS)


def test_signer_survives_the_trip_to_a_worker_process(signer: DkimSigner) -> None:
    """[delivery] processes > 1 hands the signer to worker processes by pickling it."""
    import pickle

    copy = pickle.loads(pickle.dumps(signer))

    assert verify(copy.sign(message()), DNS)


def test_the_body_hash_made_from_a_variants_parts_is_dkimpys(signer: DkimSigner) -> None:
    import hashlib

    rng = random.Random(5)
    pieces = ["  ", "\t", " \n", "\n\n", "word", ".", "é", "<p>", "=", "x" * 90, " \t "]
    for _ in range(60):
        markers = Markers.new()
        text = "".join(rng.choice([*pieces, markers.marker("greeting"), markers.marker("name")]) for _ in range(80))
        html = "".join(
            rng.choice([*pieces, markers.marker("unsubscribe_url"), markers.marker("name")]) for _ in range(80)
        )
        rendered = Rendered(subject="Spaces", html=html, text=text, markers=markers)
        prepared = PreparedMessage(
            rendered, inlined_html=html, from_addr="briefing@news.example.com", reply_to=None,
            list_id="<daily.news.example.com>", digest="daily", slot="2026-11-25",
        )  # fmt: skip
        who = Recipient(
            email="ana@example.org", name=rng.choice(["Ana  Lima", "Ana\tLima ", " ", "Ana Lima"]), subscriber_id=1,
            unsubscribe_url="https://news.example.com/unsubscribe/" + "t0k3n" * rng.randint(1, 30),
            preferences_url="https://news.example.com/preferences/p", unsubscribe_mailto="mailto:u@news.example.com",
        )  # fmt: skip
        data, body_hash = prepared.fill_hashed(who, NOW)
        assert data == prepared.fill(who, NOW)
        body = data.split(b"\r\n\r\n", 1)[1]
        assert body_hash == hashlib.sha256(Relaxed.canonicalize_body(body)).digest()
        signed = signer.sign(data, body_hash)
        assert signed == signer.sign(data) and verify(signed, DNS)
