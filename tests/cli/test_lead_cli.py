"""``digest articles lead``: the editor's lead-in, set and cleared through the real entry point on every backend."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Article
from tests.cli.test_delivery_cli import digest, write_config
from tests.conftest import NOW, draft

pytestmark = pytest.mark.slow


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def config(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    with session_scope(engine) as session:
        upsert_articles(session, [draft("Harbour cities agree storm pact")], NOW)
    return write_config(tmp_path, db_url, "smtp://127.0.0.1:1")


def stored_lead(engine: Engine) -> str:
    with session_scope(engine) as session:
        article = session.get(Article, 1)
        assert article is not None
        return article.lead


def test_lead_sets_the_editors_lead_in_as_plain_text(engine: Engine, config: Path) -> None:
    proc = digest(config, "articles", "lead", "1", "Why it <b>matters</b>:\n one warning for the coast.")
    assert proc.returncode == 0, proc.stderr
    assert "lead-in of article 1 set" in proc.stdout
    assert stored_lead(engine) == "Why it matters: one warning for the coast."


def test_lead_clear_removes_it(engine: Engine, config: Path) -> None:
    assert digest(config, "articles", "lead", "1", "Why it matters.").returncode == 0
    proc = digest(config, "articles", "lead", "1", "--clear")
    assert proc.returncode == 0, proc.stderr
    assert stored_lead(engine) == ""


def test_a_too_long_lead_is_one_line_naming_the_field(engine: Engine, config: Path) -> None:
    proc = digest(config, "articles", "lead", "1", "word " * 80)
    assert proc.returncode == 3
    assert one_error_line(proc) == "error: article 1: lead is 399 characters; at most 280"
    assert stored_lead(engine) == ""


def test_text_and_clear_together_is_refused(engine: Engine, config: Path) -> None:
    proc = digest(config, "articles", "lead", "1", "Why it matters.", "--clear")
    assert proc.returncode == 3
    assert "--clear (not both)" in one_error_line(proc)


def test_an_unknown_article_is_one_line_and_exit_4(engine: Engine, config: Path) -> None:
    proc = digest(config, "articles", "lead", "99", "Why it matters.")
    assert proc.returncode == 4
    assert "no article 99" in one_error_line(proc)
