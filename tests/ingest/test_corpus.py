"""The corpus of real feeds through the real CLI: every item stored intact, merged, or rejected with a reason.

One ``digest articles import`` of every corpus file (``tests/ingest/corpus.py`` says
what each must store), on SQLite and PostgreSQL, then the rows are read back.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.store.db import session_scope
from digest.store.models import Article
from tests.ingest.corpus import FEEDS_DIR, corpus, import_corpus


def stored_articles(engine: Engine) -> list[Article]:
    with session_scope(engine) as s:
        rows = list(s.exec(select(Article)).all())
        s.expunge_all()
    return rows


def test_the_corpus_has_at_least_25_feeds_each_with_its_source() -> None:
    files = sorted(p.name for p in FEEDS_DIR.iterdir() if p.name != "SOURCES.md")
    assert files == [feed.name for feed in corpus()]
    assert len(files) >= 25
    sources = (FEEDS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    assert [name for name in files if f"`{name}`" not in sources] == []


def test_every_corpus_item_is_stored_intact_or_merged_with_a_count(engine: Engine, db_url: str, tmp_path: Path) -> None:
    feeds = corpus()
    proc = import_corpus(db_url, feeds, tmp_path)

    rejected = [(feed, index, reason) for feed in feeds for index, reason in feed.rejected]
    assert proc.returncode == (3 if rejected else 0), proc.stderr
    stored, merged = sum(len(f.stored) for f in feeds), sum(len(f.merged) for f in feeds)
    assert f"imported {stored} new, updated 0, merged {merged} " in proc.stdout
    assert f"rejected {len(rejected)}" in proc.stdout
    for feed, index, reason in rejected:  # each reported, with its documented reason
        located = (f"{feed.path}[entry {index}]: {reason}", f"{feed.path}[item {index}]: {reason}")
        assert any(line in proc.stderr for line in located)
    rows = stored_articles(engine)
    assert len(rows) == stored
    by_link = {row.url: row for row in rows}
    by_title = {row.title: row for row in rows}
    for feed in feeds:
        for item in feed.stored:
            row = by_link.get(item.link) if item.link else by_title.get(item.title)
            assert row is not None, f"{feed.name}: {item.title!r} not stored"
            assert (row.title, row.url, row.language) == (item.title, item.link, feed.language), feed.name
            assert row.summary.startswith(item.summary), f"{feed.name}: {row.summary!r}"
        for item in feed.merged:
            assert by_link[item.link].title == item.merged_into, feed.name


def test_the_import_warns_about_each_fault_it_read_past(engine: Engine, db_url: str, tmp_path: Path) -> None:
    feeds = [feed for feed in corpus() if feed.warnings]
    proc = import_corpus(db_url, feeds, tmp_path)

    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for feed in feeds:
        for warning in feed.warnings:
            assert any(line.startswith("warning: ") and feed.name in line and warning in line for line in lines)
    assert [line for line in lines if line.startswith("error")] == []


def test_importing_the_corpus_again_moves_no_undated_story(engine: Engine, db_url: str, tmp_path: Path) -> None:
    feeds = corpus()
    import_corpus(db_url, feeds, tmp_path)
    first = {row.guid: row.published_at for row in stored_articles(engine) if not row.dated}

    proc = import_corpus(db_url, feeds, tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "imported 0 new" in proc.stdout
    again = {row.guid: row.published_at for row in stored_articles(engine) if not row.dated}
    assert len(first) >= 5  # heise, xml.com, curtclifton, picoFeed: no usable dates
    assert again == first
