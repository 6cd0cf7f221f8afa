"""Every failure is one line that says what to do: the store, SMTP and mislabelled settings.

Each test runs the real ``digest`` entry point in a subprocess; stores are real
SQLite files or the real PostgreSQL.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from digest.cli.main import app, main
from digest.store.db import make_engine
from tests.conftest import PG_URL, STANDARD_DRAFTS, empty_database, seed

pytestmark = pytest.mark.slow

SECRET_KEY = "errors-test-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Nothing listens on it: connecting is refused at once. The password must never be printed.
UNREACHABLE = f"postgresql+psycopg://postgres:pg-s3cret-pw@127.0.0.1:{free_port()}/digest"


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_DATABASE_URL=database_url, DIGEST_SECRET_KEY=SECRET_KEY, COLUMNS="200", **extra)
    return env


def start(args: Sequence[str], cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest.cli.main", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def run(args: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# ---------------------------------------------------------------- an unreachable database

# Every command that opens the store, with arguments that get it as far as the store.
STORE_COMMANDS: dict[str, list[str]] = {
    "articles import": ["articles", "import", "feed.ndjson"],
    "articles add": ["articles", "add", "--title", "Rail tunnel reopens"],
    "articles list": ["articles", "list"],
    "articles hide": ["articles", "hide", "1"],
    "articles unhide": ["articles", "unhide", "1"],
    "articles lead": ["articles", "lead", "1", "Why it matters: one warning."],
    "articles remove": ["articles", "remove", "1"],
    "subscribers add": ["subscribers", "add", "ana@example.org"],
    "subscribers import": ["subscribers", "import", "people.csv"],
    "subscribers list": ["subscribers", "list"],
    "subscribers remove": ["subscribers", "remove", "ana@example.org"],
    "subscribers unsubscribe": ["subscribers", "unsubscribe", "ana@example.org"],
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "send": ["send"],
    "preview": ["preview"],
    "deliveries": ["deliveries"],
    "resend": ["resend", "2026-12-01"],
    "serve": ["serve"],
    "status": ["status"],
    "feeds add": ["feeds", "add", "https://news.example.com/feed.xml"],
    "feeds list": ["feeds", "list"],
    "feeds remove": ["feeds", "remove", "1"],
    "web": ["web"],
    "inbound": ["inbound"],
    "suppressions list": ["suppressions", "list"],
    "suppressions add": ["suppressions", "add", "ana@example.org"],
    "suppressions remove": ["suppressions", "remove", "ana@example.org"],
    "suppressions export": ["suppressions", "export", "out.csv"],
    "resume": ["resume", "daily"],
    "alerts send": ["alerts", "send"],
    "apikeys create": ["apikeys", "create", "cms", "--scope", "read"],
    "apikeys list": ["apikeys", "list"],
    "apikeys revoke": ["apikeys", "revoke", "cms"],
    "webhooks add": ["webhooks", "add", "https://hooks.example.com/digest", "--events", "edition.sent"],
    "webhooks list": ["webhooks", "list"],
    "webhooks remove": ["webhooks", "remove", "1"],
    "webhooks enable": ["webhooks", "enable", "1"],
    "webhooks deliver": ["webhooks", "deliver"],
}
EXTRA_RUNS = [["send", "--dry-run"], ["send", "--to", "me@example.org"], ["status", "--json"]]
# Commands that never open the configured store.
NO_STORE = {"demo", "sink", "dkim keygen", "doctor"}


def command_names(group: Any, prefix: str = "") -> list[str]:
    names = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            names += command_names(cmd, full + " ")
        else:
            names.append(full)
    return names


def test_the_unreachable_database_list_names_every_command() -> None:
    names = set(command_names(typer.main.get_group(app)))

    assert names - NO_STORE == set(STORE_COMMANDS)


@pytest.mark.parametrize("args", [*STORE_COMMANDS.values(), *EXTRA_RUNS], ids=" ".join)
def test_every_command_reports_an_unreachable_database_in_one_line_exit_75(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process through ``main``, the console entry point itself: a subprocess each would take a minute.
    (tmp_path / "feed.ndjson").write_text('{"title": "Storm pact", "url": "https://x.example/a"}\n')
    (tmp_path / "people.csv").write_text("email\nana@example.org\n")
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DIGEST_DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET_KEY)
    monkeypatch.setattr(sys, "argv", ["digest", *args])
    message = b"From: a@example.org\nTo: b@example.org\nSubject: stop\n\nunsubscribe\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(message)))

    with pytest.raises(SystemExit) as done:
        main()

    err = capsys.readouterr().err
    assert done.value.code == 75, err
    line = one_line(err)
    assert "database_url" in line and "DIGEST_DATABASE_URL" in line
    assert "Traceback" not in err and "pg-s3cret-pw" not in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    plain = run(["status"], tmp_path, env_for(UNREACHABLE))
    with_flag = run(["--debug", "status"], tmp_path, env_for(UNREACHABLE))
    with_env = run(["status"], tmp_path, env_for(UNREACHABLE, DIGEST_DEBUG="1"))

    assert "Traceback" not in plain.stderr
    assert [with_flag.returncode, with_env.returncode] == [75, 75]
    assert "Traceback" in with_flag.stderr and "Traceback" in with_env.stderr
    assert "pg-s3cret-pw" not in with_flag.stderr.splitlines()[-1]


def test_an_unexpected_exception_is_one_line_that_points_to_debug(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert run(["articles", "add", "--title", "Storm pact"], tmp_path, env_for(url)).returncode == 0

    # /dev/full: every write fails with ENOSPC, an error no command expects.
    proc = run(["preview", "--output", "/dev/full"], tmp_path, env_for(url))

    assert proc.returncode == 70, proc.stderr
    line = one_line(proc.stderr)
    assert "No space left on device" in line and "--debug" in line


def test_a_database_that_does_not_exist_is_a_configuration_error(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("needs DIGEST_TEST_DATABASE_URL")
    url = make_engine(PG_URL).url.set(database="digest_no_such_database").render_as_string(hide_password=False)

    proc = run(["subscribers", "list"], tmp_path, env_for(url))

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "database_url" in line and "digest_no_such_database" in line and "does not exist" in line


def test_an_unsupported_database_scheme_is_a_configuration_error(tmp_path: Path) -> None:
    proc = run(["status"], tmp_path, env_for("mysql://editor:my-s3cret@db.example/news"))

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "database_url" in line and "mysql://" in line and "sqlite:///" in line
    assert "my-s3cret" not in line


# ---------------------------------------------------------------- a store that is not there


def test_a_sqlite_path_in_a_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "dir"

    proc = run(["subscribers", "add", "ana@example.org"], tmp_path, env_for(f"sqlite:///{typo / 'x.db'}"))

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "database_url" in line and str(typo) in line
    assert not (tmp_path / "typo").exists()


READ_ONLY = [["articles", "list"], ["subscribers", "list"], ["status"], ["preview"], ["deliveries"], ["feeds", "list"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_command_that_only_reads_does_not_create_a_sqlite_store(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "missing.db"

    proc = run(args, tmp_path, env_for(f"sqlite:///{db}"))

    assert proc.returncode == 2, proc.stderr
    assert "database_url" in one_line(proc.stderr)
    assert not db.exists()


def test_a_command_that_only_reads_does_not_create_tables_in_an_empty_postgresql(tmp_path: Path) -> None:
    with empty_database("postgresql", tmp_path) as url:
        proc = run(["status"], tmp_path, env_for(url))
        engine = make_engine(url)
        tables = inspect(engine).get_table_names()
        engine.dispose()

    assert proc.returncode == 2, proc.stderr
    assert "no digest store" in one_line(proc.stderr)
    assert tables == []


# ---------------------------------------------------------------- an SMTP server that cannot be used

AT = "2026-11-25T06:00:00+00:00"


def smtp_down_config(tmp_path: Path, db_url: str, **delivery: object) -> Path:
    from tests.cli.test_delivery_cli import write_config

    # Nothing listens on the port; the password must never be printed.
    return write_config(tmp_path, db_url, f"smtp://mailer:smtp-s3cret@127.0.0.1:{free_port()}", **delivery)


def digest_cli(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    from tests.cli.test_delivery_cli import digest

    if not env:
        return digest(config, *args)
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "digest.cli.main", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


def test_send_with_the_smtp_server_down_names_smtp_url_and_the_next_step(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    config = smtp_down_config(tmp_path, db_url, breaker_failures=10)
    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", "", None) for i in range(3)])

    proc = digest_cli(config, "send", "--at", AT)

    assert proc.returncode == 75, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: smtp_url (in ") and str(config) in last and "DIGEST_SMTP_URL" in last
    assert "cannot connect" in last
    # The first retry is due retry_base (5 minutes, less jitter) after the attempt.
    assert re.search(
        r"; 3 queued for retry: the service retries at 2026-11-25 06:0\d UTC, or run digest resend daily:2026-11-25$",
        last,
    )
    assert "smtp-s3cret" not in proc.stderr + proc.stdout


def test_send_stopped_by_the_circuit_breaker_names_smtp_url_and_the_next_step(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    config = smtp_down_config(tmp_path, db_url, breaker_failures=1)
    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", "", None) for i in range(5)])

    proc = digest_cli(config, "send", "--at", AT)

    assert proc.returncode == 75, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "smtp_url" in line and "SMTP server unavailable" in line
    assert "queued for retry" in line and line.endswith("run digest resend daily:2026-11-25")


def test_a_test_copy_with_the_smtp_server_down_names_the_variable(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = smtp_down_config(tmp_path, db_url)
    seed(engine, STANDARD_DRAFTS, [])
    smtp_url = f"smtp://mailer:smtp-s3cret@127.0.0.1:{free_port()}"

    proc = digest_cli(config, "send", "--at", AT, "--to", "me@example.org", DIGEST_SMTP_URL=smtp_url)

    assert proc.returncode == 75, proc.stderr
    line = one_line(proc.stderr)
    assert "smtp_url (in environment DIGEST_SMTP_URL)" in line and "test copy not sent" in line
    assert "smtp-s3cret" not in line


def test_a_full_disk_is_one_line_naming_database_url_exit_75(tmp_path: Path, small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'digest.db'}"
    assert run(["db", "upgrade"], tmp_path, env_for(url)).returncode == 0
    rows = [f'{{"title": "Story {i} {"x" * 200}", "url": "https://x.example/{i}"}}' for i in range(8000)]
    (tmp_path / "big.ndjson").write_text("\n".join(rows) + "\n")  # ~2 MB for a 1 MB disk

    proc = run(["articles", "import", "big.ndjson"], tmp_path, env_for(url))

    assert proc.returncode == 75, proc.stderr
    line = one_line(proc.stderr)
    assert "database_url" in line and "database or disk is full" in line and "try again later" in line


def test_a_read_only_disk_is_one_line_naming_database_url(tmp_path: Path, small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'digest.db'}"
    assert run(["subscribers", "add", "ana@example.org"], tmp_path, env_for(url)).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)

    proc = run(["subscribers", "add", "bob@example.org"], tmp_path, env_for(url))

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "database_url" in line and "writable" in line
    assert "unable to open database file" in line or "attempt to write a readonly database" in line


# ---------------------------------------------------------------- mislabelled errors


def test_a_bad_timezone_is_reported_as_the_timezone_option(tmp_path: Path) -> None:
    proc = run(
        ["subscribers", "add", "ana@example.org", "--timezone", "Europe/Berln"],
        tmp_path,
        env_for(f"sqlite:///{tmp_path / 'd.db'}"),
    )

    assert proc.returncode == 3, proc.stderr
    assert one_line(proc.stderr) == "error: --timezone: unknown IANA timezone 'Europe/Berln'"


def test_a_misspelt_key_suggests_the_known_one(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('smtpurl = "smtp://mail.example.com"\n[web]\nport = 8001\n')

    proc = run(["--config", str(config), "status"], tmp_path, env_for(f"sqlite:///{tmp_path / 'd.db'}"))

    assert proc.returncode == 2, proc.stderr
    assert (
        one_line(proc.stderr) == f"error: config error: smtpurl: unknown setting; did you mean smtp_url? (in {config})"
    )


def test_a_misspelt_key_in_a_table_suggests_the_known_one_of_that_table(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[digests.daily]\nsecions = ["World"]\n')

    proc = run(["--config", str(config), "status"], tmp_path, env_for(f"sqlite:///{tmp_path / 'd.db'}"))

    assert proc.returncode == 2, proc.stderr
    assert "digests.daily.secions: unknown setting; did you mean sections?" in one_line(proc.stderr)


def test_an_invalid_smtp_url_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'd.db'}", DIGEST_SMTP_URL="ftp://mailer:smtp-s3cret@mail.example.com")

    proc = run(["send", "--to", "me@example.org"], tmp_path, env)

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "smtp_url" in line and "environment DIGEST_SMTP_URL" in line and "smtp://" in line
    assert "smtp-s3cret" not in line


def test_a_bad_cron_names_the_file_even_for_send(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[digests.daily]\nschedule = "0 99 * * *"\n')

    proc = run(["--config", str(config), "send"], tmp_path, env_for(f"sqlite:///{tmp_path / 'd.db'}"))

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "digests.daily.schedule" in line and str(config) in line


@pytest.mark.parametrize("command", ["web", "serve"])
def test_a_busy_port_for_web_is_one_line_naming_the_setting(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_for(f"sqlite:///{tmp_path / 'd.db'}", DIGEST_WEB__PORT=str(port), DIGEST_WEB__ENABLED="true")

        proc = run([command], tmp_path, env)

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert f"web.port: cannot listen on 127.0.0.1:{port}" in line and "DIGEST_WEB__PORT" in line
    assert "web app on" not in proc.stderr


# ---------------------------------------------------------------- topics

SECTIONS = '[digests.daily]\nsections = ["World", "Business", "Science"]\n'


def topics_config(tmp_path: Path, sections: str = SECTIONS) -> Path:
    config = tmp_path / "digest.toml"
    config.write_text(sections)
    return config


def subscribers_of(engine: Engine) -> dict[str, list[str]]:
    from digest.store.db import session_scope
    from digest.store.subscribers import list_subscribers

    with session_scope(engine) as session:
        return {s.email: s.topics for s in list_subscribers(session)}


def test_an_unknown_topic_is_refused_listing_the_sections(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = topics_config(tmp_path)

    proc = run(
        ["--config", str(config), "subscribers", "add", "ana@example.org", "--topics", "World,Sciense"],
        tmp_path,
        env_for(db_url),
    )

    assert proc.returncode == 3, proc.stderr
    line = one_line(proc.stderr)
    assert line == (
        "error: --topics: unknown topic(s): Sciense (did you mean Science?); known sections: World, Business, Science"
    )
    assert subscribers_of(engine) == {}


def test_known_topics_are_stored_spelt_as_their_sections(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = topics_config(tmp_path)

    proc = run(
        ["--config", str(config), "subscribers", "add", "ana@example.org", "--topics", "world, SCIENCE"],
        tmp_path,
        env_for(db_url),
    )

    assert proc.returncode == 0, proc.stderr
    assert subscribers_of(engine) == {"ana@example.org": ["World", "Science"]}


def test_open_sections_know_the_stored_categories_and_allow_new_topics_on_request(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    config = topics_config(tmp_path, "[digests.daily]\nsections = []\n")
    seed(engine, STANDARD_DRAFTS, [])  # categories World, Business, Science
    add = ["--config", str(config), "subscribers", "add"]

    known = run([*add, "ana@example.org", "--topics", "Science"], tmp_path, env_for(db_url))
    unknown = run([*add, "bob@example.org", "--topics", "Sport"], tmp_path, env_for(db_url))
    allowed = run([*add, "bob@example.org", "--topics", "Sport", "--allow-new-topics"], tmp_path, env_for(db_url))

    assert known.returncode == 0, known.stderr
    assert unknown.returncode == 3 and "--allow-new-topics" in one_line(unknown.stderr)
    assert allowed.returncode == 0, allowed.stderr
    assert subscribers_of(engine) == {"ana@example.org": ["Science"], "bob@example.org": ["Sport"]}


def test_subscribers_import_refuses_a_row_with_an_unknown_topic(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = topics_config(tmp_path)
    (tmp_path / "people.csv").write_text('email,topics\nana@example.org,Sciense\nbob@example.org,"World, Business"\n')

    proc = run(["--config", str(config), "subscribers", "import", "people.csv"], tmp_path, env_for(db_url))

    assert proc.returncode == 3, proc.stderr
    assert "people.csv:2: unknown topic(s): Sciense (did you mean Science?)" in one_line(proc.stderr)
    assert subscribers_of(engine) == {"bob@example.org": ["World", "Business"]}
