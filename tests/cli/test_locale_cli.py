"""A subscriber's language from the command line: ``subscribers add --locale`` and the CSV ``locale`` column."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.store.db import session_scope
from digest.store.models import Subscriber
from tests.cli.test_cli import Run


def locales(store: Engine) -> dict[str, str | None]:
    with session_scope(store) as session:
        return {s.email: s.locale for s in session.exec(select(Subscriber))}


def test_subscribers_add_stores_the_locale_as_a_language_tag(run: Run, store: Engine) -> None:
    proc = run("subscribers", "add", "ana@example.org", "--locale", "de_de")

    assert proc.returncode == 0, proc.stderr
    assert locales(store) == {"ana@example.org": "de-DE"}


def test_subscribers_add_refuses_an_unknown_locale_in_one_line(run: Run, store: Engine) -> None:
    proc = run("subscribers", "add", "ana@example.org", "--locale", "klingon")

    assert proc.returncode == 3
    [line] = proc.stderr.strip().splitlines()
    assert "--locale" in line and "'klingon'" in line and "Traceback" not in proc.stderr
    assert locales(store) == {}


def test_subscribers_import_reads_the_locale_column(run: Run, tmp_path: Path, store: Engine) -> None:
    (tmp_path / "people.csv").write_text(
        "email,locale\nana@example.org,ar\nbob@example.org,\ncy@example.org,xx-nope\n", encoding="utf-8"
    )

    proc = run("subscribers", "import", "people.csv")

    assert proc.returncode == 3, proc.stderr
    assert "people.csv:4:" in proc.stderr and "'xx-nope'" in proc.stderr
    assert locales(store) == {"ana@example.org": "ar", "bob@example.org": None}
