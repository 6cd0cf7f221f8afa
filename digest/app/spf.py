"""DNS for the preflight checks (an injectable resolver) and an SPF evaluator (RFC 7208).

Small and strict: ip4, ip6, a, mx, include, exists, redirect= and all, with the
limit of 10 DNS lookups; macros are not expanded (a record using one fails).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.exception
import dns.rdata
import dns.resolver
import dns.reversename

from digest.core.errors import DnsFailure

# RFC 7208 4.6.4: at most 10 mechanisms or modifiers that cause DNS lookups per check.
SPF_LOOKUP_LIMIT = 10


# RFC 7208 4.6.4: an mx mechanism looks at no more than 10 MX hosts.
SPF_MX_LIMIT = 10


class Dns:
    """The few lookups the checks make; an absent name or type is an empty answer, not an error."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver

    def _query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            return list(self.resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{rdtype} {name}: {type(exc).__name__}") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record of ``name``, its strings joined (RFC 7208 3.3)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._query(name, "TXT")]  # type: ignore[attr-defined]

    def addresses(self, name: str, families: Sequence[str] = ("A", "AAAA")) -> list[str]:
        """The A and AAAA addresses of ``name``."""
        return [r.to_text() for rdtype in families for r in self._query(name, rdtype)]

    def mx(self, name: str) -> list[str]:
        """The MX hosts of ``name``, most preferred first."""
        records = sorted(self._query(name, "MX"), key=lambda r: r.preference)  # type: ignore[attr-defined]
        return [r.exchange.to_text().rstrip(".") for r in records]  # type: ignore[attr-defined]

    def ptr(self, ip: str) -> list[str]:
        """The names the reverse zone gives for ``ip``."""
        return [r.to_text().rstrip(".") for r in self._query(dns.reversename.from_address(ip).to_text(), "PTR")]


class _SpfError(Exception):
    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def spf_record(dns_: Dns, domain: str) -> str | None:
    """The one ``v=spf1`` record of ``domain``; more than one is a permerror (RFC 7208 4.5)."""
    records = [t for t in dns_.txt(domain) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if len(records) > 1:
        raise _SpfError("permerror", f"{domain} publishes {len(records)} SPF records")
    return records[0] if records else None


def check_host(dns_: Dns, ip: str, domain: str) -> tuple[str, str]:
    """RFC 7208 check_host() for ``ip`` and ``domain``: ``(result, reason)``.

    Results are pass, fail, softfail, neutral, none, permerror, temperror. Macros
    (``%{...}``) are not expanded: a term using one is a permerror here.
    """
    lookups = [0]
    try:
        return _evaluate(dns_, ipaddress.ip_address(ip), domain.rstrip(".").lower(), lookups)
    except _SpfError as exc:
        return exc.result, exc.reason
    except DnsFailure as exc:
        return "temperror", str(exc)


def _count(lookups: list[int]) -> None:
    lookups[0] += 1
    if lookups[0] > SPF_LOOKUP_LIMIT:
        raise _SpfError("permerror", f"more than {SPF_LOOKUP_LIMIT} DNS lookups (RFC 7208 4.6.4)")


def _split_cidr(spec: str, domain: str) -> tuple[str, int, int]:
    """``example.org/24//64`` -> (``example.org``, 24, 64); an empty name is ``domain``."""
    name, v4, v6 = spec, 32, 128
    if "//" in name:
        name, six = name.split("//", 1)
        v6 = int(six)
    if "/" in name:
        name, four = name.split("/", 1)
        v4 = int(four)
    return (name or domain), v4, v6


def _in_net(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, address: str, v4: int, v6: int) -> bool:
    addr = ipaddress.ip_address(address)
    if addr.version != ip.version:
        return False
    return ip in ipaddress.ip_network(f"{addr}/{v4 if addr.version == 4 else v6}", strict=False)


def _evaluate(
    dns_: Dns, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str, lookups: list[int]
) -> tuple[str, str]:
    record = spf_record(dns_, domain)
    if record is None:
        return "none", f"{domain} publishes no SPF record"
    redirect: str | None = None
    results = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
    for term in record.split()[1:]:
        name, sep, value = term.partition("=")
        if sep and ":" not in name and "/" not in name:
            if name.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers do not change the result
        if "%" in term:
            raise _SpfError("permerror", f"{domain}: macros are not supported here ({term})")
        qualifier = term[0] if term[0] in results else "+"
        mech = term[1:] if term[0] in results else term
        kind, _, arg = mech.partition(":")
        if "/" in kind:  # a/24 or mx/24//64: the CIDR follows the mechanism directly
            kind, _, cidr = kind.partition("/")
            arg = f"/{cidr}"
        kind = kind.lower()
        try:
            matched = _mechanism(dns_, ip, domain, kind, arg, lookups)
        except ValueError:
            raise _SpfError("permerror", f"{domain}: malformed term {term!r}") from None
        if matched:
            return results[qualifier], f"{domain}: matched {term}"
    if redirect is not None:
        if "%" in redirect:
            raise _SpfError("permerror", f"{domain}: macros are not supported here (redirect={redirect})")
        _count(lookups)
        result, reason = _evaluate(dns_, ip, redirect.lower(), lookups)
        if result == "none":
            return "permerror", f"redirect={redirect} has no SPF record"
        return result, reason
    return "neutral", f"{domain}: no term matched"


def _mechanism(
    dns_: Dns, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str, kind: str, arg: str, lookups: list[int]
) -> bool:
    if kind == "all":
        return True
    if kind == "ip4":
        return ip.version == 4 and ip in ipaddress.ip_network(arg, strict=False)
    if kind == "ip6":
        return ip.version == 6 and ip in ipaddress.ip_network(arg, strict=False)
    if kind == "include":
        _count(lookups)
        result, reason = _evaluate(dns_, ip, arg.lower(), lookups)
        if result in ("permerror", "temperror"):
            raise _SpfError(result, reason)
        if result == "none":
            raise _SpfError("permerror", f"include:{arg} has no SPF record")
        return result == "pass"
    family = ("A",) if ip.version == 4 else ("AAAA",)
    if kind == "a":
        _count(lookups)
        name, v4, v6 = _split_cidr(arg, domain)
        return any(_in_net(ip, a, v4, v6) for a in dns_.addresses(name, family))
    if kind == "mx":
        _count(lookups)
        name, v4, v6 = _split_cidr(arg, domain)
        hosts = dns_.mx(name)
        if len(hosts) > SPF_MX_LIMIT:
            raise _SpfError("permerror", f"{name} has more than {SPF_MX_LIMIT} MX hosts")
        return any(_in_net(ip, a, v4, v6) for host in hosts for a in dns_.addresses(host, family))
    if kind == "exists":
        _count(lookups)
        return bool(dns_.addresses(arg, ("A",)))
    if kind == "ptr":
        # Deprecated (RFC 7208 5.5) and slow; it counts as a lookup and matches nothing here.
        _count(lookups)
        return False
    raise ValueError(kind)
