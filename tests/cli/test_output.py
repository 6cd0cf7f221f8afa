"""Output people and scripts can use, through the real entry point: JSON Lines, tables
that survive a pipe, ``--limit``, whole feed URLs, progress on stderr, help text.

Fixtures (a subprocess ``run``, the CLI's SQLite ``store``, seeded data) are those of
``test_cli`` (see conftest). Every command runs with stdout a pipe, as in ``digest ... | grep``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.ingest.feeds import add_feed
from digest.store.db import session_scope
from digest.store.subscribers import find_subscriber
from tests.cli.test_cli import Run, real_now, seed_articles

pytestmark = pytest.mark.slow

# Longer than the 80 columns rich assumes when stdout is not a terminal.
LONG_TITLE = "Shelling near Kursk leaves thousands without power for the third night running in the region"
NO_COLUMNS = {"COLUMNS": ""}  # as in a shell pipe: no width given


# ---------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize(
    "command", [("articles", "list"), ("subscribers", "list"), ("feeds", "list"), ("deliveries",)], ids=" ".join
)
def test_json_prints_one_object_per_line(run: Run, ready: Engine, command: tuple[str, ...]) -> None:
    with session_scope(ready) as session:
        add_feed(session, "https://feeds.example.com/world.xml", real_now(), every=timedelta(minutes=15))
    run("send")  # deliveries to list

    proc = run(*command, "--json", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) >= 1
    assert all(isinstance(json.loads(line), dict) for line in lines), proc.stdout


def test_status_json_is_one_line(run: Run, ready: Engine) -> None:
    proc = run("status", "--json", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    assert "digests" in json.loads(line)


def test_json_help_says_json_lines(run: Run) -> None:
    proc = run("articles", "list", "--help")

    assert "One JSON object per line (JSON Lines)" in " ".join(proc.stdout.split())


# ---------------------------------------------------------------- tables in a pipe


def test_piped_table_keeps_a_long_title_on_its_row(run: Run, store: Engine) -> None:
    seed_articles(store, (LONG_TITLE,))

    proc = run("articles", "list", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    [row] = [line for line in proc.stdout.splitlines() if "Kursk" in line]
    assert LONG_TITLE in row and "World" in row


def test_feeds_list_shows_the_whole_url_with_its_password_masked(run: Run, store: Engine) -> None:
    url = "https://reader:s3cretpw@feeds.example.com/very/long/path/to/the/world/news/feed/rss.xml?format=atom&lang=en"
    with session_scope(store) as session:
        add_feed(session, url, real_now(), every=timedelta(minutes=15))

    proc = run("feeds", "list", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    assert url.replace("s3cretpw", "***") in proc.stdout
    assert "s3cretpw" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- --limit


def test_articles_list_limit_shows_the_newest(run: Run, store: Engine) -> None:
    seed_articles(store, ("Newest story", "Middle story", "Oldest story"))

    proc = run("articles", "list", "--limit", "2", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    assert "Newest story" in proc.stdout and "Middle story" in proc.stdout
    assert "Oldest story" not in proc.stdout
    assert "2 article(s) shown; more with a higher --limit" in proc.stdout


def test_subscribers_list_limit_shows_the_first_added(run: Run, ready: Engine) -> None:
    proc = run("subscribers", "list", "--limit", "1", "--json", env=NO_COLUMNS)

    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["email"] for line in proc.stdout.splitlines()] == ["ana@example.org"]


# ---------------------------------------------------------------- subscribers' schedule


def test_subscribers_add_takes_a_send_time_and_a_weekly_day_and_list_shows_them(run: Run, store: Engine) -> None:
    added = run("subscribers", "add", "ana@example.org", "--send-time", "7:30", "--frequency", "weekly", "--day", "FRI")

    assert added.returncode == 0, added.stderr
    with session_scope(store) as session:
        sub = find_subscriber(session, "ana@example.org")
        assert sub is not None and (sub.send_time, sub.frequency, sub.weekday) == ("07:30", "weekly", 4)
    [row] = [line for line in run("subscribers", "list", env=NO_COLUMNS).stdout.splitlines() if "ana@" in line]
    assert "07:30" in row and "weekly (Fri)" in row


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--frequency", "weekly"), "--day"),
        (("--frequency", "daily", "--day", "fri"), "--day"),
        (("--day", "fry"), "--day"),
        (("--frequency", "monthly"), "--frequency"),
        (("--send-time", "25:00"), "--send-time"),
    ],
    ids=["weekly-without-day", "daily-with-day", "bad-day", "bad-frequency", "bad-time"],
)
def test_subscribers_add_refuses_a_bad_schedule_in_one_line(
    run: Run, store: Engine, args: tuple[str, ...], field: str
) -> None:
    proc = run("subscribers", "add", "ana@example.org", *args)

    assert proc.returncode == 3
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {field}:"), line
    with session_scope(store) as session:
        assert find_subscriber(session, "ana@example.org") is None


# ---------------------------------------------------------------- progress


def test_articles_import_of_many_records_shows_progress_on_stderr(run: Run, tmp_path: Path, store: Engine) -> None:
    stamp = real_now().isoformat()
    records = [{"title": f"Story {i}", "url": f"https://x.example.com/{i}", "published_at": stamp} for i in range(600)]
    (tmp_path / "many.ndjson").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")

    proc = run("articles", "import", "many.ndjson")

    assert proc.returncode == 0, proc.stderr
    assert "imported 600 new" in proc.stdout and "importing" not in proc.stdout
    assert "importing" in proc.stderr and "600/600" in proc.stderr


def test_subscribers_import_of_many_rows_shows_progress_on_stderr(run: Run, tmp_path: Path, store: Engine) -> None:
    rows = "".join(f"user{i}@example.org,User {i}\n" for i in range(600))
    (tmp_path / "many.csv").write_text("email,name\n" + rows, encoding="utf-8")

    proc = run("subscribers", "import", "many.csv")

    assert proc.returncode == 0, proc.stderr
    assert "added 600" in proc.stdout
    assert "importing" in proc.stderr and "600/600" in proc.stderr


def test_a_small_import_shows_no_bar(run: Run, tmp_path: Path, store: Engine) -> None:
    (tmp_path / "few.csv").write_text("email\nana@example.org\nbob@example.org\n", encoding="utf-8")

    proc = run("subscribers", "import", "few.csv")

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_send_with_nothing_to_send_shows_no_empty_bar(run: Run, ready: Engine) -> None:
    first = run("send")
    assert "2/2" in first.stderr, first.stderr  # the bar while there is something to send

    again = run("send")

    assert again.returncode == 0, again.stderr
    assert "already sent" in again.stdout
    assert "0/0" not in again.stderr and "sending" not in again.stderr


# ---------------------------------------------------------------- help text


def test_help_names_settings_in_brackets(run: Run) -> None:
    web = " ".join(run("web", "--help").stdout.split())
    keygen = " ".join(run("dkim", "keygen", "--help").stdout.split())

    assert "(default [web] host)" in web and "(default [web] port)" in web
    assert "(default [dkim] selector)" in keygen


def test_help_shows_flags_without_a_value(run: Run) -> None:
    proc = run("send", "--help")

    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("--dry-run")]
    assert "bool" not in line.lower()
