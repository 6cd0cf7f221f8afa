"""``digest suppressions`` and the suppression checks of ``subscribers add|import`` and ``send``,
through the real entry point, on every backend, sending to a real SMTP sink."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.outbox.ledger import claim_batch, queue_deliveries
from digest.store.db import session_scope
from digest.store.models import Delivery, DeliveryStatus, SubscriberStatus
from digest.store.pauses import pause_digest
from digest.store.subscribers import add_subscriber, find_subscriber, set_status
from digest.transport.sink import SmtpSink
from tests.cli.test_delivery_cli import AT, digest, write_config
from tests.conftest import NOW, STANDARD_DRAFTS, seed


def test_send_skips_a_suppressed_address(engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana", None), ("bob@example.org", "Bob", None)])
    added = digest(config, "suppressions", "add", "bob@example.org")
    sent = digest(config, "send", "--at", AT)
    assert (added.returncode, sent.returncode) == (0, 0), sent.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
    with session_scope(engine) as s:
        statuses = sorted(s.exec(select(Delivery.status)).scalars())  # type: ignore[call-overload]
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SKIPPED]


def test_add_of_an_unsubscribed_then_deleted_address_is_refused_in_one_line(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW)
        set_status(s, "ana@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    assert digest(config, "subscribers", "remove", "ana@example.org").returncode == 0
    refused = digest(config, "subscribers", "add", "ana@example.org")
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        "error: email: a***@example.org is suppressed (unsubscribed): it needs a fresh confirmation "
        "(or --allow-suppressed)"
    ]
    with session_scope(engine) as s:
        assert find_subscriber(s, "ana@example.org") is None


def test_add_with_allow_suppressed_adds_and_lifts_the_suppression(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    digest(config, "suppressions", "add", "ana@example.org")
    added = digest(config, "subscribers", "add", "ana@example.org", "--allow-suppressed")
    listed = digest(config, "suppressions", "list")
    assert added.returncode == 0, added.stderr
    assert "0 suppression(s)" in listed.stdout


def test_import_rejects_a_suppressed_row_naming_its_line(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    digest(config, "suppressions", "add", "cy@example.org")
    path = tmp_path / "subs.csv"
    path.write_text("email,name\nbob@example.org,Bob\ncy@example.org,Cy\n", encoding="utf-8")
    result = digest(config, "subscribers", "import", str(path))
    assert result.returncode == 3
    assert f"{path}:3: c***@example.org is suppressed (manual)" in result.stderr
    assert "added 1, updated 0, rejected 1" in result.stdout


def test_list_remove_and_export(engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    for addr in ("ana@example.org", "bob@example.org"):
        digest(config, "suppressions", "add", addr)
    removed = digest(config, "suppressions", "remove", "ana@example.org")
    again = digest(config, "suppressions", "remove", "ana@example.org")
    exported = digest(config, "suppressions", "export", str(tmp_path / "out.csv"))
    assert (removed.returncode, again.returncode, exported.returncode) == (0, 4, 0)
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert [(r["email"], r["reason"], r["source"]) for r in rows] == [("bob@example.org", "manual", "cli")]
    assert "bob@example.org" in digest(config, "suppressions", "list").stdout


# ---------------------------------------------------------------- a digest paused for complaints


def pause(engine: Engine) -> None:
    with engine.begin() as conn:
        pause_digest(conn, "daily", "3 complaint(s) in 1000 messages of edition 2026-11-24 (0.30%)", NOW)


def test_paused_digest_is_not_sent_and_status_says_why(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana", None)])
    pause(engine)

    sent = digest(config, "send", "--at", AT)
    status = digest(config, "status")

    assert sent.returncode == 9
    # The line before it is the progress bar `digest send` opens first.
    assert sent.stderr.strip().splitlines()[-1] == (
        "error: digest daily is paused: 3 complaint(s) in 1000 messages of edition 2026-11-24 (0.30%); "
        "run `digest resume daily` to send again"
    )
    assert "Traceback" not in sent.stderr
    assert sink.messages == []
    assert "paused: daily since 2026-11-25 06:00:00: 3 complaint(s) in 1000 messages" in status.stdout


def test_queued_deliveries_of_a_paused_digest_wait_until_resume(
    engine: Engine, db_url: str, tmp_path: Path, sink: SmtpSink, settings: Settings
) -> None:
    config = write_config(tmp_path, db_url, sink.url)
    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana", None)])
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id or 0, NOW)
    pause(engine)

    waiting = claim_batch(engine, "w:1:1", NOW, timedelta(minutes=5), 10, [edition.id or 0])
    resumed = digest(config, "resume", "daily")
    again = digest(config, "resume", "daily")
    sent = digest(config, "send", "--at", AT)

    assert waiting == []
    assert (resumed.returncode, again.returncode, sent.returncode) == (0, 4, 0), sent.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
