"""Prometheus metrics: the store's gauges, read at scrape time, and this process's own.

The web app and the sender are separate processes (or several of them), so what
the send is doing is read from the store when Prometheus scrapes: deliveries by
status, the queue and its oldest entry, messages sent in the last minute and five
minutes, editions, feeds, webhook queue (:class:`StoreCollector`). Whatever process
answers the scrape, the figures are the same.

What only the sending process knows (SMTP latency, each server's circuit breaker)
is in its own registry (:mod:`digest.core.metrics`) and is served by ``digest
serve`` on ``[metrics] port`` (:func:`serve_metrics`); the web app's ``/metrics``
shows its own process registry too (web requests by route and status). Every
metric is listed in docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.clock import Clock
from digest.core.errors import ConfigError
from digest.core.metrics import PROCESS
from digest.core.settings import Settings
from digest.store.models import Delivery, DeliveryStatus, Edition, Feed, FeedStatus, Webhook
from digest.store.webhooks import queue_stats
from digest.transport.pool import breaker_states

log = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]
F = Feed.__table__  # type: ignore[attr-defined]
W = Webhook.__table__  # type: ignore[attr-defined]

# The send-rate windows, by label.
WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5)}


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StoreCollector(Collector):
    """Gauges read from the store at each scrape (a handful of aggregate queries)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = _gauge("digest_store_up", "1 when the store answered this scrape's queries, else 0.")
        try:
            with self.engine.connect() as conn:
                found = list(self._read(conn))
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _read(self, conn: Connection) -> Iterator[Metric]:
        now = self.clock.now()
        by_status = dict.fromkeys(DeliveryStatus.ALL, 0)
        by_status.update({s: int(n) for s, n in conn.execute(select(D.c.status, func.count()).group_by(D.c.status))})
        deliveries = _gauge(
            "digest_deliveries", "Deliveries (one edition to one subscriber) in each status.", ["status"]
        )
        for status, n in sorted(by_status.items()):
            deliveries.add_metric([status], n)
        yield deliveries

        depth, oldest = conn.execute(
            select(func.count(), func.min(D.c.created_at)).where(D.c.status.in_(DeliveryStatus.PENDING))
        ).one()
        yield GaugeMetricFamily(
            "digest_queue_depth", "Deliveries still to send: queued, claimed or waiting for a retry.", value=depth
        )
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "digest_queue_oldest_age_seconds", "Age of the oldest delivery still to send (0: none).", value=age
        )

        cutoffs = {label: now - span for label, span in WINDOWS.items()}
        widest = min(cutoffs.values())
        counts = conn.execute(
            select(*[func.sum(case((D.c.sent_at >= at, 1), else_=0)) for at in cutoffs.values()]).where(
                D.c.status == DeliveryStatus.SENT, D.c.sent_at >= widest, D.c.sent_at <= now
            )
        ).one()
        sent = _gauge("digest_sent_recent", "Messages the SMTP servers accepted within the window.", ["window"])
        rate = _gauge(
            "digest_send_rate_per_second", "Messages accepted per second, averaged over the window.", ["window"]
        )
        for (label, span), n in zip(WINDOWS.items(), counts, strict=True):
            sent.add_metric([label], int(n or 0))
            rate.add_metric([label], int(n or 0) / span.total_seconds())
        yield sent
        yield rate

        editions = _gauge("digest_editions", "Editions built, by digest and status.", ["digest", "status"])
        last_built = _gauge(
            "digest_edition_last_built_timestamp_seconds",
            "When the newest edition of the digest was built.",
            ["digest"],
        )
        newest: dict[str, Any] = {}
        for digest, status, n, built in conn.execute(
            select(E.c.digest, E.c.status, func.count(), func.max(E.c.built_at)).group_by(E.c.digest, E.c.status)
        ):
            editions.add_metric([digest, status], int(n))
            if built is not None and (digest not in newest or built > newest[digest]):
                newest[digest] = built
        for digest, built in sorted(newest.items()):
            last_built.add_metric([digest], built.timestamp())
        yield editions
        yield last_built

        feeds = _gauge("digest_feeds", "Feeds by the result of their last poll.", ["status"])
        feed_counts = dict.fromkeys(FeedStatus, 0)
        failing = new_articles = 0
        for status, n, bad, new in conn.execute(
            select(
                F.c.status, func.count(), func.sum(case((F.c.failures > 0, 1), else_=0)), func.sum(F.c.last_new)
            ).group_by(F.c.status)
        ):
            feed_counts[status] = int(n)
            failing += int(bad or 0)
            new_articles += int(new or 0)
        for status, n in feed_counts.items():
            feeds.add_metric([str(status)], n)
        yield feeds
        yield GaugeMetricFamily("digest_feeds_failing", "Feeds whose recent polls failed (backing off).", value=failing)
        yield GaugeMetricFamily(
            "digest_feed_last_new_articles", "New articles found by the last poll of every feed, summed.",
            value=new_articles,
        )  # fmt: skip

        queued, oldest_event = queue_stats(conn, now)
        yield GaugeMetricFamily(
            "digest_webhook_events_queued", "Webhook events waiting for an enabled endpoint.", value=queued
        )
        yield GaugeMetricFamily(
            "digest_webhook_oldest_event_age_seconds", "Age of the oldest of them (0: none).", value=oldest_event
        )
        disabled = conn.execute(select(func.count()).select_from(W).where(W.c.disabled_at.is_not(None))).scalar_one()
        yield GaugeMetricFamily(
            "digest_webhooks_disabled", "Webhook endpoints disabled after failing too often.", value=disabled
        )


class BreakerCollector(Collector):
    """Each SMTP server's circuit breaker in this process: 1 while it pauses the server."""

    def collect(self) -> Iterator[Metric]:
        g = _gauge(
            "digest_smtp_breaker_open", "1 while the server's circuit breaker pauses sending to it (this process).",
            ["server"],
        )  # fmt: skip
        for server, is_open in sorted(breaker_states().items()):
            g.add_metric([server], 1 if is_open else 0)
        yield g


class _Process(Collector):
    """This process's own metrics (:data:`digest.core.metrics.PROCESS`), served beside the store's."""

    def collect(self) -> Iterator[Metric]:
        yield from PROCESS.collect()


def metrics_registry(engine: Engine, clock: Clock) -> CollectorRegistry:
    """What one ``/metrics`` shows: the store's gauges, the breakers and this process's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine, clock))
    registry.register(BreakerCollector())
    registry.register(_Process())
    return registry


def serve_metrics(engine: Engine, settings: Settings, clock: Clock, source: str | None = None) -> Any:
    """For ``digest serve``: ``/metrics`` on ``[metrics] bind``:``port`` (a thread), or None when no port is set.

    Returns the server (``shutdown()`` it at exit). A busy port is a ConfigError
    naming ``metrics.port``.
    """
    cfg = settings.metrics
    if cfg.port is None:
        return None
    try:
        server, _thread = start_http_server(cfg.port, addr=cfg.bind, registry=metrics_registry(engine, clock))
    except OSError as exc:
        raise ConfigError(
            "metrics.port", f"cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror or exc}", source
        ) from None
    return server
