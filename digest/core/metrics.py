"""The metrics a process measures itself (Prometheus), as opposed to those read from the store.

They live in one registry per process, :data:`PROCESS`, like the loggers do: the
SMTP lanes and the web middleware record into it wherever they run, and every
``/metrics`` of that process (the web app's, the ``[metrics] port`` of ``digest
serve``) exposes it next to the store's gauges (:mod:`digest.app.metrics`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PROCESS = CollectorRegistry(auto_describe=True)

SMTP_SEND_SECONDS = Histogram(
    "digest_smtp_send_seconds",
    "Time to hand one message to an SMTP server (MAIL FROM to the answer after DATA), by server and outcome.",
    ["server", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=PROCESS,
)

WEB_REQUESTS = Counter(
    "digest_web_requests",
    "HTTP requests answered by the web app, by route template, method and status code.",
    ["route", "method", "status"],
    registry=PROCESS,
)

WEB_REQUEST_SECONDS = Histogram(
    "digest_web_request_seconds",
    "Time to answer an HTTP request of the web app, by route template.",
    ["route"],
    registry=PROCESS,
)
