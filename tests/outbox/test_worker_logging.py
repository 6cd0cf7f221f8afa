"""Worker processes (``[delivery] processes >= 2``) log exactly like the ``digest send`` that started them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.transport.sink import SmtpSink
from tests.cli.test_delivery_cli import AT, digest, write_config
from tests.conftest import STANDARD_DRAFTS, seed

pytestmark = pytest.mark.slow

SUBSCRIBERS = 60  # three batches of 20: more than one batch, so the worker processes start
REJECTED = [f"reader{i}@example.org" for i in range(0, SUBSCRIBERS, 7)]


def test_worker_processes_log_json_lines_with_addresses_masked(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    # The workers send everything: their lines are the ones under test.
    config = write_config(tmp_path, db_url, sink.url, processes=2, connections=2, send_while_starting="false")
    seed(engine, STANDARD_DRAFTS, [(f"reader{i}@example.org", f"Reader {i}", None) for i in range(SUBSCRIBERS)])
    # A 550 quoting the address: each worker logs the failure with the server's answer.
    sink.handler.rcpt_replies = {a: f"550 5.1.1 <{a}>: no such user" for a in REJECTED}

    proc = digest(config, "--log-format", "json", "send", "--at", AT)

    assert proc.returncode == 1, proc.stderr  # permanent failures
    assert "sent 51, failed 9" in proc.stdout
    # Everything on stderr but rich's final progress bar ("sending ━━━ 60/60") is a log line.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("sending")]
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    started = [r for r in records if r["event"] == "sender.process_started"]
    assert len({r["pid"] for r in started}) == 2  # both workers ran, and logged as JSON
    failures = [r for r in records if "failed permanently" in r.get("message", "")]
    assert len(failures) == len(REJECTED)  # logged by the workers: the parent sends nothing itself
    assert all(r["logger"] == "digest.outbox.sender" and r["level"] == "WARNING" for r in failures)
    assert not [a for a in REJECTED if a in proc.stderr]
    assert "r***@example.org" in proc.stderr
