"""``digest serve`` end to end with webhooks and ``[metrics] port``: events queued while the receiver is
down arrive, signed and once each, after a restart; the sender's own /metrics shows its SMTP latency."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from digest.app.webhooks import add_webhook, list_webhooks
from digest.core.clock import SystemClock
from digest.transport.sink import SmtpSink, free_port
from tests.service.test_serve import _STARTED, cron_at, seed, start, write_config
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def metric(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_webhooks_survive_a_restart_and_the_metrics_port_shows_the_sender(
    engine: Engine, db_url: str, sink: SmtpSink, tmp_path: Path
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the queue on PostgreSQL is in tests/store; one backend is enough for the wiring")
    seed(engine, 3)
    receiver = Receiver()  # not started: the endpoint is down while the edition goes out
    receiver.secret = add_webhook(engine, SystemClock(), receiver.url, ["delivery.sent", "edition.sent"]).secret
    at = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    config = tmp_path / "digest.toml"
    env = write_config(config, db_url, sink.url, {"daily": cron_at(at)})
    port = free_port()
    text = config.read_text(encoding="utf-8").replace('lease = "4s"', 'lease = "60s"')  # a loaded machine is slow
    text += f'[webhooks]\ninterval = "1s"\nretry_base = "1s"\nretry_max = "2s"\n[metrics]\nport = {port}\n'
    # The latency histogram is per process: with one sender process it is the one serve shows.
    text += "[delivery]\nprocesses = 1\n"
    config.write_text(text, encoding="utf-8")
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    proc = start(env, "--log-format", "json", "serve")
    proc.wait_for("metrics.started", timeout=40)
    deadline = time.monotonic() + 40
    while metric(metrics_url, "digest_deliveries", status="sent") != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.wait_for("webhook.failed", timeout=20)
    server = sink.url.removeprefix("smtp://")
    latency = metric(metrics_url, "digest_smtp_send_seconds_count", server=server, outcome="sent")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=30) == 0

    assert latency == 3
    [down] = list_webhooks(engine)
    assert down.pending == 3 and down.consecutive_failures >= 1  # two batches of 2 and 1, and edition.sent

    receiver.start()
    try:
        again = start(env, "--log-format", "json", "serve")
        deadline = time.monotonic() + 30
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a few more passes of the webhooks job: nothing is sent twice
        again.popen.send_signal(signal.SIGTERM)
        assert again.popen.wait(timeout=30) == 0
    finally:
        receiver.stop()

    assert sorted(r.payload["type"] for r in receiver.received) == ["delivery.sent", "delivery.sent", "edition.sent"]
    assert all(r.verified for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 3
    assert sum(len(r.payload["data"].get("deliveries", [])) for r in receiver.received) == 3
    assert list_webhooks(engine)[0].pending == 0
