"""The web app against hostile requests, over real HTTP: huge ids, refused bodies, headers, rate limit per /64."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from digest.web import WebServer
from digest.web.security import client_key

SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "",
}


def assert_secure(response: httpx.Response) -> None:
    for name, part in SECURITY_HEADERS.items():
        assert name in response.headers, f"{response.status_code} {response.url.path} lacks {name}"
        assert part in response.headers[name]


@pytest.mark.parametrize(
    "path",
    ["/archive/999999999999999999999", "/archive/2147483648", "/articles/999999999999999999999"],
)
def test_an_id_too_large_for_the_database_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert "Traceback" not in response.text
    assert_secure(response)


def test_healthz_has_the_security_headers(client: httpx.Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert_secure(response)


def test_413_for_a_declared_large_body_has_the_security_headers(client: httpx.Client) -> None:
    response = client.post("/subscribe", content=b"x" * 70_000, headers={"Content-Type": "text/plain"})

    assert response.status_code == 413
    assert_secure(response)


def test_413_for_a_streamed_large_body_has_the_security_headers(client: httpx.Client) -> None:
    def body() -> object:
        for _ in range(20):
            yield b"email=" + b"x" * 8192

    response = client.post("/subscribe", content=body(), headers={"Content-Type": "application/x-www-form-urlencoded"})  # type: ignore[arg-type]

    assert response.status_code == 413
    assert_secure(response)


def test_pages_keep_their_own_policy(client: httpx.Client) -> None:
    page = client.get("/")

    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert len(page.headers.get_list("content-security-policy")) == 1


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_client_key(host: str, key: str) -> None:
    assert client_key(host) == key


def _posts_from(client: httpx.Client, addresses: list[str]) -> list[int]:
    """POST /subscribe as each address (the trusted local proxy reports it in X-Forwarded-For)."""
    return [client.post("/subscribe", headers={"X-Forwarded-For": a}).status_code for a in addresses]


def test_subscribe_limit_counts_one_ipv6_64_as_one_client(client: httpx.Client) -> None:
    same_64 = [f"2001:db8:1:2::{n:x}" for n in range(1, 7)]  # six addresses, one /64; the limit is 5

    codes = _posts_from(client, same_64)

    assert codes[:5] == [403] * 5  # counted, then refused for the missing form token
    assert codes[5] == 429
    assert _posts_from(client, ["2001:db8:1:3::1"]) == [403]  # the next /64 is another client


def test_subscribe_limit_counts_ipv4_per_address(client: httpx.Client) -> None:
    codes = _posts_from(client, ["203.0.113.1"] * 6 + ["203.0.113.2"])

    assert codes == [403] * 5 + [429, 403]


def test_raw_request_for_a_huge_id_gets_a_404_not_a_crash(server: WebServer) -> None:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /archive/" + b"9" * 400 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404")
