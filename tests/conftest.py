"""Fixtures that build real objects: SQLite files, the real PostgreSQL, a real SMTP server.

Store tests take the ``db_url`` fixture, parametrized over every backend (as
APScheduler's suite is): SQLite always, PostgreSQL when DIGEST_TEST_DATABASE_URL is
set (``.ci/run`` sets it). Each PostgreSQL test gets its own schema, dropped after.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from digest.core.clock import FixedClock
from digest.core.settings import DigestConfig, Settings
from digest.ingest import ArticleDraft
from digest.ingest.save import upsert_articles
from digest.store.db import make_engine, session_scope, upgrade
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"
PG_URL = os.environ.get("DIGEST_TEST_DATABASE_URL")
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
# Tests never reach outside 127.0.0.1: recipients' domains are not looked up in the
# host's DNS (in this process and the CLI processes tests start); the MX tests pass
# their own resolver, pointed at tests/dnsserver.py.
os.environ.setdefault("DIGEST_DELIVERY__MX_LOOKUP", "false")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``directory``, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'digest.db'}"
        return
    if not PG_URL:
        pytest.skip(
            "PostgreSQL tests need DIGEST_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on each backend."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the head revision."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    with SmtpSink(directory=tmp_path / "mail") as s:
        yield s


@pytest.fixture
def settings(db_url: str, sink: SmtpSink, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        smtp_url=sink.url,  # type: ignore[arg-type]
        secret_key="test-secret",  # type: ignore[arg-type]
        base_url="https://news.example.com",
        from_addr="The Briefing <briefing@news.example.com>",
        postal_address="Example News, 1 Harbour Road, Springfield",
        digests={"daily": DigestConfig(title="The Briefing", sections=["World", "Business", "Science"])},
        # A table, not a DeliverySettings: DIGEST_DELIVERY__* variables merge into a table only.
        delivery={"journal_dir": str(tmp_path / "journal"), "processes": 1},  # type: ignore[arg-type]
    )


def draft(title: str, minutes_ago: int = 30, **kw: object) -> ArticleDraft:
    """An article draft published ``minutes_ago`` before NOW."""
    slug = "-".join(title.lower().split())[:60]
    values: dict[str, object] = {
        "url": f"https://news.example.com/{slug}",
        "source": "Example Wire",
        "summary": f"Summary of {title}.",
        "body": f"<p>Summary of {title}.</p>",
        "category": "World",
        "published_at": NOW - timedelta(minutes=minutes_ago),
    }
    values.update(kw)
    return ArticleDraft(title=title, **values)  # type: ignore[arg-type]


def seed(engine: Engine, drafts: list[ArticleDraft], subscribers: list[tuple[str, str, str | None]]) -> None:
    """Store articles and active subscribers ``(email, name, topics)``."""
    with session_scope(engine) as session:
        upsert_articles(session, drafts, NOW)
        for email, name, topics in subscribers:
            add_subscriber(session, email, NOW, name=name, topics=topics)


STANDARD_DRAFTS = [
    draft("Harbour cities agree storm warning pact", 20, breaking=True, category="World"),
    draft("Rail tunnel reopens after repairs", 60, category="World"),
    draft("Lenders tighten credit for small firms", 90, category="Business", priority=2),
    draft("Volunteers map new asteroids", 120, category="Science"),
]
