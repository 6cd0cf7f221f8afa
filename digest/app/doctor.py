"""``digest doctor``: a preflight of the sending setup, one verdict and one fix per line.

Mailbox providers reject or junk bulk mail that is not authenticated (SPF, DKIM,
DMARC), whose sending IP has no forward-confirmed reverse DNS, that cannot be
unsubscribed in one click, or that travels in clear. Each check here looks at one
of those from the outside, as a receiver would, and says what to change.

DNS goes through :class:`Dns`, built on a dnspython resolver the caller passes in
(the system's, or one pointed at a given nameserver and port), so tests answer from
a local authoritative server and the checks never depend on the internet.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import dns.exception
import dns.rdata
import dns.resolver
import dns.reversename
import httpx

from digest.app.spf import Dns, DnsFailure, check_host
from digest.compose.dkim import public_key_b64
from digest.compose.message import address_domain
from digest.core.dns import make_resolver
from digest.core.settings import DEFAULT_SECRET_KEY, Settings
from digest.transport.smtp import SMTPConfig, smtp_config

Status = Literal["pass", "warn", "fail"]
MIN_SECRET_LENGTH = 32
NO_IP = "no sending IP: the relay host does not resolve"
NO_IP_FIX = "pass --sending-ip with the public address your mail leaves from"
# A relay on these is not what receivers see: SPF and rDNS of it say nothing.
_LOCAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
# Second-level labels under which registrations happen (co.uk, com.au, ...): without the
# Public Suffix List, these are how the organisational domain of a name is guessed.
_SECOND_LEVEL = {"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: what was checked, the verdict, what was seen and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """The line as a JSON object (``--json``)."""
        return asdict(self)


# ---------------------------------------------------------------- the checks


def organisational_domain(domain: str) -> str:
    """The registrable part of ``domain`` (``mail.news.example.co.uk`` -> ``example.co.uk``), a close guess.

    DMARC's relaxed alignment compares these. The real rule uses the Public Suffix
    List; the last two labels (three under co.uk-like second levels) cover common cases.
    """
    labels = domain.rstrip(".").lower().split(".")
    keep = 3 if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def from_domain(settings: Settings) -> str:
    """The domain of the configured From address."""
    return address_domain(settings.from_addr).lower()


def sending_ip(settings: Settings, dns_: Dns, given: str | None = None) -> str | None:
    """``given``, or the first address of the SMTP relay's host (the address receivers see, if it relays out)."""
    if given:
        return str(ipaddress.ip_address(given))
    host = smtp_config(settings).host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        found = dns_.addresses(host)
        return found[0] if found else None


def check_spf(dns_: Dns, domain: str, ip: str | None, no_ip: str = NO_IP) -> Check:
    """SPF of the From domain (also the envelope domain: return paths use it) authorises ``ip``."""
    name = "spf"
    if ip is None:
        return Check(name, "fail", no_ip, NO_IP_FIX)
    result, reason = check_host(dns_, ip, domain)
    fix = f'add "ip4:{ip}" (or "include:" your relay\'s SPF domain) to the v=spf1 TXT record of {domain}'
    if ip.count(":"):
        fix = fix.replace("ip4:", "ip6:")
    if result == "pass":
        return Check(name, "pass", f"{ip} is authorised for {domain} ({reason})")
    if result == "none":
        return Check(name, "fail", reason, f'publish a TXT record at {domain}: "v=spf1 ip4:{ip} -all"')
    if result in ("permerror", "temperror"):
        return Check(name, "fail", f"SPF {result}: {reason}", f"fix the v=spf1 record of {domain} (and its includes)")
    return Check(name, "fail", f"SPF {result} for {ip} at {domain} ({reason})", fix)


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def check_dkim(dns_: Dns, settings: Settings) -> Check:
    """The public key at ``selector._domainkey.domain`` is the half of the configured private key."""
    cfg = settings.dkim
    if not (cfg.selector and cfg.domain and cfg.private_key_file):
        fix = "set [dkim] selector, domain and private_key_file"
        return Check("dkim", "fail", "DKIM signing is not configured", fix)
    return _check_key(dns_, "dkim", "rsa", cfg.selector, cfg.domain, cfg.private_key_file, "dkim.private_key_file")


def check_dkim_ed25519(dns_: Dns, settings: Settings) -> Check | None:
    """Like :func:`check_dkim` for the Ed25519 key of dual signing; None when it is not configured."""
    cfg = settings.dkim
    if not (cfg.ed25519_selector and cfg.ed25519_private_key_file and cfg.domain):
        return None
    setting = "dkim.ed25519_private_key_file"
    return _check_key(
        dns_, "dkim-ed25519", "ed25519", cfg.ed25519_selector, cfg.domain, cfg.ed25519_private_key_file, setting
    )


def _check_key(dns_: Dns, name: str, k: str, selector: str, domain: str, key_file: str, setting: str) -> Check:
    where = f"{selector}._domainkey.{domain}"
    try:
        mine = public_key_b64(Path(key_file).read_bytes())
    except OSError as exc:
        return Check(name, "fail", f"cannot read {setting}: {exc.strerror}", f"fix {setting}")
    except (ValueError, TypeError):
        return Check(name, "fail", f"{setting} is not an unencrypted PEM key", f"fix {setting}")
    publish = f'publish TXT at {where}: "v=DKIM1; k={k}; p={mine}"'
    keys = [t for t in dns_.txt(where) if "p=" in t]
    if not keys:
        return Check(name, "fail", f"no DKIM key at {where}", publish)
    published = _tags(keys[0]).get("p", "")
    if not published:
        return Check(name, "fail", f"the key at {where} is revoked (empty p=)", publish)
    if published != mine:
        return Check(name, "fail", f"the key at {where} does not match {setting}", publish)
    return Check(name, "pass", f"key at {where} matches {setting}")


def check_dmarc(dns_: Dns, settings: Settings, domain: str) -> Check:
    """A DMARC policy at ``_dmarc`` of the From domain, and DKIM's d= aligned with the From domain."""
    name = "dmarc"
    where = f"_dmarc.{domain}"
    records = [t for t in dns_.txt(where) if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if not records and organisational_domain(domain) != domain:
        where = f"_dmarc.{organisational_domain(domain)}"
        records = [t for t in dns_.txt(where) if t.replace(" ", "").lower().startswith("v=dmarc1")]
    publish = f'publish TXT at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}" (then tighten p=)'
    if not records:
        return Check(name, "fail", f"no DMARC record at _dmarc.{domain}", publish)
    tags = _tags(records[0])
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Check(name, "fail", f"the DMARC record at {where} has no valid p= policy", publish)
    d = (settings.dkim.domain or "").lower()
    strict = tags.get("adkim", "r").lower() == "s"
    aligned = bool(d) and (d == domain if strict else organisational_domain(d) == organisational_domain(domain))
    mode = "strict" if strict else "relaxed"
    if d and not aligned:
        return Check(
            name,
            "fail",
            f"p={policy} at {where}, but DKIM d={d} is not aligned ({mode}) with From domain {domain}",
            f"sign with dkim.domain = {domain} (or a subdomain of {organisational_domain(domain)})",
        )
    # The return path uses the From domain, so SPF is aligned whenever SPF passes.
    via = f"DKIM d={d} and SPF" if d else "SPF only (no DKIM)"
    if policy == "none":
        return Check(
            name, "warn", f"p=none at {where} (monitoring only); aligned via {via}", "raise p= to quarantine or reject"
        )
    return Check(name, "pass", f"p={policy} at {where}; aligned ({mode}) via {via}")


def check_ptr(dns_: Dns, ip: str | None, no_ip: str = NO_IP) -> Check:
    """The sending IP has a PTR name that resolves back to it (forward-confirmed reverse DNS)."""
    name = "ptr"
    if ip is None:
        return Check(name, "fail", no_ip, NO_IP_FIX)
    names = dns_.ptr(ip)
    if not names:
        return Check(name, "fail", f"{ip} has no PTR record", f"ask the owner of {ip} for a PTR to your mail host name")
    for host in names:
        if ip in (str(ipaddress.ip_address(a)) for a in dns_.addresses(host)):
            return Check(name, "pass", f"{ip} -> {host} -> {ip}")
    return Check(
        name,
        "fail",
        f"{ip} -> {', '.join(names)}, which does not resolve back to {ip}",
        f"add an A/AAAA record {names[0]} -> {ip}, or point the PTR of {ip} at a name that resolves to it",
    )


def check_unsubscribe(settings: Settings, timeout: float = 10.0, client: httpx.Client | None = None) -> Check:
    """The web app answers the RFC 8058 one-click POST at ``base_url`` (an invalid token: nobody is unsubscribed)."""
    name = "list-unsubscribe"
    url = f"{settings.base_url}/unsubscribe/doctor-check-invalid-token"
    fix = f"run the web app (web.enabled or `digest web`) reachable at base_url = {settings.base_url}"
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    try:
        response = http.post(url, data={"List-Unsubscribe": "One-Click"})
    except httpx.HTTPError as exc:
        return Check(name, "fail", f"POST {url}: {type(exc).__name__}", fix)
    finally:
        if own:
            http.close()
    if response.status_code >= 500:
        return Check(name, "fail", f"POST {url} answered {response.status_code}", fix)
    return Check(name, "pass", f"POST {url} answered {response.status_code} (an invalid token, as expected)")


def check_secret(settings: Settings) -> Check:
    """``secret_key`` signs every link: long and not the published default."""
    name = "secret-key"
    key = settings.secret_key.get_secret_value()
    fix = 'set secret_key to a random value, e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
    if key == DEFAULT_SECRET_KEY:
        return Check(name, "fail", "secret_key is the built-in default", fix)
    if len(key) < MIN_SECRET_LENGTH:
        return Check(name, "fail", f"secret_key has {len(key)} characters, fewer than {MIN_SECRET_LENGTH}", fix)
    return Check(name, "pass", f"secret_key has {len(key)} characters")


def check_tls(settings: Settings) -> Check:
    """The relay speaks TLS (smtps:// or STARTTLS) with a certificate that verifies; reports what it got."""
    name = "tls"
    c: SMTPConfig = smtp_config(settings)
    where = f"{c.host}:{c.port}"
    context = ssl.create_default_context(cafile=c.cafile)
    smtp: smtplib.SMTP | None = None
    try:
        if c.implicit_tls:
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                return Check(
                    name,
                    "fail",
                    f"{where} does not offer STARTTLS",
                    "use smtps:// or a relay with STARTTLS, and set ?starttls=true in smtp_url",
                )
            smtp.starttls(context=context)
        got = _tls_session(smtp.sock)
    except ssl.SSLCertVerificationError as exc:
        return Check(
            name, "fail", f"{where}: certificate does not verify ({exc.verify_message})", "install a valid certificate"
        )
    except (OSError, smtplib.SMTPException) as exc:
        return Check(name, "fail", f"cannot reach {where}: {type(exc).__name__}: {exc}", "check smtp_url")
    finally:
        if smtp is not None:
            _close(smtp)
    how = "smtps" if c.implicit_tls else "STARTTLS"
    if not c.implicit_tls and not c.starttls:
        return Check(
            name, "warn", f"{where} offers {how} ({got}) but smtp_url does not use it", "add ?starttls=true to smtp_url"
        )
    if not c.verify:
        return Check(name, "warn", f"{how} to {where}: {got}; smtp_url has verify=false", "remove verify=false")
    return Check(name, "pass", f"{how} to {where}: {got}")


def _tls_session(sock: object) -> str:
    """What the TLS session is: version, cipher, and the certificate's subject and issuer."""
    if not isinstance(sock, ssl.SSLSocket):
        return "TLS"
    cipher = sock.cipher()
    cert = sock.getpeercert() or {}
    subject = dict(x[0] for x in cert.get("subject", ()))  # type: ignore[misc]
    issuer = dict(x[0] for x in cert.get("issuer", ()))  # type: ignore[misc]
    return (
        f"{sock.version()} {cipher[0] if cipher else ''}, certificate CN={subject.get('commonName', '?')} "
        f"issued by {issuer.get('organizationName') or issuer.get('commonName', '?')}"
    )


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def dns_checks(settings: Settings, dns_: Dns, ip: str | None, no_ip: str = NO_IP) -> list[Check]:
    """SPF, DKIM, DMARC and PTR; a DNS failure in one becomes that line's fail. ``no_ip``: why ``ip`` is None."""
    domain = from_domain(settings)
    steps: list[tuple[str, Callable[[], Check | None]]] = [
        ("spf", lambda: check_spf(dns_, domain, ip, no_ip)),
        ("dkim", lambda: check_dkim(dns_, settings)),
        ("dkim-ed25519", lambda: check_dkim_ed25519(dns_, settings)),
        ("dmarc", lambda: check_dmarc(dns_, settings, domain)),
        ("ptr", lambda: check_ptr(dns_, ip, no_ip)),
    ]
    found = []
    for name, step in steps:
        try:
            check = step()
        except DnsFailure as exc:
            found.append(Check(name, "fail", f"DNS lookup failed: {exc}", "check the resolver (--nameserver)"))
            continue
        if check is not None:  # None: an optional check whose feature is not configured
            found.append(check)
    return found


def run_doctor(settings: Settings, resolver: dns.resolver.Resolver, ip: str | None = None) -> list[Check]:
    """Every check, in report order. ``ip`` overrides the sending IP (default: the relay host's address)."""
    dns_ = Dns(resolver)
    no_ip = NO_IP
    try:
        address = sending_ip(settings, dns_, ip)
    except DnsFailure as exc:
        address, no_ip = None, f"no sending IP: looking up the relay host failed ({exc})"
    if ip is None and address is not None and any(ipaddress.ip_address(address) in n for n in _LOCAL_NETS):
        address, no_ip = None, f"the relay's address {address} is not public: receivers see another one"
    return [
        *dns_checks(settings, dns_, address, no_ip),
        check_unsubscribe(settings),
        check_secret(settings),
        check_tls(settings),
    ]


def failed(checks: Sequence[Check]) -> bool:
    """True when any line failed (warnings do not fail the run)."""
    return any(c.status == "fail" for c in checks)


__all__ = [
    "Check",
    "Dns",
    "DnsFailure",
    "check_dkim",
    "check_dkim_ed25519",
    "check_dmarc",
    "check_host",
    "check_ptr",
    "check_secret",
    "check_spf",
    "check_tls",
    "check_unsubscribe",
    "dns_checks",
    "failed",
    "make_resolver",
    "organisational_domain",
    "run_doctor",
    "sending_ip",
]
