"""The SMTP side of the delivery engine: servers, rate limits, circuit breakers, lanes.

- :class:`Server`: one configured SMTP server and its limits (per-server overrides
  come from the URL's query: ``?connections=8&rate=200&hourly=500000&max_per_connection=100``).
- :class:`RateLimiter`: messages per second and per hour to one server, shared by
  every connection (thread) of the process.
- :class:`CircuitBreaker`: after N consecutive connection-level failures a server
  is paused for a cool-down; then one message probes it.
- :class:`Dispatcher`: one thread per persistent connection ("lane"), all taking
  jobs from one queue. The threads spend their time waiting for the server, so a
  handful of them keep several connections busy inside one process; CPU-bound
  scaling is by processes (see ``digest.app.send``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from digest.core.errors import ConfigError, PermanentFailure, TemporaryFailure
from digest.core.metrics import SMTP_SEND_SECONDS
from digest.core.settings import Settings
from digest.transport.smtp import SMTPConfig, SMTPTransport, Transport, smtp_config

log = logging.getLogger(__name__)


TransportFactory = Callable[[SMTPConfig, int], Transport]
"""Builds one connection's transport: ``factory(config, max_per_connection)``."""


def smtp_transport(config: SMTPConfig, max_per_connection: int = 0) -> Transport:
    """The default transport factory: a persistent :class:`SMTPTransport`."""
    return SMTPTransport(config, max_messages=max_per_connection)


@dataclass(frozen=True)
class Server:
    """One SMTP server with its limits. ``name`` is ``host:port`` (never the password)."""

    name: str
    config: SMTPConfig | None  # None: a transport handed in ready-made (tests, ``--to``)
    connections: int
    rate_per_second: float = 0
    rate_per_hour: int = 0
    max_per_connection: int = 0


def parse_server(url: str, settings: Settings, key: str = "delivery.servers") -> Server:
    """A :class:`Server` from an SMTP URL; its query may override the [delivery] limits."""
    d = settings.delivery
    config = smtp_config(settings, url)
    q = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}

    def number(name: str, default: float, kind: type) -> Any:
        if name not in q:
            return default
        try:
            value = kind(q[name])
        except ValueError:
            raise ConfigError(key, f"?{name}= of {config.host}:{config.port} is not a number") from None
        if value < 0:
            raise ConfigError(key, f"?{name}= of {config.host}:{config.port} is negative")
        return value

    return Server(
        name=f"{config.host}:{config.port}",
        config=config,
        connections=max(1, number("connections", d.connections, int)),
        rate_per_second=number("rate", d.rate_per_second, float),
        rate_per_hour=number("hourly", d.rate_per_hour, int),
        max_per_connection=number("max_per_connection", d.max_per_connection, int),
    )


def configured_servers(settings: Settings) -> list[Server]:
    """The servers of ``[delivery] servers``, or ``smtp_url`` alone when that list is empty."""
    if settings.delivery.servers:
        return [parse_server(u.get_secret_value(), settings) for u in settings.delivery.servers]
    return [parse_server(settings.smtp_url.get_secret_value(), settings, "smtp_url")]


class RateLimiter:
    """Messages per second (evenly spaced) and per rolling hour (minute buckets), thread-safe.

    Spacing sends ``1/rate`` apart, rather than a token bucket, never lets a burst
    exceed the per-second rate, which is what providers' limits count.
    """

    def __init__(self, per_second: float = 0, per_hour: int = 0, now: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.per_hour = per_hour
        self._now = now
        self._next = 0.0
        self._minutes: deque[list[float]] = deque()  # [minute, count]
        self._hour_total = 0
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return not self.interval and not self.per_hour

    def reserve(self) -> float:
        """Reserve the next slot; return how many seconds to wait before using it."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._now()
            at = max(now, self._next)
            if self.per_hour:
                at = max(at, self._hour_slot(now))
                minute = at // 60
                if self._minutes and self._minutes[-1][0] == minute:
                    self._minutes[-1][1] += 1
                else:
                    self._minutes.append([minute, 1])
                self._hour_total += 1
            self._next = at + self.interval
            return at - now

    def _hour_slot(self, now: float) -> float:
        """The earliest time at which one more message keeps the rolling hour under the limit."""
        while self._minutes and self._minutes[0][0] <= now // 60 - 60:
            self._hour_total -= int(self._minutes.popleft()[1])
        if self._hour_total < self.per_hour:
            return now
        # Wait until enough old minutes have rolled out of the window.
        excess = self._hour_total - self.per_hour + 1
        for minute, count in self._minutes:
            excess -= int(count)
            if excess <= 0:
                return (minute + 61) * 60
        return now + 3600

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Block until a message may be sent; False if ``should_stop`` turned true meanwhile."""
        wait = self.reserve()
        deadline = self._now() + wait
        while wait > 0:
            if should_stop():
                return False
            time.sleep(min(wait, 0.25))
            wait = deadline - self._now()
        return True


class CircuitBreaker:
    """Pauses a server after ``failures`` consecutive connection-level failures.

    Open for ``cooldown`` seconds; then half-open: one message probes the server, and
    its outcome closes the breaker or opens it again.
    """

    def __init__(self, failures: int, cooldown: float, now: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._now = now
        self.consecutive = 0
        self.open_until = 0.0
        self._probing = False
        self.last_error = ""
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Paused and still cooling down (a half-open probe in progress does not count)."""
        return self.consecutive >= self.failures and self._now() < self.open_until

    def abandon(self) -> None:
        """A probe slot was taken but no message was sent: let the next caller probe."""
        with self._lock:
            self._probing = False

    def allow(self) -> bool:
        """May a message be sent now? (In half-open state only one caller gets True.)"""
        with self._lock:
            if self.consecutive < self.failures:
                return True
            if self._now() < self.open_until or self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self.consecutive = 0
            self._probing = False

    def failure(self, error: str) -> None:
        with self._lock:
            self.consecutive += 1
            self.last_error = error
            self._probing = False
            if self.consecutive >= self.failures:
                self.open_until = self._now() + self.cooldown
                if self.consecutive == self.failures:
                    log.warning("server paused for %.0fs after %d failures: %s", self.cooldown, self.consecutive, error)


@dataclass
class Job:
    """One message to one recipient, and (once done) its outcome."""

    delivery_id: int
    send: Callable[[Transport], str]  # fills, signs and hands over the message
    done: Callable[[Job], None]
    tried: set[str] = field(default_factory=set)
    outcome: str = ""  # "sent", "temporary", "permanent", "released"
    answer: str = ""
    error: TemporaryFailure | PermanentFailure | None = None


@dataclass
class ServerState:
    server: Server
    limiter: RateLimiter
    breaker: CircuitBreaker


# Limits and breakers live as long as the process, not one send: a service that
# drains the outbox every few seconds must not forget that a server is down (and
# burn three more deliveries' attempts), nor restart its per-hour count.
_STATES: dict[tuple[str, float, int, int, float], ServerState] = {}
_STATES_LOCK = threading.Lock()


def server_state(server: Server, settings: Settings, rate_share: float = 1.0) -> ServerState:
    """The process-wide rate limiter and circuit breaker of ``server``."""
    d = settings.delivery
    per_second, per_hour = server.rate_per_second * rate_share, int(server.rate_per_hour * rate_share)
    key = (server.name, per_second, per_hour, d.breaker_failures, d.breaker_cooldown.total_seconds())
    with _STATES_LOCK:
        if key not in _STATES:
            _STATES[key] = ServerState(
                server,
                RateLimiter(per_second, per_hour),
                CircuitBreaker(d.breaker_failures, d.breaker_cooldown.total_seconds()),
            )
        return _STATES[key]


def breaker_states() -> dict[str, bool]:
    """Each server's circuit breaker in this process: True while it pauses the server (for metrics)."""
    with _STATES_LOCK:
        states = list(_STATES.values())
    found: dict[str, bool] = {}
    for st in states:
        found[st.server.name] = found.get(st.server.name, False) or st.breaker.is_open
    return found


class Dispatcher:
    """Lanes (one thread per persistent connection) taking jobs from one queue.

    ``on_sent(job)`` runs in the lane right after the server accepted the message and
    before the lane takes its next job: the journal write that makes a kill -9 cost
    at most one duplicate per open connection.
    """

    def __init__(
        self,
        lanes: list[tuple[Server, Transport]],
        settings: Settings,
        *,
        rate_share: float = 1.0,
        on_sent: Callable[[Job], None] = lambda job: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.states: dict[str, ServerState] = {s.name: server_state(s, settings, rate_share) for s, _ in lanes}
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.on_sent = on_sent
        self.should_stop = should_stop
        self._closing = False
        self._halted = threading.Event()
        self.transports = [t for _, t in lanes]
        self.in_flight = 0
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._lane, args=(self.states[s.name], t), name=f"smtp-{s.name}-{i}", daemon=True)
            for i, (s, t) in enumerate(lanes)
        ]
        for th in self.threads:
            th.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def all_paused(self) -> bool:
        """True when every server's breaker is open: nothing can be sent for now."""
        return all(st.breaker.is_open for st in self.states.values())

    def pause_reason(self) -> str:
        return "; ".join(f"{n}: {st.breaker.last_error}" for n, st in self.states.items() if st.breaker.last_error)

    def halt(self) -> None:
        """No lane starts another message; jobs not begun are released (the journal failed)."""
        self._halted.set()

    def release_pending(self) -> list[Job]:
        """Take every job no lane has started; they go back to the outbox untouched."""
        taken: list[Job] = []
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return taken
            if job is not None:
                taken.append(job)

    def close(self) -> None:
        """Stop the lanes after their current message; say QUIT on every connection."""
        self._closing = True
        for _ in self.threads:
            self.jobs.put(None)
        for th in self.threads:
            th.join()
        for t in self.transports:
            try:
                t.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                log.exception("closing a transport failed")

    # ------------------------------------------------------------ lanes

    def _others_open(self, job: Job) -> bool:
        return any(name not in job.tried and not st.breaker.is_open for name, st in self.states.items())

    def _lane(self, state: ServerState, transport: Transport) -> None:
        while True:
            if not self._closing and state.breaker.is_open:
                time.sleep(0.05)  # the server rests; the other servers' lanes take the jobs
                continue
            job = self.jobs.get()
            if job is None:
                return
            if not self._closing and not state.breaker.allow():
                # Paused meanwhile, or another lane is probing it: leave the job to others.
                self.jobs.put(job)
                time.sleep(0.05)
                continue
            with self._lock:
                self.in_flight += 1
            try:
                self._run(state, transport, job)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _run(self, state: ServerState, transport: Transport, job: Job) -> None:
        name = state.server.name
        halted = self._halted.is_set
        # Halted is checked after the rate-limit wait too: an unlimited limiter never calls should_stop.
        if self._closing or not state.limiter.acquire(lambda: self.should_stop() or halted()) or halted():
            state.breaker.abandon()
            job.outcome = "released"
            job.done(job)
            return
        started = time.monotonic()
        try:
            job.answer = job.send(transport)
        except TemporaryFailure as exc:
            SMTP_SEND_SECONDS.labels(name, "temporary").observe(time.monotonic() - started)
            if exc.connection_level:
                state.breaker.failure(str(exc))
            else:
                state.breaker.success()
            job.tried.add(name)
            if exc.connection_level and not exc.maybe_delivered and self._others_open(job):
                self.jobs.put(job)  # nothing was handed over: another server may take it now
                return
            job.outcome, job.error = "temporary", exc
        except PermanentFailure as exc:
            SMTP_SEND_SECONDS.labels(name, "permanent").observe(time.monotonic() - started)
            state.breaker.success()
            job.outcome, job.error = "permanent", exc
        except Exception as exc:  # noqa: BLE001 - a bug in one message must not stop the lane
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            state.breaker.abandon()
            job.outcome, job.error = "temporary", TemporaryFailure(f"internal error: {type(exc).__name__}: {exc}", 0)
        else:
            SMTP_SEND_SECONDS.labels(name, "sent").observe(time.monotonic() - started)
            state.breaker.success()
            job.outcome = "sent"
            self.on_sent(job)
        job.done(job)
