"""The one way a dnspython resolver is made: the system's, or one pointed at a given server (tests, preflight)."""

from __future__ import annotations

import dns.resolver


def make_resolver(nameserver: str | None = None, port: int = 53, timeout: float = 5.0) -> dns.resolver.Resolver:
    """The system's resolver, or one asking only ``nameserver`` on ``port``; a lookup gives up after ``timeout``."""
    if nameserver is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver
