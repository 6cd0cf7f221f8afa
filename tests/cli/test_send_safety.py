"""Mistakes that must not send anything, through the real entry point on every backend.

A blank ``--to``, an ``--at`` in the future, a manual send after the service served
someone's local day, and a ``--dry-run`` that must count what the send would do.
Each test asserts what the real SMTP sink received and what the store recorded.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from digest.app.planner import run_due
from digest.core.clock import FixedClock
from digest.core.settings import load_settings
from digest.ingest.save import upsert_articles
from digest.outbox.drain import drain_outbox
from digest.outbox.ledger import queue_deliveries
from digest.store.db import session_scope
from digest.store.models import Delivery, Edition, EditionStatus, SubscriberStatus
from digest.store.subscribers import add_subscriber, set_status
from digest.transport.sink import SmtpSink
from tests.cli.test_delivery_cli import AT, digest, write_config
from tests.conftest import NOW, STANDARD_DRAFTS, draft, seed

pytestmark = pytest.mark.slow

READERS = [("ana@example.org", "Ana", None), ("bob@example.org", "Bob", None)]


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be a single line without a traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def said(proc: subprocess.CompletedProcess[str]) -> str:
    """stdout with rich's wrapping (80 columns in a pipe) undone."""
    return " ".join(proc.stdout.split())


def received(sink: SmtpSink) -> list[str]:
    return sorted(r for m in sink.messages for r in m.rcpt_tos)


def seed_fresh(engine: Engine, now: datetime) -> None:
    """Articles published minutes before ``now`` (the CLI's clock is the real one) and two readers."""
    drafts = [draft(d.title, published_at=now - timedelta(minutes=5 + i), category=d.category)
              for i, d in enumerate(STANDARD_DRAFTS)]  # fmt: skip
    with session_scope(engine) as session:
        upsert_articles(session, drafts, now)
        for email, name, _ in READERS:
            add_subscriber(session, email, now, name=name)


# ---------------------------------------------------------------- --to


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_to_is_an_error_and_sends_nothing(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, blank: str
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    seed(engine, STANDARD_DRAFTS, READERS)

    proc = digest(config, "send", "--to", blank, "--at", AT)

    assert proc.returncode == 3
    assert one_error_line(proc) == "error: --to: is empty; give the address for the test copy (nothing was sent)"
    assert sink.messages == []
    assert count(engine, Edition) == count(engine, Delivery) == 0


# ---------------------------------------------------------------- --at in the future


def test_send_at_a_future_time_refuses_and_records_nothing(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    now = datetime.now(UTC)
    seed_fresh(engine, now)
    tomorrow = (now + timedelta(days=1)).replace(microsecond=0).isoformat()

    proc = digest(config, "send", "--at", tomorrow)

    assert proc.returncode == 3
    line = one_error_line(proc)
    assert line.startswith(f"error: --at: {tomorrow} is in the future; nothing was sent.")
    assert "--force-future" in line
    assert sink.messages == []
    assert count(engine, Edition) == count(engine, Delivery) == 0


def test_send_at_a_future_time_with_dry_run_counts_and_records_nothing(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    now = datetime.now(UTC)
    seed_fresh(engine, now)
    soon = (now + timedelta(hours=2)).replace(microsecond=0).isoformat()

    proc = digest(config, "send", "--at", soon, "--dry-run")

    assert proc.returncode == 0, proc.stderr
    assert "would send 2 message(s)" in said(proc)
    assert sink.messages == []
    assert count(engine, Edition) == count(engine, Delivery) == 0


def test_send_at_a_future_time_with_force_future_sends(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    now = datetime.now(UTC)
    seed_fresh(engine, now)
    soon = (now + timedelta(hours=2)).replace(microsecond=0).isoformat()

    proc = digest(config, "send", "--at", soon, "--force-future")

    assert proc.returncode == 0, proc.stderr
    assert received(sink) == ["ana@example.org", "bob@example.org"]


def test_status_shows_a_delivery_stamped_in_the_future_as_zero_seconds_old(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    future = datetime.now(UTC) + timedelta(hours=5)
    seed(engine, STANDARD_DRAFTS, READERS)
    with session_scope(engine) as session:
        edition = Edition(digest="daily", slot="2026-12-31", built_at=future, status=EditionStatus.READY)
        session.add(edition)
        session.flush()
        assert edition.id is not None
        queue_deliveries(session, edition.id, future)

    text = digest(config, "status")
    as_json = digest(config, "status", "--json")

    assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
    assert "oldest queued 0s ago" in said(text)
    assert json.loads(as_json.stdout)["outbox"]["oldest_queued"]["age_seconds"] == 0


# ---------------------------------------------------------------- the local-day claim


def served_by_the_service(engine: Engine, config: Path) -> None:
    """Ana reads at 07:00 Berlin: the service builds, claims and sends her local-time edition (06:00 UTC)."""
    with session_scope(engine) as session:
        add_subscriber(session, "ana@example.org", NOW, name="Ana", timezone="Europe/Berlin", send_time="07:00")
        add_subscriber(session, "bob@example.org", NOW, name="Bob")
        upsert_articles(session, STANDARD_DRAFTS, NOW)
    settings = load_settings(config)
    clock = FixedClock(NOW + timedelta(minutes=1))
    assert [o.action for o in run_due(engine, settings, "daily", clock)] == ["queued"]
    drain_outbox(engine, settings, clock)


def test_manual_send_skips_and_counts_who_the_service_served_today(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    served_by_the_service(engine, config)
    assert received(sink) == ["ana@example.org"]

    proc = digest(config, "send", "--at", "2026-11-25T07:30:00+00:00")

    assert proc.returncode == 0, proc.stderr
    assert received(sink) == ["ana@example.org", "bob@example.org"]  # ana once, not twice
    assert (
        "sent 1, failed 0 (0 will be retried), skipped 1 "
        "(0 already sent, 0 with nothing new in their topics, 1 already served today" in said(proc)
    )
    assert "--also-served" in said(proc)


def test_manual_send_with_also_served_sends_to_them_too(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    served_by_the_service(engine, config)

    proc = digest(config, "send", "--at", "2026-11-25T07:30:00+00:00", "--also-served")

    assert proc.returncode == 0, proc.stderr
    assert received(sink) == ["ana@example.org", "ana@example.org", "bob@example.org"]
    assert "sent 2" in said(proc)


def test_service_does_not_send_a_second_edition_to_whom_a_manual_send_reached_today(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    with session_scope(engine) as session:
        add_subscriber(session, "ana@example.org", NOW, name="Ana", timezone="Europe/Berlin", send_time="07:00")
        upsert_articles(session, STANDARD_DRAFTS, NOW)
    manual = digest(config, "send", "--at", "2026-11-25T05:30:00+00:00")  # 06:30 in Berlin
    assert manual.returncode == 0, manual.stderr
    settings = load_settings(config)
    clock = FixedClock(NOW + timedelta(minutes=1))  # 07:01 in Berlin: her own edition is due

    outcomes = run_due(engine, settings, "daily", clock)
    drain_outbox(engine, settings, clock)

    assert [o.queued for o in outcomes if o.action == "queued"] == [0]
    assert received(sink) == ["ana@example.org"]


# ---------------------------------------------------------------- --dry-run counts what send does


def test_dry_run_counts_exactly_what_send_then_sends(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    """Two readers get it; one whose topic has no news and one who left do not; then everyone has it."""
    config = write_config(tmp_path, db_url, sink.url)
    # Not breaking either: a breaking story reaches every reader, whatever their topics.
    world_and_business = [replace(d, breaking=False) for d in STANDARD_DRAFTS if d.category != "Science"]
    seed(engine, world_and_business, [*READERS, ("cy@example.org", "Cy", "Science")])
    with session_scope(engine) as session:
        add_subscriber(session, "dan@example.org", NOW)
        set_status(session, "dan@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)

    before = digest(config, "send", "--at", AT, "--dry-run")
    sent = digest(config, "send", "--at", AT)
    after = digest(config, "send", "--at", AT, "--dry-run")

    assert "would send 2 message(s)" in said(before), said(before)
    assert "sent 2," in said(sent), said(sent)
    assert received(sink) == ["ana@example.org", "bob@example.org"]
    assert "would send 0 message(s)" in said(after), said(after)
    assert "2 already sent" in said(after)


def test_dry_run_after_the_service_served_someone_today_does_not_count_them(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    served_by_the_service(engine, config)

    proc = digest(config, "send", "--at", "2026-11-25T07:30:00+00:00", "--dry-run")

    assert proc.returncode == 0, proc.stderr
    assert "would send 1 message(s)" in said(proc)
    assert "1 already served today" in said(proc)
    assert received(sink) == ["ana@example.org"]  # the service's copy only
