"""Fixtures of the subscriber-lifecycle tests: the real app on a real uvicorn server on loopback.

The database is created and migrated once per module and backend (SQLite, and
PostgreSQL when DIGEST_TEST_DATABASE_URL is set), then emptied before each test:
the same real databases as the root ``db_url``/``engine`` fixtures, without paying
for a migration per test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from digest.core.clock import FixedClock
from digest.core.settings import DigestConfig, Settings, WebSettings
from digest.store.db import make_engine, upgrade
from digest.transport.sink import SmtpSink, free_port
from digest.web import WebServer, make_app
from tests.conftest import BACKENDS, empty_database

TOPICS = ["World", "Business", "Science"]
# Generated per run, as an operator should: the web app refuses short or default keys.
SECRET_KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with empty_database(request.param, tmp_path_factory.mktemp("web")) as url:
        yield url


@pytest.fixture(scope="module")
def module_engine(module_db_url: str) -> Iterator[Engine]:
    eng = make_engine(module_db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def db_url(module_db_url: str) -> str:
    return module_db_url


@pytest.fixture
def engine(module_engine: Engine) -> Engine:
    """The module's database, emptied: every table, children first."""
    with module_engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
    return module_engine


@pytest.fixture
def web_port() -> int:
    return free_port()


@pytest.fixture
def web_settings(db_url: str, sink: SmtpSink, web_port: int) -> Settings:
    """Settings whose base_url is the test server, so links in emails can be followed."""
    return Settings(
        database_url=db_url,
        smtp_url=sink.url,  # type: ignore[arg-type]
        secret_key=SECRET_KEY,  # type: ignore[arg-type]
        base_url=f"http://127.0.0.1:{web_port}",
        from_addr="The Briefing <briefing@news.example.com>",
        postal_address="Example News, 1 Harbour Road, Springfield",
        digests={"daily": DigestConfig(title="The Briefing", sections=TOPICS)},
        web=WebSettings(subscribe_limit=5),
    )


@pytest.fixture
def server(engine: Engine, web_settings: Settings, clock: FixedClock, web_port: int) -> Iterator[WebServer]:
    """The app, served by uvicorn from a thread on a free loopback port."""
    app = make_app(web_settings, engine, clock)
    with WebServer(app, web_settings, "127.0.0.1", web_port) as srv:
        yield srv


@pytest.fixture
def client(server: WebServer) -> Iterator[httpx.Client]:
    """An HTTP client that keeps cookies, like a browser, and never follows redirects.

    The app sends notices from a background thread; after each response the client
    waits for them, so a test finds the mail in the sink as a reader would.
    """

    def notices_sent(response: httpx.Response) -> None:
        server.app.state.web.mailer.drain()

    with httpx.Client(
        base_url=server.url, follow_redirects=False, timeout=20, event_hooks={"response": [notices_sent]}
    ) as c:
        yield c
