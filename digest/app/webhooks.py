"""Webhooks out: endpoints (``digest webhooks``) and the sender that POSTs their events.

Each POST follows the Standard Webhooks spec (https://www.standardwebhooks.com/):
headers ``webhook-id`` (the event's id, the same on every retry: receivers dedupe
on it), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body``
with the endpoint's secret), so a receiver can use the spec's libraries as they
are. docs/webhooks.md shows how to verify and the replay window to apply.

A 2xx answer delivers the event; anything else (another status, a redirect, a
timeout, a refused connection) is a failure retried with exponential back-off.
Redirects are never followed: a redirect could send the signed payload to
another host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy.engine import Engine

from digest.core.clock import Clock
from digest.core.errors import InputError, NotFoundError
from digest.core.logs import event, mask_url
from digest.core.settings import Settings
from digest.store import webhooks as store
from digest.store.models import WebhookEventType

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
USER_AGENT = "digest-webhooks/0.1"


# ---------------------------------------------------------------- signing


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 24 random bytes (the Standard Webhooks form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one POST."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


# ---------------------------------------------------------------- endpoints


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else InputError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("URL", "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InputError("URL", "must not carry a user or password (the signature authenticates the POST)")
    return url


def parse_events(text: str) -> list[str]:
    """The event types of ``--events`` (comma-separated), each one of :class:`WebhookEventType`."""
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in WebhookEventType.ALL]
    if unknown or not wanted:
        known = ",".join(WebhookEventType.ALL)
        what = f"unknown event {unknown[0]!r}" if unknown else "no event given"
        raise InputError("--events", f"{what}; choose from {known}")
    return list(dict.fromkeys(wanted))


@dataclass(frozen=True)
class Added:
    id: int
    secret: str


def add_webhook(engine: Engine, clock: Clock, url: str, events: Sequence[str]) -> Added:
    """Store an endpoint for ``events`` with a new secret; the secret is returned (to show once)."""
    url = check_url(url)
    secret = new_secret()
    with engine.begin() as conn:
        hook_id = store.add_webhook(conn, url, events, secret, clock.now())
    event(log, "webhook.added", id=hook_id, url=mask_url(url), events=",".join(events))
    return Added(hook_id, secret)


def list_webhooks(engine: Engine) -> list[store.Health]:
    """Every endpoint with its health and queue."""
    with engine.connect() as conn:
        return store.health(conn)


def remove_webhook(engine: Engine, hook_id: int) -> None:
    """Delete an endpoint and its queued events; NotFoundError if there is none."""
    with engine.begin() as conn:
        if not store.remove_webhook(conn, hook_id):
            raise NotFoundError(f"no webhook with id {hook_id}")


def enable_webhook(engine: Engine, clock: Clock, hook_id: int) -> None:
    """Turn an endpoint back on (its failure count reset, its queued events due now); NotFoundError if none."""
    with engine.begin() as conn:
        if not store.enable_webhook(conn, hook_id, clock.now()):
            raise NotFoundError(f"no webhook with id {hook_id}")


# ---------------------------------------------------------------- sending


def backoff(settings: Settings, attempts: int) -> timedelta:
    """``retry_base * 2^(attempts-1)``, capped at ``retry_max``, times 0.5-1.0 (jitter spreads a burst)."""
    cfg = settings.webhooks
    base = cfg.retry_base.total_seconds() * (2 ** min(max(attempts - 1, 0), 30))
    return timedelta(seconds=min(base, cfg.retry_max.total_seconds()) * (0.5 + random.random() / 2))


@dataclass
class DeliverReport:
    """What one pass of :func:`deliver_due` did."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    disabled: list[int] = field(default_factory=list)


def _post(client: httpx.Client, ev: store.Claimed, timestamp: int) -> str | None:
    """POST one event; None when the endpoint took it (2xx), else why not."""
    body = ev.payload.encode()
    try:
        response = client.post(ev.url, content=body, headers=signed_headers(ev.secret, f"msg_{ev.id}", timestamp, body))
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:1000]
    if response.is_success:
        return None
    if response.is_redirect:
        return f"HTTP {response.status_code} redirect (not followed)"
    return f"HTTP {response.status_code}"


def deliver_due(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    worker: str,
    *,
    client: httpx.Client | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliverReport:
    """POST every due event, batch after batch, until none is due (or ``should_stop``).

    Events of one endpoint go in order; after a failure, the endpoint's other events
    of the pass are given back untried (they wait with the failed one).
    """
    cfg = settings.webhooks
    report = DeliverReport()
    own = client is None
    try:
        while not should_stop():
            claimed = store.claim_due(engine, worker, clock.now(), cfg.lease, cfg.batch)
            if not claimed:
                break
            if client is None:
                # Made only when there is something to send: a client costs a TLS context, and most passes are idle.
                client = httpx.Client(timeout=cfg.timeout, follow_redirects=False)
            failing: set[int] = set()
            skipped: list[int] = []
            for ev in claimed:
                if ev.webhook_id in failing or should_stop():
                    skipped.append(ev.id)
                    continue
                now = clock.now()
                error = _post(client, ev, int(now.timestamp()))
                if error is None:
                    store.delivered(engine, ev, now)
                    report.delivered += 1
                    continue
                failing.add(ev.webhook_id)
                report.failed += 1
                disabled, dropped = store.failed(
                    engine,
                    ev,
                    error,
                    now,
                    now + backoff(settings, ev.attempts + 1),
                    disable_after=cfg.disable_after,
                    max_attempts=cfg.max_attempts,
                )
                event(log, "webhook.failed", logging.WARNING, id=ev.webhook_id, event=ev.id, error=error)
                if dropped:
                    report.dropped += 1
                    event(
                        log, "webhook.event_dropped", logging.ERROR, id=ev.webhook_id, event=ev.id, type=ev.event_type
                    )
                if disabled:
                    report.disabled.append(ev.webhook_id)
                    event(
                        log,
                        "webhook.disabled",
                        logging.ERROR,
                        id=ev.webhook_id,
                        failures=cfg.disable_after,
                        error=error,
                    )
            # A failing endpoint's skipped events were pushed back with it: the next claim passes them by.
            store.release(engine, skipped)
    finally:
        if own and client is not None:
            client.close()
    return report
