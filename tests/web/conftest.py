"""Fixtures of the subscriber-lifecycle tests: the real app on a real uvicorn server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from digest.clock import FixedClock
from digest.settings import DigestConfig, Settings, WebSettings
from digest.smtpsink import SmtpSink, free_port
from digest.web import WebServer, make_app

TOPICS = ["World", "Business", "Science"]


@pytest.fixture
def web_port() -> int:
    return free_port()


@pytest.fixture
def web_settings(db_url: str, sink: SmtpSink, web_port: int) -> Settings:
    """Settings whose base_url is the test server, so links in emails can be followed."""
    return Settings(
        database_url=db_url,
        smtp_url=sink.url,  # type: ignore[arg-type]
        secret_key="test-secret",  # type: ignore[arg-type]
        base_url=f"http://127.0.0.1:{web_port}",
        from_addr="The Briefing <briefing@news.example.com>",
        postal_address="Example News, 1 Harbour Road, Springfield",
        digests={"daily": DigestConfig(title="The Briefing", sections=TOPICS)},
        web=WebSettings(subscribe_limit=20),
    )


@pytest.fixture
def server(engine: Engine, web_settings: Settings, clock: FixedClock, web_port: int) -> Iterator[WebServer]:
    """The app, served by uvicorn from a thread on a free loopback port."""
    app = make_app(web_settings, engine, clock)
    with WebServer(app, web_settings, "127.0.0.1", web_port) as srv:
        yield srv


@pytest.fixture
def client(server: WebServer) -> Iterator[httpx.Client]:
    """An HTTP client that keeps cookies, like a browser, and never follows redirects."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=20) as c:
        yield c
