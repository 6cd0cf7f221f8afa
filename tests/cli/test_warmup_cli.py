"""The warm-up schedule through the ``digest`` command: its settings error, ``send`` and ``status``."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.cli.test_cli import Run, real_now, seed_articles
from tests.cli.test_errors import one_line

pytestmark = pytest.mark.slow


def warmup_env(start: int = 1) -> dict[str, str]:
    """Day 1 is today (UTC); ``full`` equal to ``start`` keeps the cap the same should the test cross midnight."""
    return {
        "DIGEST_DELIVERY__WARMUP__ENABLED": "true",
        "DIGEST_DELIVERY__WARMUP__START_DATE": real_now().date().isoformat(),
        "DIGEST_DELIVERY__WARMUP__START": str(start),
        "DIGEST_DELIVERY__WARMUP__FULL": str(start),
    }


@pytest.fixture
def three(store: Engine) -> Engine:
    """Fresh articles and three subscribers, added youngest first: cy (1 day), bob (2), ana (3)."""
    seed_articles(store)
    with session_scope(store) as s:
        for addr, days in (("cy@example.org", 1), ("bob@example.org", 2), ("ana@example.org", 3)):
            add_subscriber(s, addr, real_now() - timedelta(days=days))
    return store


def test_warmup_on_without_start_date_is_a_one_line_settings_error(run: Run, three: Engine, sink: SmtpSink) -> None:
    proc = run("send", env={"DIGEST_DELIVERY__WARMUP__ENABLED": "true"})

    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "delivery.warmup.start_date" in line and "required when delivery.warmup.enabled is true" in line
    assert sink.messages == []


def test_send_reaches_the_oldest_within_the_cap_and_says_who_waits(run: Run, three: Engine, sink: SmtpSink) -> None:
    proc = run("send", env=warmup_env())
    again = run("send", env=warmup_env())

    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^warm-up day \d+ of 30: 1 of today's cap of 1 used; 2 wait for a later day$", proc.stdout, re.M)
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
    assert again.returncode == 0, again.stderr
    assert "already sent to all" not in again.stdout
    assert re.search(r"^warm-up day \d+ of 30: 1 of today's cap of 1 used; 2 wait for a later day$", again.stdout, re.M)


def test_dry_run_says_what_the_cap_would_leave_for_later(run: Run, three: Engine, sink: SmtpSink) -> None:
    proc = run("send", "--dry-run", env=warmup_env(start=2))

    assert proc.returncode == 0, proc.stderr
    assert "would send 2 message(s)" in proc.stdout
    assert re.search(
        r"^warm-up day \d+ of 30: 2 of today's cap of 2 would be used; 1 would wait for a later day$", proc.stdout, re.M
    )
    assert sink.messages == []


def test_status_shows_the_warmup_day_cap_and_use(run: Run, three: Engine, sink: SmtpSink) -> None:
    run("send", env=warmup_env(start=2))

    proc = run("status", env=warmup_env(start=2))
    as_json = run("status", "--json", env=warmup_env(start=2))

    assert proc.returncode == 0, proc.stderr
    line = r"^warm-up: day \d+ of 30 \(\d{4}-\d\d-\d\d, UTC\): today's cap 2, used 2, left 0$"
    assert re.search(line, proc.stdout, re.M)
    warmup = json.loads(as_json.stdout)["warmup"]
    assert (warmup["cap"], warmup["used"], warmup["left"], warmup["done"]) == (2, 2, 0, False)
    assert "warm-up" not in run("status").stdout
