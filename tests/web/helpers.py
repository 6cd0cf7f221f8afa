"""Helpers of the web tests: forms, and links in received mail."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

import httpx


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def subscribe(client: httpx.Client, address: str, **fields: object) -> httpx.Response:
    """Load the form (cookie and CSRF field), then send it."""
    page = client.get("/")
    data: dict[str, object] = {"csrf": csrf_of(page.text), "email": address, **fields}
    return client.post("/subscribe", data=data)  # type: ignore[arg-type]


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def link_in(data: bytes, purpose: str) -> str:
    """The ``/{purpose}/TOKEN`` link in the text part of a message."""
    text = parsed(data).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    m = re.search(rf"https?://\S+/{purpose}/[A-Za-z0-9_.\-]+", text)
    assert m, f"no {purpose} link in:\n{text}"
    return m.group(0)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]
