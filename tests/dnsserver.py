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
