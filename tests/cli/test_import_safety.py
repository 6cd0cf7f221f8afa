"""Hostile or unlucky imports through the real entry point: deep nesting, oversized input, a full disk.

``articles import`` skips a source it cannot read (exit 7) and keeps the others;
``subscribers import`` keeps every row of a file or none (exit 8 when the database
refuses the write).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from digest.store.db import make_engine, session_scope, upgrade
from digest.store.models import Article, Subscriber
from tests.cli.test_delivery_cli import DIGEST, write_config

pytestmark = pytest.mark.slow

SMTP = "smtp://127.0.0.1:9"  # never reached: nothing here sends


def digest(config: Path, *args: str, stdin: object = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") or k.startswith("DIGEST_TEST_")}
    return subprocess.run(
        [DIGEST, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=stdin,  # type: ignore[arg-type]
        cwd=cwd,
    )


def config_with(tmp_path: Path, db_url: str, **top: object) -> Path:
    """write_config's file with top-level settings added (before its first table)."""
    path = write_config(tmp_path, db_url, SMTP)
    extra = "".join(f"{k} = {v}\n" for k, v in top.items())
    path.write_text(extra + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- articles import


def test_deeply_nested_json_skips_that_file_and_imports_the_others(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url)
    (tmp_path / "good.json").write_text(json.dumps({"title": "Storm pact agreed"}), encoding="utf-8")
    (tmp_path / "bad.json").write_text("[" * 100_000, encoding="utf-8")
    (tmp_path / "good2.ndjson").write_text('{"title": "Credit tightens"}\n{"title": "Asteroids"}\n', "utf-8")

    proc = digest(config, "articles", "import", "good.json", "bad.json", "good2.ndjson", cwd=tmp_path)

    assert proc.returncode == 7, proc.stderr
    assert error_lines(proc) == [
        "error: bad.json: invalid JSON: nested too deeply (more than about 1,000 levels of [ and {)"
    ]
    assert "imported 3 new, updated 0, rejected 1 (1 of them whole source(s) not read)" in proc.stdout
    assert count(engine, Article) == 3


def test_file_over_import_max_bytes_is_refused_and_the_others_imported(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, db_url, import_max_bytes=2000)
    (tmp_path / "big.json").write_text(json.dumps([{"title": f"Story {i}"} for i in range(200)]), encoding="utf-8")
    (tmp_path / "small.json").write_text(json.dumps({"title": "Small story"}), encoding="utf-8")

    proc = digest(config, "articles", "import", "big.json", "small.json", cwd=tmp_path)

    assert proc.returncode == 7, proc.stderr
    assert error_lines(proc) == ["error: big.json: larger than 2000 bytes (import_max_bytes); not read"]
    assert count(engine, Article) == 1


def test_endless_stdin_is_refused_at_import_max_bytes(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url, import_max_bytes=2000)
    with open("/dev/zero", "rb") as zero:  # never ends: reading it whole would never return
        proc = digest(config, "articles", "import", "-", stdin=zero)

    assert proc.returncode == 7, proc.stderr
    assert error_lines(proc) == ["error: <stdin>: larger than 2000 bytes (import_max_bytes); not read"]
    assert count(engine, Article) == 0


def test_a_subscriber_csv_is_never_imported_as_an_article(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url)
    write_csv(tmp_path / "people.csv", 3)

    proc = digest(config, "articles", "import", "people.csv", cwd=tmp_path)

    assert proc.returncode == 7, proc.stderr
    assert error_lines(proc) == [
        "error: people.csv: looks like CSV (e.g. a subscriber list); use digest subscribers import"
    ]
    assert count(engine, Article) == 0


def test_csv_on_stdin_is_refused_by_its_shape(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url)
    with open(write_csv(tmp_path / "people.txt", 3), "rb") as people:
        proc = digest(config, "articles", "import", "-", stdin=people)

    assert proc.returncode == 7, proc.stderr
    assert error_lines(proc) == [
        "error: <stdin>: looks like CSV (e.g. a subscriber list); use digest subscribers import"
    ]
    assert count(engine, Article) == 0


FEED = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Wire</title>'
    "<item><title>Storm pact agreed</title><link>https://wire.example/1</link></item>"
    "<item><title>Credit tightens</title><link>https://wire.example/2</link></item></channel></rss>\n"
)


def test_a_newline_before_the_xml_declaration_is_a_warning_and_exit_0(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, db_url)
    (tmp_path / "feed.xml").write_text("\n" + FEED, encoding="utf-8")

    proc = digest(config, "articles", "import", "feed.xml", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert error_lines(proc) == ["warning: feed.xml: whitespace or a comment before the XML declaration (ignored)"]
    assert "imported 2 new, updated 0, rejected 0" in proc.stdout
    assert count(engine, Article) == 2


def test_a_feed_on_stdin_behind_a_doctype_is_read_as_a_feed(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url)
    doctype = '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "rss-0.91.dtd">\n'
    (tmp_path / "stdin").write_text(doctype + FEED.split("\n", 1)[1], encoding="utf-8")  # no <?xml at all
    with open(tmp_path / "stdin", "rb") as feed:
        proc = digest(config, "articles", "import", "-", stdin=feed)

    assert proc.returncode == 0, proc.stderr
    assert "imported 2 new" in proc.stdout
    with session_scope(make_engine(db_url)) as s:
        assert sorted(s.exec(select(Article.title)).all()) == ["Credit tightens", "Storm pact agreed"]


# ---------------------------------------------------------------- subscribers import


def write_csv(path: Path, rows: int, bad_row: int | None = None) -> Path:
    lines = ["email,name,timezone,topics"]
    for i in range(rows):
        name = "Mallory" if i == bad_row else f"Reader number {i} " + "x" * 40
        lines.append(f'reader{i}@example.org,{name},Europe/Berlin,"World, Business"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_subscribers_import_refuses_a_file_over_import_max_bytes(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, db_url, import_max_bytes=2000)
    csv = write_csv(tmp_path / "people.csv", 50)

    proc = digest(config, "subscribers", "import", str(csv))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert error_lines(proc) == [f"error: {csv}: larger than 2000 bytes (import_max_bytes); not read"]
    assert count(engine, Subscriber) == 0


def test_subscribers_import_on_a_full_disk_keeps_no_row_of_the_file(tmp_path: Path, small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'digest.db'}"
    engine = make_engine(url)
    upgrade(engine)
    config = config_with(tmp_path, url)
    csv = write_csv(tmp_path / "people.csv", 20_000)  # ~2 MB of rows and index for a 1 MB disk

    proc = digest(config, "subscribers", "import", str(csv))

    assert proc.returncode == 8, proc.stdout + proc.stderr
    assert error_lines(proc) == [f"error: {csv}: nothing imported, no row of the file kept: database or disk is full"]
    assert count(engine, Subscriber) == 0
    engine.dispose()


@pytest.fixture
def refuses_mallory(engine: Engine) -> Engine:
    """A database rule the import does not know: no subscriber may be called Mallory."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER no_mallory BEFORE INSERT ON subscriber WHEN NEW.name = 'Mallory' "
                    "BEGIN SELECT RAISE(ABORT, 'no Mallory'); END"
                )
            )
        else:
            conn.execute(
                text(
                    f"ALTER TABLE subscriber ADD CONSTRAINT no_mallory_{uuid.uuid4().hex[:6]} CHECK (name <> 'Mallory')"
                )
            )
    return engine


def test_subscribers_import_failing_mid_file_in_the_database_keeps_no_row(
    refuses_mallory: Engine, db_url: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, db_url)
    csv = write_csv(tmp_path / "people.csv", 50, bad_row=30)  # valid CSV: only the database refuses row 30

    proc = digest(config, "subscribers", "import", str(csv))

    assert proc.returncode == 8, proc.stdout + proc.stderr
    (line,) = error_lines(proc)
    assert line.startswith(f"error: {csv}: nothing imported, no row of the file kept: ")
    assert "reader30@example.org" not in line  # the driver may quote the row: addresses masked
    assert count(refuses_mallory, Subscriber) == 0
