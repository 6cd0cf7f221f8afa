"""Prometheus metrics: /metrics shows a real send in progress; ``[metrics] port`` serves the sender's own."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.app.metrics import serve_metrics
from digest.core.clock import SystemClock
from digest.core.errors import ConfigError
from digest.core.settings import MetricsSettings, Settings
from digest.outbox.drain import drain_outbox
from digest.transport.sink import SmtpSink, free_port
from digest.web.server import WebServer, make_app
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers
from tests.outbox.test_ledger import edition_of


def scrape(url: str, client: httpx.Client | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by (name, sorted labels)."""
    text = (client or httpx).get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_show_a_send_in_progress(engine: Engine, settings: Settings, sink: SmtpSink) -> None:
    settings.secret_key = SecretStr(secrets.token_urlsafe(32))
    settings.batch_size = 5  # recorded every 5 messages: the send is watched as it goes
    seed(engine, STANDARD_DRAFTS, readers(40))
    edition_of(engine, settings)
    # The server holds every message after the 10th until /metrics has been read mid-send:
    # polling alone misses the middle when the machine sends 40 messages between two reads.
    release = threading.Event()
    accept = sink.handler.handle_DATA

    async def held(server: Any, session: Any, envelope: Any) -> str:
        if len(sink.messages) >= 10:
            await asyncio.to_thread(release.wait, 30)
        return await accept(server, session, envelope)

    sink.handler.handle_DATA = held  # type: ignore[method-assign]
    port = free_port()
    seen: list[tuple[float, float]] = []
    with (
        WebServer(make_app(settings, engine, SystemClock()), settings, "127.0.0.1", port) as web,
        httpx.Client(base_url=web.url) as client,
    ):
        sender = threading.Thread(target=drain_outbox, args=(engine, settings, SystemClock()))
        sender.start()
        deadline = time.monotonic() + 30
        while sender.is_alive():
            m = scrape("/metrics", client)
            seen.append((m[("digest_deliveries", (("status", "sent"),))], m[("digest_queue_depth", ())]))
            if 0 < seen[-1][0] < 40 or time.monotonic() > deadline:
                release.set()
            time.sleep(0.05)
        sender.join()
        final = scrape("/metrics", client)

    sent = [s for s, _ in seen]
    depth = [d for _, d in seen]
    assert any(0 < s < 40 for s in sent), seen  # caught mid-send
    assert sent == sorted(sent) and depth == sorted(depth, reverse=True)
    assert final[("digest_deliveries", (("status", "sent"),))] == 40
    assert final[("digest_queue_depth", ())] == 0
    assert final[("digest_sent_recent", (("window", "1m"),))] == 40
    assert final[("digest_store_up", ())] == 1
    # The sender ran in this process: its SMTP latencies are in the same /metrics.
    server = settings.smtp_url.get_secret_value().removeprefix("smtp://")
    assert final[("digest_smtp_send_seconds_count", (("outcome", "sent"), ("server", server)))] >= 40
    assert final[("digest_smtp_breaker_open", (("server", server),))] == 0


def test_the_metrics_port_serves_the_store_and_the_breakers(engine: Engine, settings: Settings) -> None:
    settings.metrics = MetricsSettings(port=free_port())
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition_of(engine, settings)

    server = serve_metrics(engine, settings, SystemClock())
    try:
        m = scrape(f"http://127.0.0.1:{settings.metrics.port}/metrics")
    finally:
        server.shutdown()
        server.server_close()

    assert m[("digest_queue_depth", ())] == 3
    assert m[("digest_editions", (("digest", "daily"), ("status", "ready")))] == 1


def test_a_busy_metrics_port_is_one_config_error(engine: Engine, settings: Settings) -> None:
    settings.metrics = MetricsSettings(port=free_port())
    first = serve_metrics(engine, settings, SystemClock())
    try:
        with pytest.raises(ConfigError, match=r"metrics\.port: cannot listen on 127\.0\.0\.1:"):
            serve_metrics(engine, settings, SystemClock())
    finally:
        first.shutdown()
        first.server_close()
