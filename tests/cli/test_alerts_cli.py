"""``digest alerts send`` and the alert options of ``subscribers add``/``import``, through the real entry point."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.store.db import session_scope
from digest.store.models import Subscriber
from digest.transport.sink import SmtpSink
from tests.cli.test_cli import Run


def test_alerts_send_mails_the_opted_in_subscriber_once(run: Run, store: Engine, sink: SmtpSink) -> None:
    assert run("subscribers", "add", "ana@example.org", "--alerts").returncode == 0
    assert run("subscribers", "add", "ben@example.org").returncode == 0
    added = run("articles", "add", "--title", "Dam breach upstream", "--url", "https://news.example.com/dam",
                "--breaking", "--priority", "7")  # fmt: skip
    assert added.returncode == 0, added.stderr

    first = run("alerts", "send")
    second = run("alerts", "send")

    assert first.returncode == 0, first.stderr
    assert "Dam breach upstream" in first.stdout and "sent 1" in first.stdout
    assert "sent 0" in second.stdout
    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]


def test_subscribers_import_reads_the_alert_columns(run: Run, store: Engine, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("email,alerts,quiet_start,quiet_end\nana@example.org,yes,22:00,7:00\nben@example.org,,,\n")

    done = run("subscribers", "import", str(csv))

    assert done.returncode == 0, done.stderr
    with session_scope(store) as session:
        rows = {s.email: (s.alerts, s.quiet_start, s.quiet_end) for s in session.exec(select(Subscriber))}
    assert rows == {"ana@example.org": (True, "22:00", "07:00"), "ben@example.org": (False, None, None)}
