"""``digest status`` and ``digest feeds``: what ops see, through the library and the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.app.planner import run_due
from digest.app.status import collect_status
from digest.core.clock import FixedClock
from digest.core.settings import DigestConfig, Settings
from digest.ingest.feeds import add_feed
from digest.store.db import session_scope
from digest.store.models import ServiceNode
from digest.store.provider_pauses import record_provider_pause
from digest.store.subscribers import add_subscriber
from tests.conftest import STANDARD_DRAFTS, seed

DIGEST = str(Path(sys.executable).parent / "digest")
NOW = datetime(2026, 11, 25, 7, 0, 30, tzinfo=UTC)


def test_status_shows_jobs_next_editions_last_edition_counts_feeds_and_the_outbox(db_url: str, engine: Engine) -> None:
    settings = Settings(
        database_url=db_url, digests={"daily": DigestConfig(schedule="0 7 * * 1-5", timezone="Europe/Berlin")}
    )
    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana", None)])
    with session_scope(engine) as s:
        add_subscriber(s, "ben@example.org", NOW, timezone="Pacific/Kiritimati", send_time="07:00")
        add_feed(s, "https://wire.example.com/a.xml", NOW, every=timedelta(minutes=15))
        s.add(ServiceNode(worker="host:1", hostname="host", pid=1, leader=True, started_at=NOW, seen_at=NOW))
    run_due(
        engine, settings, "daily", FixedClock(datetime(2026, 11, 25, 6, 0, 10, tzinfo=UTC))
    )  # 07:00 Berlin, a Wednesday

    info = collect_status(engine, settings, NOW)

    jobs = {j["id"]: j for j in info["jobs"]}
    assert set(jobs) == {"leader", "digest:daily", "slots", "feeds", "alerts", "outbox", "webhooks"}
    assert jobs["digest:daily"]["next_run"] == "2026-11-26T06:00:00Z"  # Thursday 07:00 Berlin
    (daily,) = info["digests"]
    assert {"series": "schedule", "next_run": "2026-11-26T06:00:00Z"} in daily["upcoming"]
    assert {"series": "07:00 Pacific/Kiritimati", "next_run": "2026-11-25T17:00:00Z"} in daily["upcoming"]
    last = daily["last_edition"]
    assert (last["slot"], last["status"], last["queued"], last["sent"], last["failed"]) == (
        "2026-11-25",
        "sending",
        1,
        0,
        0,
    )
    assert info["outbox"]["pending"] == 1
    assert info["outbox"]["oldest_queued"]["age_seconds"] == 3600 + 20
    assert [(f["url"], f["status"]) for f in info["feeds"]] == [("https://wire.example.com/a.xml", "new")]
    assert info["processes"] == [
        {
            "worker": "host:1",
            "leader": True,
            "started_at": "2026-11-25T07:00:30Z",
            "seen_at": "2026-11-25T07:00:30Z",
            "alive": True,
        }
    ]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_DATABASE_URL"] = f"sqlite:///{tmp_path / 'd.db'}"
    return subprocess.run([DIGEST, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_feeds_commands_and_status_json_through_the_cli(tmp_path: Path) -> None:
    added = run(tmp_path, "feeds", "add", "https://wire.example.com/a.xml", "--category", "World", "--every", "5m")
    assert added.returncode == 0, added.stderr
    assert "every 300s" in added.stdout

    listed = run(tmp_path, "feeds", "list", "--json")
    assert [json.loads(line)["category"] for line in listed.stdout.splitlines()] == ["World"]
    status = run(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["feeds"][0]["status"] == "new"

    removed = run(tmp_path, "feeds", "remove", "https://wire.example.com/a.xml")
    assert removed.returncode == 0 and "removed feed 1" in removed.stdout


def test_a_feed_password_is_never_printed(tmp_path: Path) -> None:
    url = "https://reader:hunter2-feed-pass@wire.example.com/private.xml"

    outputs = [
        run(tmp_path, "feeds", "add", url),
        run(tmp_path, "feeds", "list", "--json"),
        run(tmp_path, "feeds", "list"),
        run(tmp_path, "status", "--json"),
        run(tmp_path, "status"),
        run(tmp_path, "feeds", "add", url),  # already added: the error names the URL
        run(tmp_path, "feeds", "remove", url),
    ]

    assert [o.returncode for o in outputs] == [0, 0, 0, 0, 0, 3, 0]
    for o in outputs:
        assert "hunter2-feed-pass" not in o.stdout + o.stderr
    assert "https://reader:***@wire.example.com/private.xml" in outputs[0].stdout
    assert json.loads(outputs[3].stdout)["feeds"][0]["url"] == "https://reader:***@wire.example.com/private.xml"


def test_bad_log_format_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(tmp_path, "--log-format", "xml", "serve")

    assert result.returncode == 3
    assert result.stderr.strip() == "error: --log-format: must be human or json, not 'xml'"


def test_bad_schedule_stops_serve_with_the_key_named(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[digests.daily]\nschedule = "0 7 * *"\n', encoding="utf-8")

    result = run(tmp_path, "--config", "bad.toml", "serve")

    assert result.returncode == 2
    assert "digests.daily.schedule" in result.stderr and "5 fields" in result.stderr


GMAIL_REPLY = "421 4.7.28 Unusual rate of unsolicited mail from your IP to gina.rossi@gmail.com"


def test_status_lists_the_providers_paused_now_and_not_the_expired(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        record_provider_pause(
            conn, "google", NOW + timedelta(minutes=10), f"google gmail rate limit: {GMAIL_REPLY}", NOW
        )
        record_provider_pause(conn, "yahoo", NOW - timedelta(seconds=1), "yahoo deferral: 421 [TSS04]", NOW)

    pauses = collect_status(engine, Settings(database_url=db_url), NOW)["provider_pauses"]

    assert pauses == [
        {
            "provider": "google",
            "until": "2026-11-25T07:10:30Z",
            "reason": "google gmail rate limit: 421 4.7.28 Unusual rate of unsolicited mail from your IP "
            "to g***@gmail.com",
        }
    ]
    assert collect_status(engine, Settings(database_url=db_url), NOW + timedelta(minutes=10))["provider_pauses"] == []


def test_status_prints_a_line_per_paused_provider_through_the_cli(db_url: str, engine: Engine, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_DATABASE_URL=db_url, COLUMNS="200")
    cmd = [sys.executable, "-m", "digest.cli.main", "status"]
    before = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        record_provider_pause(
            conn, "google", now + timedelta(minutes=10), f"google gmail rate limit: {GMAIL_REPLY}", now
        )

    after = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    assert "provider paused" not in before.stdout
    until = (now + timedelta(minutes=10)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    line = (
        f"provider paused: google until {until}: google gmail rate limit: 421 4.7.28 Unusual rate of unsolicited "
        "mail from your IP to g***@gmail.com"
    )
    assert line in after.stdout.splitlines(), after.stdout
    assert "gina.rossi" not in after.stdout
