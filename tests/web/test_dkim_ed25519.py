"""Ed25519 dual signing (RFC 8463): both signatures of every message verify with dkimpy."""

from __future__ import annotations

import base64
import os
import pickle
import re
import stat
import subprocess
from pathlib import Path

import dkim
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.compose.dkim import DkimSigner, generate_key, signer_from_settings, static_dns, verify_each
from digest.core.clock import FixedClock
from digest.core.errors import ConfigError
from digest.core.settings import DkimSettings, Settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from digest.transport.smtp import SMTPTransport, parse_smtp_url
from tests.conftest import NOW, STANDARD_DRAFTS
from tests.web.test_dkim import DIGEST, KEY, message

ED_KEY = generate_key(algorithm="ed25519")
RECORDS = {
    "s2026._domainkey.news.example.com": KEY.txt_value(),
    "e2026._domainkey.news.example.com": ED_KEY.txt_value(),
}
DNS = static_dns(RECORDS)
BOTH_PASS = {"rsa-sha256": True, "ed25519-sha256": True}


@pytest.fixture
def dual(clock: FixedClock) -> DkimSigner:
    return DkimSigner(
        "s2026",
        "news.example.com",
        KEY.private_pem,
        clock=clock,
        ed25519_selector="e2026",
        ed25519_private_key_pem=ED_KEY.private_pem,
    )


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    return [
        dkim.util.parse_tag_value(value.replace(b"\r\n", b""))
        for name, value in dkim.DKIM(data).headers
        if name.lower() == b"dkim-signature"
    ]


def test_dual_signed_message_carries_two_signatures_that_both_verify(dual: DkimSigner) -> None:
    data = dual.sign(message())

    assert verify_each(data, DNS) == BOTH_PASS


def test_both_signatures_are_relaxed_over_the_same_headers_and_body(dual: DkimSigner) -> None:
    rsa_sig, ed_sig = signatures(dual.sign(message()))

    assert (rsa_sig[b"a"], ed_sig[b"a"]) == (b"rsa-sha256", b"ed25519-sha256")
    assert rsa_sig[b"c"] == ed_sig[b"c"] == b"relaxed/relaxed"
    assert rsa_sig[b"h"] == ed_sig[b"h"] and b"list-unsubscribe-post" in rsa_sig[b"h"]
    assert rsa_sig[b"bh"] == ed_sig[b"bh"]
    assert (rsa_sig[b"s"], ed_sig[b"s"]) == (b"s2026", b"e2026")


def test_a_wrong_ed25519_record_fails_only_that_signature(dual: DkimSigner) -> None:
    other = generate_key(algorithm="ed25519")
    broken = static_dns({**RECORDS, "e2026._domainkey.news.example.com": other.txt_value()})

    assert verify_each(dual.sign(message()), broken) == {"rsa-sha256": True, "ed25519-sha256": False}


def test_a_missing_ed25519_record_fails_only_that_signature(dual: DkimSigner) -> None:
    rsa_only = static_dns({"s2026._domainkey.news.example.com": KEY.txt_value()})

    assert verify_each(dual.sign(message()), rsa_only) == {"rsa-sha256": True, "ed25519-sha256": False}


def test_a_changed_message_fails_both_signatures(dual: DkimSigner) -> None:
    data = dual.sign(message()).replace(b"Stories", b"Storiez", 1)

    assert verify_each(data, DNS) == {"rsa-sha256": False, "ed25519-sha256": False}


def test_dual_signer_survives_the_trip_to_a_worker_process(dual: DkimSigner) -> None:
    copy = pickle.loads(pickle.dumps(dual))

    assert verify_each(copy.sign(message()), DNS) == BOTH_PASS


def test_sign_stream_dual_signs_every_message(dual: DkimSigner) -> None:
    signed = list(dual.sign_stream(iter([message(subject=f"Edition {i}") for i in range(6)]), depth=3))
    dual.close()

    assert [verify_each(m, DNS) for m in signed] == [BOTH_PASS] * 6


def test_dual_signer_is_built_from_settings(tmp_path: Path, clock: FixedClock) -> None:
    (tmp_path / "rsa.pem").write_bytes(KEY.private_pem)
    (tmp_path / "ed.pem").write_bytes(ED_KEY.private_pem)
    cfg = DkimSettings(
        selector="s2026",
        domain="news.example.com",
        private_key_file=str(tmp_path / "rsa.pem"),
        ed25519_selector="e2026",
        ed25519_private_key_file=str(tmp_path / "ed.pem"),
    )

    signer = signer_from_settings(Settings(dkim=cfg), clock)

    assert signer is not None and verify_each(signer.sign(message()), DNS) == BOTH_PASS


@pytest.mark.parametrize(
    "fields",
    [
        {"ed25519_selector": "e2026"},
        {"ed25519_private_key_file": "ed.pem"},
        {"ed25519_selector": "s2026", "ed25519_private_key_file": "ed.pem"},
    ],
    ids=["selector-alone", "key-alone", "same-selector-as-rsa"],
)
def test_ed25519_settings_come_as_a_pair_with_their_own_selector(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="ed25519_selector"):
        DkimSettings(selector="s2026", domain="news.example.com", private_key_file="rsa.pem", **fields)


def test_an_rsa_key_as_the_ed25519_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "rsa.pem").write_bytes(KEY.private_pem)
    cfg = DkimSettings(
        selector="s2026",
        domain="news.example.com",
        private_key_file=str(tmp_path / "rsa.pem"),
        ed25519_selector="e2026",
        ed25519_private_key_file=str(tmp_path / "rsa.pem"),
    )

    with pytest.raises(ConfigError, match="dkim.ed25519_private_key_file.*not an Ed25519 key"):
        signer_from_settings(Settings(dkim=cfg))


def test_every_digest_sent_with_a_dual_signer_verifies_twice(
    engine: Engine, web_settings: Settings, sink: SmtpSink, clock: FixedClock, dual: DkimSigner
) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, STANDARD_DRAFTS, NOW)
        add_subscriber(s, "ana@example.org", NOW, name="Ana")
        add_subscriber(s, "ben@example.org", NOW, topics="Science")

    with SMTPTransport(parse_smtp_url(sink.url)) as t:
        report = send_digest(engine, web_settings, "daily", t, clock, signer=dual)

    assert report.sent == 2 and len(sink.messages) == 2
    assert [verify_each(m.data, DNS) for m in sink.messages] == [BOTH_PASS] * 2


def test_keygen_ed25519_writes_a_key_and_prints_the_raw_public_key_record(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_CONFIG"] = "/dev/null"
    key_file = tmp_path / "keys" / "e1.private.pem"
    cmd = [str(DIGEST), "dkim", "keygen", "--algorithm", "ed25519", "--selector", "e1"]
    cmd += ["--domain", "news.example.com", "-o", str(key_file)]

    done = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=tmp_path)

    assert done.returncode == 0, done.stderr.decode()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    out = done.stdout.decode()
    assert out.startswith("e1._domainkey.news.example.com. 3600 IN TXT (")
    txt = "".join(re.findall(r'"([^"]*)"', out))
    assert txt.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(txt.split("p=", 1)[1])) == 32  # RFC 8463: the raw key, no SPKI wrapper
    signer = DkimSigner(
        "s2026",
        "news.example.com",
        KEY.private_pem,
        ed25519_selector="e1",
        ed25519_private_key_pem=key_file.read_bytes(),
    )
    records = {"s2026._domainkey.news.example.com": KEY.txt_value(), "e1._domainkey.news.example.com": txt}
    assert verify_each(signer.sign(message()), static_dns(records)) == BOTH_PASS


def test_keygen_rejects_an_unknown_algorithm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_CONFIG"] = "/dev/null"
    cmd = [str(DIGEST), "dkim", "keygen", "--algorithm", "dsa", "--selector", "x", "-o", str(tmp_path / "k.pem")]

    done = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=tmp_path)

    assert done.returncode == 3 and b"--algorithm" in done.stderr and b"Traceback" not in done.stderr
    assert not (tmp_path / "k.pem").exists()
