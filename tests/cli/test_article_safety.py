"""A subscriber list pasted in as a story, through the real entry point on every backend.

``digest articles import subscribers.csv`` is refused now (the import reads formats by
content), but rows of a list can still arrive as a story another way: here
``digest articles add`` with the rows as its title and summary. ``digest preview``
must warn about it (masked), ``digest articles hide`` must keep it out of the next
send and off the archive pages, ``remove`` must delete it.
"""

from __future__ import annotations

import email
import subprocess
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app.archive import Archive, find_article
from digest.compose.render import make_environment
from digest.core.settings import load_settings
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Article, Edition
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.cli.test_delivery_cli import digest, write_config
from tests.conftest import draft

pytestmark = pytest.mark.slow

CSV = "email,name,topics\nana@example.org,Ana Lima,World\nbob@example.org,Bob Stone,Science\n"
LEAK = "Ana Lima,World"  # a row of the list: must never reach a reader or the archive once hidden


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def text_of(data: bytes) -> str:
    """Every text part of a message, decoded (the raw bytes are quoted-printable)."""
    msg = email.message_from_bytes(data, policy=policy.default)
    return "".join(part.get_content() for part in msg.walk() if part.get_content_maintype() == "text")  # type: ignore[attr-defined]


def wrong_import(engine: Engine, tmp_path: Path, config: Path) -> int:
    """A real story and two readers, then rows of the subscriber list added as a story; the bad story's id."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        upsert_articles(
            session, [draft("Harbour cities agree storm pact", published_at=now - timedelta(minutes=5))], now
        )
        add_subscriber(session, "ana@example.org", now, name="Ana Lima")
        add_subscriber(session, "bob@example.org", now, name="Bob Stone")
    first, second = CSV.splitlines()[1:3]
    proc = digest(config, "articles", "add", "--title", first, "--summary", second)
    assert proc.returncode == 0, proc.stderr
    with session_scope(engine) as session:
        bad = session.exec(select(Article).where(Article.title.contains("@"))).one()  # type: ignore[attr-defined]
        assert bad.id is not None
        return bad.id


def archive_page(engine: Engine, config: Path, archive: Archive | None = None) -> str:
    settings = load_settings(config)
    archive = archive or Archive(engine, settings, make_environment(settings.templates_dir))
    with session_scope(engine) as session:
        edition = session.exec(select(Edition)).one()
    page = archive.by_slot(edition.digest, edition.slot)
    assert page is not None
    return page


def test_preview_warns_in_one_masked_line_about_a_story_that_looks_like_data(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)

    proc = digest(config, "preview", "--output", str(tmp_path / "p.html"))

    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: article {bad} 'a***@example.org,Ana Lima,World' looks like data, not news "
        f"(2 e-mail address(es), rows like a CSV file): digest articles hide {bad}"
    ]
    assert "ana@example.org" not in proc.stderr and "bob@example.org" not in proc.stderr
    assert sink.messages == []


def test_hidden_story_is_not_sent_and_leaves_the_archive_page(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)

    hide = digest(config, "articles", "hide", str(bad))
    send = digest(config, "send")

    assert hide.returncode == 0 and send.returncode == 0, hide.stderr + send.stderr
    assert f"hid 1 article(s) ({bad})" in hide.stdout
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["ana@example.org", "bob@example.org"]
    assert all("storm pact" in text_of(m.data) and LEAK not in text_of(m.data) for m in sink.messages)
    assert LEAK not in archive_page(engine, config)
    assert find_article(engine, bad) is None


def test_hiding_a_story_already_sent_takes_it_off_a_cached_archive_page(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)
    assert digest(config, "send").returncode == 0
    settings = load_settings(config)
    archive = Archive(engine, settings, make_environment(settings.templates_dir))
    assert LEAK in archive_page(engine, config, archive)  # the mistake, as it was

    hide = digest(config, "articles", "hide", str(bad))

    assert hide.returncode == 0, hide.stderr
    page = archive_page(engine, config, archive)
    assert LEAK not in page and "storm pact" in page


def test_unhide_puts_a_story_back(engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)
    assert digest(config, "articles", "hide", str(bad)).returncode == 0

    unhide = digest(config, "articles", "unhide", str(bad))

    assert unhide.returncode == 0, unhide.stderr
    assert find_article(engine, bad) is not None


def test_remove_deletes_the_story_from_the_store_and_its_edition(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)
    assert digest(config, "send").returncode == 0

    proc = digest(config, "articles", "remove", str(bad))

    assert proc.returncode == 0, proc.stderr
    assert f"removed 1 article(s) ({bad})" in proc.stdout
    assert find_article(engine, bad) is None
    page = archive_page(engine, config)
    assert LEAK not in page and "storm pact" in page


@pytest.mark.parametrize("command", ["hide", "remove"])
def test_an_unknown_id_is_one_line_and_changes_nothing(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, command: str
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    bad = wrong_import(engine, tmp_path, config)

    proc = digest(config, "articles", command, str(bad), "999999")

    assert proc.returncode == 4
    assert one_error_line(proc) == "error: no article 999999; nothing changed"
    assert find_article(engine, bad) is not None
