"""The one guarded HTTP GET of digest: feeds (``digest.ingest.feeds``) and ``articles import URL``.

A URL given by a user or found in a redirect must not reach the host's own network
(SSRF): the loopback interface, the cloud metadata address 169.254.169.254, private
and other non-global ranges. Every connection, of the first request and of each
redirect hop, goes through :class:`GuardedBackend`, which resolves the host name
once, refuses the request when any of its addresses is not public, and connects to
the address it checked (no second lookup, so DNS rebinding has no window).

Each fetch also has one overall deadline: httpx timeouts bound each read, so a
server sending one byte a second would otherwise hold the caller forever. Every
socket operation of the fetch gets at most the time left until the deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from digest.core.errors import BlockedAddress, FetchError, FetchTimeout, TooLarge, TooManyRedirects
from digest.core.logs import mask_url

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: str) -> bool:
    """True if ``address`` (an IPv4 or IPv6 literal) is a globally routable unicast address.

    IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:127.0.0.1``, NAT64
    ``64:ff9b::7f00:1``, 6to4 ``2002:7f00:1::``) are judged by the IPv4 address.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the fetch's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, backend: GuardedBackend) -> None:
        self._stream = stream
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._backend.time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._backend.time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._backend.time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left), self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


@dataclass
class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, checking each address it connects to and keeping one deadline."""

    allow_private: bool = False
    deadline: float = field(default=float("inf"))
    address_allowed: Callable[[str], bool] = is_public_address

    def time_left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("overall deadline reached")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            blocked = [a for a in addresses if not self.address_allowed(a)]
            if blocked:
                raise BlockedAddress(
                    f"{host} resolves to {blocked[0]}, a non-public address (set service.feed_allow_private "
                    "to allow it)"
                )
        last: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            left = self.time_left(timeout, httpcore.ConnectTimeout)
            try:
                # The address just checked, never the name again: no second DNS answer to trust.
                stream = super().connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self)
        raise last


@dataclass
class Response:
    """The final response of a fetch (after redirects)."""

    status_code: int
    reason: str
    headers: httpx.Headers
    body: bytes = b""
    url: str = ""

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower case (``application/rss+xml``)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class FetchLimits:
    """How far one fetch may go: seconds in all, body bytes, redirects, private addresses."""

    timeout: float
    max_bytes: int
    max_redirects: int
    allow_private: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    # Which addresses count as public; tests narrow it to tell two loopback servers apart.
    address_allowed: Callable[[str], bool] = is_public_address


def http_get(url: str, limits: FetchLimits, headers: Mapping[str, str] | None = None) -> Response:
    """GET ``url``, following redirects by hand; the body is read only for a final 2xx answer.

    Raises :class:`FetchError` (a subclass saying which limit was hit) on any failure;
    an HTTP error status is a normal :class:`Response`.
    """
    backend = GuardedBackend(limits.allow_private, time.monotonic() + limits.timeout, limits.address_allowed)
    transport = httpx.HTTPTransport(retries=0)
    # httpx has no public way to choose httpcore's network backend; its pool takes one.
    transport._pool._network_backend = backend  # type: ignore[attr-defined]  # noqa: SLF001
    request_headers = {**limits.headers, **(headers or {})}
    try:
        with httpx.Client(
            transport=transport, timeout=limits.timeout, follow_redirects=False, trust_env=False
        ) as client:
            first = current = httpx.URL(url)
            for _ in range(limits.max_redirects + 1):
                with client.stream("GET", current, headers=request_headers) as resp:
                    location = resp.headers.get("location")
                    if resp.status_code in REDIRECTS and location:
                        current = resp.url.join(location)
                        if current.scheme not in ("http", "https"):
                            raise FetchError(f"redirect to a {current.scheme}: URL refused")
                        if first.userinfo and not current.userinfo and _same_origin(first, current):
                            # Credentials of the feed URL stay with its own origin, never go elsewhere.
                            current = current.copy_with(userinfo=first.userinfo)
                        continue
                    result = Response(resp.status_code, resp.reason_phrase, resp.headers, url=str(resp.url))
                    if 200 <= resp.status_code < 300:
                        result.body = _read_body(resp, limits.max_bytes)
                    return result
            raise TooManyRedirects(f"more than {limits.max_redirects} redirects")
    except httpx.TimeoutException:
        raise FetchTimeout(f"timed out after {limits.timeout:g}s") from None
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {mask_url(str(exc))}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {mask_url(str(exc))}") from None


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _read_body(resp: httpx.Response, max_bytes: int) -> bytes:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"response of {declared} bytes is larger than {max_bytes} bytes")
    body = bytearray()
    # Count while reading: Content-Length may be absent or lie.
    for chunk in resp.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"response is larger than {max_bytes} bytes")
    return bytes(body)
