"""The migrations build exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel


def test_article_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "'article'" in repr(d) or "article." in repr(d)] == []


def test_suppression_complaint_and_pause_tables_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    tables = ("suppression", "edition_complaint", "digest_pause")
    assert [d for d in diffs if any(t in repr(d) for t in tables)] == []


def test_subscriber_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "'subscriber'" in repr(d) or "subscriber." in repr(d)] == []


def test_api_key_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "api_key" in repr(d)] == []


def test_delivery_table_and_its_indexes_match_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "delivery" in repr(d)] == []


def test_webhook_tables_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "webhook" in repr(d)] == []


def test_warmup_day_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "warmup" in repr(d)] == []


def test_provider_pause_table_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert [d for d in diffs if "provider_pause" in repr(d)] == []
