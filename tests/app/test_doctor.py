"""``digest doctor``'s checks against a local authoritative DNS server with good and broken records.

Every lookup goes to a dnslib server on loopback (tests/dnsserver.py); the zone holds
one good setup and one variant per broken record, each breaking exactly one thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from digest.app.doctor import (
    NO_IP_FIX,
    Check,
    Dns,
    check_host,
    check_secret,
    check_tls,
    dns_checks,
    make_resolver,
    organisational_domain,
    run_doctor,
    sending_ip,
)
from digest.compose.dkim import KeyPair, generate_key
from digest.core.settings import DEFAULT_SECRET_KEY, DkimSettings, Settings
from digest.transport.sink import SmtpSink, free_port
from tests.dnsserver import (
    GOOD,
    GOOD_IP,
    KEY_MISMATCH,
    NO_DMARC,
    NO_INCLUDE,
    PTR_MISMATCH_IP,
    SELECTOR,
    Zone,
    dns_server,
    doctor_zone,
)
from tests.smtp_script import ScriptedSink, self_signed

FIXES = {
    "spf": 'add "ip4:192.0.2.25"',
    "dkim": f"publish TXT at {SELECTOR}._domainkey.{KEY_MISMATCH}",
    "dmarc": f"publish TXT at _dmarc.{NO_DMARC}",
    "ptr": f"add an A/AAAA record mail.relay.example -> {PTR_MISMATCH_IP}",
}


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    """The configured key, and another one (published where the key does not match)."""
    return generate_key(), generate_key()


@pytest.fixture(scope="module")
def dns_port(keys: tuple[KeyPair, KeyPair]) -> Iterator[int]:
    with dns_server(doctor_zone(*keys)) as port:
        yield port


@pytest.fixture
def dns(dns_port: int) -> Dns:
    return Dns(make_resolver("127.0.0.1", dns_port, timeout=2.0))


@pytest.fixture
def key_file(tmp_path: Path, keys: tuple[KeyPair, KeyPair]) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(keys[0].private_pem)
    return path


def settings_for(domain: str, key_file: Path, **kw: object) -> Settings:
    return Settings(
        from_addr=f"The Briefing <briefing@{domain}>",
        smtp_url="smtp://mail.relay.example:587?starttls=true",  # type: ignore[arg-type]
        secret_key="x" * 40,  # type: ignore[arg-type]
        dkim=DkimSettings(selector=SELECTOR, domain=domain, private_key_file=str(key_file)),
        **kw,  # type: ignore[arg-type]
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_good_setup_passes_every_dns_check(dns: Dns, key_file: Path) -> None:
    settings = settings_for(GOOD, key_file)
    checks = dns_checks(settings, dns, sending_ip(settings, dns))
    assert [(c.name, c.status) for c in checks] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
        ("ptr", "pass"),
    ]


def test_a_relay_on_loopback_is_not_taken_for_the_sending_ip(dns_port: int, key_file: Path) -> None:
    settings = settings_for(GOOD, key_file, base_url=f"http://127.0.0.1:{free_port()}")
    settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{free_port()}")
    checks = by_name(run_doctor(settings, make_resolver("127.0.0.1", dns_port, timeout=2.0)))
    for name in ("spf", "ptr"):
        assert (checks[name].status, checks[name].fix) == ("fail", NO_IP_FIX)
        assert "127.0.0.1 is not public" in checks[name].detail


def test_sending_ip_is_the_relay_hosts_address(dns: Dns, key_file: Path) -> None:
    assert sending_ip(settings_for(GOOD, key_file), dns) == GOOD_IP


@pytest.mark.parametrize(
    ("domain", "ip", "broken"),
    [
        (NO_INCLUDE, GOOD_IP, "spf"),
        (KEY_MISMATCH, GOOD_IP, "dkim"),
        (NO_DMARC, GOOD_IP, "dmarc"),
        (GOOD, PTR_MISMATCH_IP, "ptr"),
    ],
)
def test_each_broken_record_fails_exactly_its_check_with_its_fix(
    dns: Dns, key_file: Path, domain: str, ip: str, broken: str
) -> None:
    checks = by_name(dns_checks(settings_for(domain, key_file), dns, ip))
    assert {name for name, c in checks.items() if c.status != "pass"} == {broken}
    assert FIXES[broken] in checks[broken].fix


def test_dmarc_fails_when_dkim_domain_is_not_aligned_with_from(dns: Dns, key_file: Path) -> None:
    settings = settings_for(GOOD, key_file)
    settings.dkim = DkimSettings(selector=SELECTOR, domain="relay.example", private_key_file=str(key_file))
    check = by_name(dns_checks(settings, dns, GOOD_IP))["dmarc"]
    assert (check.status, check.fix) == (
        "fail",
        "sign with dkim.domain = good.example (or a subdomain of good.example)",
    )


# ---------------------------------------------------------------- the SPF evaluator


def spf_zone() -> Zone:
    zone = Zone()
    zone.txt("redirect.example", "v=spf1 redirect=_spf.relay.example")
    zone.txt("_spf.relay.example", "v=spf1 ip4:192.0.2.0/25 ip6:2001:db8::/32 -all")
    zone.txt("a.example", "v=spf1 a/24 -all").a("a.example", "203.0.113.9")
    zone.txt("soft.example", "v=spf1 ~all")
    zone.txt("exp.example", "v=spf1 ip4:192.0.2.25 -all exp=explain.%{d}")  # exp= never changes the result
    zone.txt("two.example", "v=spf1 -all").txt("two.example", "v=spf1 +all")
    zone.txt("dangling.example", "v=spf1 include:nothing.example -all")
    # A chain of 11 includes: the 11th lookup is over RFC 7208's limit of 10.
    for i in range(11):
        zone.txt(f"l{i}.example", f"v=spf1 include:l{i + 1}.example -all")
    zone.txt("l11.example", "v=spf1 +all")
    # Ten lookups in all (the limit itself) still evaluate.
    for i in range(9):
        zone.txt(f"k{i}.example", f"v=spf1 include:k{i + 1}.example -all")
    zone.txt("k9.example", "v=spf1 ip4:192.0.2.25 -all")
    return zone


@pytest.fixture(scope="module")
def spf_dns() -> Iterator[Dns]:
    with dns_server(spf_zone()) as port:
        yield Dns(make_resolver("127.0.0.1", port, timeout=2.0))


@pytest.mark.parametrize(
    ("ip", "domain", "result"),
    [
        ("192.0.2.25", "redirect.example", "pass"),
        ("2001:db8::25", "redirect.example", "pass"),
        ("192.0.2.200", "redirect.example", "fail"),
        ("203.0.113.77", "a.example", "pass"),
        ("203.0.114.77", "a.example", "fail"),
        ("192.0.2.25", "soft.example", "softfail"),
        ("192.0.2.25", "exp.example", "pass"),
        ("192.0.2.25", "two.example", "permerror"),
        ("192.0.2.25", "dangling.example", "permerror"),
        ("192.0.2.25", "none.example", "none"),
        ("192.0.2.25", "l0.example", "permerror"),
        ("192.0.2.25", "k0.example", "pass"),
    ],
)
def test_spf_evaluation(spf_dns: Dns, ip: str, domain: str, result: str) -> None:
    assert check_host(spf_dns, ip, domain)[0] == result


def test_spf_lookup_limit_is_named_in_the_reason(spf_dns: Dns) -> None:
    assert "more than 10 DNS lookups" in check_host(spf_dns, "192.0.2.25", "l0.example")[1]


def test_organisational_domain() -> None:
    assert [organisational_domain(d) for d in ("mail.news.example.org", "news.example.co.uk", "example.org")] == [
        "example.org",
        "example.co.uk",
        "example.org",
    ]


# ---------------------------------------------------------------- secret and TLS


@pytest.mark.parametrize(
    ("key", "status"), [(DEFAULT_SECRET_KEY, "fail"), ("short-secret", "fail"), ("k" * 32, "pass")]
)
def test_secret_key_strength(key: str, status: str) -> None:
    assert check_secret(Settings(secret_key=key)).status == status  # type: ignore[arg-type]


def test_tls_fails_on_a_relay_without_starttls(sink: SmtpSink) -> None:
    check = check_tls(Settings(smtp_url=sink.url))  # type: ignore[arg-type]
    assert (check.status, check.detail) == ("fail", f"127.0.0.1:{sink.port} does not offer STARTTLS")


def test_tls_fails_when_the_relay_cannot_be_reached() -> None:
    check = check_tls(Settings(smtp_url=f"smtp://127.0.0.1:{free_port()}", smtp_timeout=2))  # type: ignore[arg-type]
    assert check.status == "fail" and check.detail.startswith("cannot reach 127.0.0.1:")


def test_tls_passes_with_starttls_and_a_certificate_that_verifies(tmp_path: Path) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context) as relay:
        check = check_tls(Settings(smtp_url=f"{relay.url}?starttls=true&cafile={cert}"))  # type: ignore[arg-type]
    assert check.status == "pass" and check.detail.startswith(f"STARTTLS to 127.0.0.1:{relay.port}: TLSv1.")


def test_tls_passes_over_smtps(tmp_path: Path) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context, implicit_tls=True) as relay:
        check = check_tls(Settings(smtp_url=f"{relay.url}?cafile={cert}"))  # type: ignore[arg-type]
    assert check.status == "pass" and "certificate CN=127.0.0.1" in check.detail


def test_tls_fails_when_the_certificate_does_not_verify(tmp_path: Path) -> None:
    context, _ = self_signed(tmp_path)
    with ScriptedSink(tls=context) as relay:
        check = check_tls(Settings(smtp_url=f"{relay.url}?starttls=true"))  # type: ignore[arg-type]
    assert check.status == "fail" and "certificate does not verify" in check.detail


def test_tls_warns_when_offered_but_not_used(tmp_path: Path) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context) as relay:
        check = check_tls(Settings(smtp_url=f"{relay.url}?cafile={cert}"))  # type: ignore[arg-type]
    assert (check.status, check.fix) == ("warn", "add ?starttls=true to smtp_url")
