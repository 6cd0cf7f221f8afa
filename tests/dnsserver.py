"""A small authoritative DNS server on loopback (UDP and TCP, one port) answering from a zone in memory.

For ``digest doctor``'s tests: the checks ask it through a dnspython resolver
pointed at its port, so no test depends on the internet or the host's resolver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSServer

from digest.compose.dkim import KeyPair

# TXT character-strings are at most 255 octets (RFC 1035 3.3.14): longer values are split.
_CHUNK = 255


class _Quiet:
    """A dnslib logger that logs nothing (the default prints every query)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Zone(BaseResolver):  # type: ignore[misc]
    """Records by name; an unknown name is NXDOMAIN, a known name without the type an empty answer."""

    def __init__(self) -> None:
        self.records: list[RR] = []

    def txt(self, name: str, value: str) -> Zone:
        chunks = [value[i : i + _CHUNK] for i in range(0, len(value), _CHUNK)] or [""]
        return self._add(name, QTYPE.TXT, TXT(chunks))

    def a(self, name: str, address: str) -> Zone:
        return self._add(name, QTYPE.AAAA, AAAA(address)) if ":" in address else self._add(name, QTYPE.A, A(address))

    def mx(self, name: str, host: str, preference: int = 10) -> Zone:
        return self._add(name, QTYPE.MX, MX(host, preference))

    def ptr(self, address: str, host: str) -> Zone:
        reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
        return self._add(reverse, QTYPE.PTR, PTR(host))

    def _add(self, name: str, rtype: int, rdata: Any) -> Zone:
        self.records.append(RR(name, rtype, rdata=rdata, ttl=60))
        return self

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname: DNSLabel = request.q.qname
        named = [rr for rr in self.records if rr.rname == qname]
        for rr in named:
            if rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextmanager
def dns_server(zone: Zone) -> Iterator[int]:
    """Serve ``zone`` on 127.0.0.1 (UDP and TCP on the same free port); yields the port."""
    udp = DNSServer(zone, address="127.0.0.1", port=0, logger=_Quiet())
    port = udp.server.server_address[1]
    tcp = DNSServer(zone, address="127.0.0.1", port=port, tcp=True, logger=_Quiet())
    udp.start_thread()
    tcp.start_thread()
    try:
        yield port
    finally:
        udp.stop()
        tcp.stop()
        udp.server.server_close()
        tcp.server.server_close()


# ---------------------------------------------------------------- the zone of digest doctor's tests

GOOD_IP = "192.0.2.25"  # PTR mail.relay.example, which resolves back to it
PTR_MISMATCH_IP = "192.0.2.26"  # PTR mail.relay.example too, which does not resolve to it
SELECTOR = "d2026"
# Each broken domain differs from the good one by exactly one record.
GOOD, NO_INCLUDE, KEY_MISMATCH, NO_DMARC = "good.example", "noinclude.example", "badkey.example", "nodmarc.example"


def doctor_zone(mine: KeyPair, other: KeyPair) -> Zone:
    """The good setup (good.example) and one domain per broken record; broken.example breaks them all."""
    zone = Zone()
    zone.txt("_spf.relay.example", "v=spf1 ip4:192.0.2.0/25 ip6:2001:db8::/32 -all")
    zone.a("mail.relay.example", GOOD_IP)
    zone.ptr(GOOD_IP, "mail.relay.example")
    zone.ptr(PTR_MISMATCH_IP, "mail.relay.example")
    for domain in (GOOD, NO_INCLUDE, KEY_MISMATCH, NO_DMARC, "broken.example"):
        broken = domain == "broken.example"
        zone.mx(domain, f"mx.{domain}").a(f"mx.{domain}", "198.51.100.7")
        zone.txt(domain, "site-verification=abc123")  # TXT records other than SPF are ignored
        include = "" if domain == NO_INCLUDE or broken else " include:_spf.relay.example"
        zone.txt(domain, f"v=spf1 mx{include} -all")
        key = other if domain == KEY_MISMATCH or broken else mine
        zone.txt(f"{SELECTOR}._domainkey.{domain}", key.txt_value())
        if domain != NO_DMARC and not broken:
            zone.txt(f"_dmarc.{domain}", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}")
    return zone
