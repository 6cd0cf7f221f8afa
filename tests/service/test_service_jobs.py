"""The service's job set: derived from the settings, fixed ids, explicit timezones; sd_notify."""

from __future__ import annotations

import socket
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine

from digest.app.jobs import job_specs
from digest.core.clock import FixedClock
from digest.core.settings import DigestConfig, Settings
from digest.service.runner import Service, sd_notify
from digest.store.db import session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from tests.conftest import NOW, draft, seed


def test_jobs_have_fixed_ids_and_every_trigger_an_explicit_timezone() -> None:
    settings = Settings(
        digests={
            "morning": DigestConfig(schedule="0 7 * * 1-5", timezone="Europe/Berlin"),
            "evening": DigestConfig(schedule="30 18 * * *", timezone="Pacific/Kiritimati"),
        }
    )

    specs = job_specs(settings)

    assert [s.id for s in specs] == [
        "leader", "digest:morning", "digest:evening", "slots", "feeds", "alerts", "outbox", "webhooks",
    ]  # fmt: skip
    assert [s.id for s in job_specs(settings)] == [s.id for s in specs]  # the same on every start
    crons = {s.id: s.trigger for s in specs if isinstance(s.trigger, CronTrigger)}
    assert crons["digest:morning"].timezone == ZoneInfo("Europe/Berlin")
    assert crons["digest:evening"].timezone == ZoneInfo("Pacific/Kiritimati")
    assert all(str(s.trigger.timezone) in ("UTC", "Europe/Berlin", "Pacific/Kiritimati") for s in specs)  # type: ignore[attr-defined]
    assert {s.id for s in specs if not s.leader_only} == {"leader", "outbox", "webhooks"}


def test_sd_notify_tells_systemd_we_are_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))

        sd_notify("READY=1")

        assert server.recv(100) == b"READY=1"


def test_the_alerts_job_queues_an_alert_that_the_outbox_job_sends(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock
) -> None:
    seed(engine, [draft("Dam breach upstream", 5, breaking=True, priority=9)], [])
    with session_scope(engine) as session:
        add_subscriber(session, "ana@example.org", NOW, alerts=True)
    service = Service(settings, engine, clock=clock)

    service.run_alerts()
    service.send()
    service.run_alerts()
    service.send()

    assert [m.rcpt_tos for m in sink.messages] == [["ana@example.org"]]
