"""The store on every backend: migrations, upserts, timezone-aware times, uniqueness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import select

from digest.ingest.save import upsert_articles
from digest.store.articles import recent_articles
from digest.store.db import current_revision, ensure_schema, make_engine, redact, session_scope
from digest.store.models import Article, Edition, Subscriber, saved_id
from tests.conftest import NOW, draft


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"article", "subscriber", "edition", "edition_article", "delivery"} <= tables
    assert current_revision(engine) is not None


def test_new_sqlite_database_is_upgraded_automatically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'new.db'}")
    ensure_schema(engine)
    assert "article" in inspect(engine).get_table_names()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reimporting_the_same_url_updates_instead_of_duplicating(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("First title", url="https://x.example/1")], NOW)
    with session_scope(engine) as s:
        report = upsert_articles(s, [draft("Corrected title", url="https://x.example/1")], NOW)
    with session_scope(engine) as s:
        rows = s.exec(select(Article)).all()
    assert (report.inserted, report.updated) == (0, 1)
    assert [a.title for a in rows] == ["Corrected title"]


def test_reimporting_the_same_guid_updates(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("A", url=None, guid="tag:x,2026:1")], NOW)
        upsert_articles(s, [draft("B", url=None, guid="tag:x,2026:1")], NOW)
    with session_scope(engine) as s:
        assert [a.title for a in s.exec(select(Article)).all()] == ["B"]


def test_duplicates_inside_one_batch_become_one_row(engine: Engine) -> None:
    with session_scope(engine) as s:
        report = upsert_articles(s, [draft("A", url="https://x/1"), draft("A again", url="https://x/1")], NOW)
    assert (report.inserted, report.updated) == (1, 1)


def test_published_at_round_trips_as_aware_utc(engine: Engine) -> None:
    berlin = datetime(2026, 11, 25, 8, 30, tzinfo=timezone(timedelta(hours=1)))
    with session_scope(engine) as s:
        upsert_articles(s, [draft("tz", published_at=berlin)], NOW)
    with session_scope(engine) as s:
        got = s.exec(select(Article)).one().published_at
    assert got == berlin and got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_recent_articles_is_a_window_of_publication_time(engine: Engine) -> None:
    with session_scope(engine) as s:
        upsert_articles(s, [draft("new", 10), draft("old", 60 * 30)], NOW)
    with session_scope(engine) as s:
        rows = recent_articles(s, NOW - timedelta(hours=24), NOW)
    assert [a.title for a in rows] == ["new"]


def test_failed_upsert_writes_nothing(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), session_scope(engine) as s:
        upsert_articles(s, [draft("good one")], NOW)
        upsert_articles(s, [draft("naive", published_at=datetime(2026, 11, 25))], NOW)
    with session_scope(engine) as s:
        assert s.exec(select(Article)).all() == []


def test_subscriber_address_is_unique_in_the_schema(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        for addr in ("Ana@example.org", "ana@example.org"):
            s.add(Subscriber(email=addr, email_key=addr.casefold(), created_at=NOW, updated_at=NOW))
            s.flush()


def test_edition_is_unique_per_digest_and_slot(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        for _ in range(2):
            s.add(Edition(digest="daily", slot="2026-11-25", built_at=datetime.now(UTC)))
            s.flush()


def test_redact_hides_database_password() -> None:
    assert "s3cret" not in redact("postgresql+psycopg://u:s3cret@db/x")


def test_saved_id_is_the_key_once_flushed_and_an_error_before(engine: Engine) -> None:
    edition = Edition(digest="daily", slot="2026-11-25", built_at=NOW)
    with pytest.raises(ValueError, match="Edition row has no id yet"):
        saved_id(edition)
    with session_scope(engine) as session:
        session.add(edition)
        session.flush()
        assert saved_id(edition) == edition.id and edition.id is not None
