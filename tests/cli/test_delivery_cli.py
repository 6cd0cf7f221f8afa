"""Through the real entry point: ``digest send`` killed with SIGKILL and restarted,
``digest deliveries`` and ``digest resend``, on every backend."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import time
from collections import Counter
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus
from tests.conftest import ROOT, STANDARD_DRAFTS, seed
from tests.smtp_script import ScriptedSink

DIGEST = str(ROOT / ".venv" / "bin" / "digest")
AT = "2026-11-25T06:00:00+00:00"


def write_config(tmp_path: Path, db_url: str, smtp_url: str, **delivery: object) -> Path:
    lines = [
        f'database_url = "{db_url}"',
        f'smtp_url = "{smtp_url}"',
        'secret_key = "test-secret"',
        'base_url = "https://news.example.com"',
        'from_addr = "The Briefing <briefing@news.example.com>"',
        "batch_size = 20",
        "[delivery]",
        f'journal_dir = "{tmp_path / "journal"}"',
        *(f"{k} = {v}" for k, v in delivery.items()),
        "[digests.daily]",
        'title = "The Briefing"',
        'sections = ["World", "Business", "Science"]',
    ]
    path = tmp_path / "digest.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def digest(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") or k.startswith("DIGEST_TEST_")}
    return subprocess.run(
        [DIGEST, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def wait_until_gone(group: int, timeout: float = 10) -> None:
    """SIGKILL is delivered asynchronously: wait until no process of ``group`` still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] not in ("Z", "X"):
                running = True
                break
        if not running:
            return
        time.sleep(0.02)


@pytest.fixture
def script() -> ScriptedSink:
    with ScriptedSink() as s:
        yield s  # type: ignore[misc]


@pytest.mark.slow
def test_sender_killed_mid_send_and_restarted_reaches_everyone_at_most_in_flight_twice(
    engine: Engine, db_url: str, tmp_path: Path, script: ScriptedSink
) -> None:
    processes, connections, subscribers = 2, 2, 400
    config = write_config(tmp_path, db_url, script.url, processes=processes, connections=connections)
    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", f"Reader {i}", None) for i in range(subscribers)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") or k.startswith("DIGEST_TEST_")}
    proc = subprocess.Popen(
        [DIGEST, "--config", str(config), "send", "--at", AT],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
        env=env,
    )
    deadline = time.monotonic() + 60
    while len(script.messages) < 60 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until_gone(proc.pid)
    at_kill = len(script.messages)
    assert 0 < at_kill < subscribers, "the kill must land mid-send"

    again = digest(config, "send", "--at", AT)
    assert again.returncode == 0, again.stderr

    received = script.handler.count()
    assert set(received) == {f"r{i}@example.org" for i in range(subscribers)}
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= processes * connections
    # A duplicate carries the same Message-ID as the first copy: recognisable.
    ids: dict[str, set[str]] = {}
    for m in script.messages:
        msg = email.message_from_bytes(m.data, policy=policy.default)
        ids.setdefault(m.rcpt_tos[0], set()).add(str(msg["Message-ID"]))
    assert all(len(v) == 1 for v in ids.values())
    with session_scope(engine) as s:
        statuses = Counter(s.exec(select(Delivery.status)).scalars())  # type: ignore[call-overload]
    assert statuses == {DeliveryStatus.SENT: subscribers}
    assert list((tmp_path / "journal").rglob("*.sent")) == []


def test_deliveries_lists_failed_ones_and_resend_retries_only_those(
    engine: Engine, db_url: str, tmp_path: Path, script: ScriptedSink
) -> None:
    config = write_config(tmp_path, db_url, script.url)
    seed(engine, STANDARD_DRAFTS, [(f"r{i}@example.org", "", None) for i in range(4)])
    script.handler.rcpt_replies["r2@example.org"] = "550 5.1.1 no such user"
    first = digest(config, "send", "--at", AT)
    assert first.returncode == 1 and "failed 1" in first.stdout

    listed = digest(config, "deliveries", "--status", "failed")
    assert listed.returncode == 0, listed.stderr
    assert "r2@example.org" in listed.stdout and "r1@example.org" not in listed.stdout
    assert "550 5.1.1" in listed.stdout

    del script.handler.rcpt_replies["r2@example.org"]
    resent = digest(config, "resend", "daily:2026-11-25")  # --failed is implied
    assert resent.returncode == 0, resent.stderr
    assert "retried 1: sent 1" in resent.stdout
    assert script.handler.count() == Counter({f"r{i}@example.org": 1 for i in range(4)})
    everything = digest(config, "deliveries", "--edition", "daily:2026-11-25")
    assert "4 deliveries: 4 sent" in everything.stdout


def test_unknown_status_and_unknown_edition_are_clear_errors(
    engine: Engine, db_url: str, tmp_path: Path, script: ScriptedSink
) -> None:
    config = write_config(tmp_path, db_url, script.url)
    bad = digest(config, "deliveries", "--status", "lost")
    assert bad.returncode == 3 and "unknown status 'lost'" in bad.stderr
    missing = digest(config, "resend", "daily:1999-01-01", "--failed")
    assert missing.returncode == 4 and "no edition" in missing.stderr
