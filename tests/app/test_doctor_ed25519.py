"""``digest doctor``'s dkim-ed25519 line (dual signing, RFC 8463) against a local authoritative DNS server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.app.doctor import Check, Dns, dns_checks, make_resolver
from digest.compose.dkim import KeyPair, generate_key
from digest.core.settings import DkimSettings, Settings
from tests.dnsserver import GOOD_IP, Zone, dns_server

RSA = generate_key()
ED, OTHER_ED = generate_key(algorithm="ed25519"), generate_key(algorithm="ed25519")
GOOD, MISMATCH, MISSING = "good.example", "mismatch.example", "missing.example"


@pytest.fixture(scope="module")
def dns() -> Iterator[Dns]:
    zone = Zone()
    for domain in (GOOD, MISMATCH, MISSING):
        zone.txt(f"r2026._domainkey.{domain}", RSA.txt_value())
    zone.txt(f"e2026._domainkey.{GOOD}", ED.txt_value())
    zone.txt(f"e2026._domainkey.{MISMATCH}", OTHER_ED.txt_value())
    with dns_server(zone) as port:
        yield Dns(make_resolver("127.0.0.1", port, timeout=2.0))


def settings_for(domain: str, tmp_path: Path, ed: KeyPair | None = ED) -> Settings:
    (tmp_path / "rsa.pem").write_bytes(RSA.private_pem)
    extra = {}
    if ed is not None:
        (tmp_path / "ed.pem").write_bytes(ed.private_pem)
        extra = {"ed25519_selector": "e2026", "ed25519_private_key_file": str(tmp_path / "ed.pem")}
    return Settings(
        from_addr=f"The Briefing <briefing@{domain}>",
        dkim=DkimSettings(selector="r2026", domain=domain, private_key_file=str(tmp_path / "rsa.pem"), **extra),
    )


def dkim_lines(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.name.startswith("dkim")}


def test_a_published_ed25519_key_passes_next_to_the_rsa_one(dns: Dns, tmp_path: Path) -> None:
    lines = dkim_lines(dns_checks(settings_for(GOOD, tmp_path), dns, GOOD_IP))

    assert {n: c.status for n, c in lines.items()} == {"dkim": "pass", "dkim-ed25519": "pass"}


def test_another_ed25519_key_fails_only_that_line_with_the_record_to_publish(dns: Dns, tmp_path: Path) -> None:
    lines = dkim_lines(dns_checks(settings_for(MISMATCH, tmp_path), dns, GOOD_IP))

    assert (lines["dkim"].status, lines["dkim-ed25519"].status) == ("pass", "fail")
    assert lines["dkim-ed25519"].fix == (
        f'publish TXT at e2026._domainkey.{MISMATCH}: "v=DKIM1; k=ed25519; p={ED.public_b64}"'
    )


def test_a_missing_ed25519_record_fails_that_line(dns: Dns, tmp_path: Path) -> None:
    lines = dkim_lines(dns_checks(settings_for(MISSING, tmp_path), dns, GOOD_IP))

    assert lines["dkim-ed25519"].status == "fail" and "no DKIM key at e2026._domainkey" in lines["dkim-ed25519"].detail


def test_without_an_ed25519_key_there_is_no_ed25519_line(dns: Dns, tmp_path: Path) -> None:
    lines = dkim_lines(dns_checks(settings_for(GOOD, tmp_path, ed=None), dns, GOOD_IP))

    assert list(lines) == ["dkim"]
