"""The SMTP side of the delivery engine: servers, rate limits, circuit breakers, lanes.

- :class:`Server`: one configured SMTP server and its limits (per-server overrides
  come from the URL's query: ``?connections=8&rate=200&hourly=500000&max_per_connection=100``).
- :class:`RateLimiter`: messages per second and per hour to one server, shared by
  every connection (thread) of the process.
- :class:`CircuitBreaker`: after N consecutive connection-level failures a server
  is paused for a cool-down; then one message probes it.
- :class:`Window`: how many of a server's connections may be used now (AIMD:
  halved when the server turns connections away or throttles, grown back by one a
  second while messages go through), and the pause after a throttling reply.
- :class:`Dispatcher`: one event-loop thread per process running every connection
  ("lane") as a coroutine (:class:`digest.transport.aio.AsyncSMTP`), all taking jobs
  from one queue. Latency is hidden by many connections and one round trip a
  message, not by threads; CPU-bound scaling is by processes
  (:mod:`digest.outbox.processes`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from digest.core.errors import ConfigError, PermanentFailure, TemporaryFailure
from digest.core.metrics import SMTP_SEND_SECONDS
from digest.core.settings import Settings
from digest.transport.aio import AsyncSMTP, ConnectFailure
from digest.transport.providers import OTHER, ProviderShaper, provider_of_mx
from digest.transport.replies import classify_reply
from digest.transport.smtp import SMTPConfig, Transport, smtp_config

log = logging.getLogger(__name__)


TransportFactory = Callable[[SMTPConfig, int], Transport]
"""Builds one connection's (blocking) transport: ``factory(config, max_per_connection)``.

Without one, the pool's connections are the engine's own :class:`AsyncSMTP`."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The SMTP lanes' event loop: uvloop's where it is installed, else asyncio's own.

    uvloop (libuv, in C) runs the same streams and timeouts with a fraction of the
    loop's own CPU a message, where sending is CPU-bound (docs/performance.md).
    """
    try:
        import uvloop
    except ImportError:  # not on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass(frozen=True)
class Server:
    """One SMTP server with its limits. ``name`` is ``host:port`` (never the password)."""

    name: str
    config: SMTPConfig | None  # None: a transport handed in ready-made (tests, ``--to``)
    connections: int  # for the whole run: divided among its processes (:func:`per_process`)
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

    # A server that is a mailbox provider's own MX (sending directly): that provider's
    # messages-per-connection limit is the server's, unless its URL says otherwise.
    direct = provider_of_mx([config.host])
    per_connection = d.max_per_connection
    if direct != OTHER and d.providers[direct].max_per_connection:
        per_connection = d.providers[direct].max_per_connection
    return Server(
        name=f"{config.host}:{config.port}",
        config=config,
        connections=max(1, number("connections", d.connections, int)),
        rate_per_second=number("rate", d.rate_per_second, float),
        rate_per_hour=number("hourly", d.rate_per_hour, int),
        max_per_connection=number("max_per_connection", per_connection, int),
    )


def per_process(connections: int, processes: int) -> int:
    """One process's share of a server's connections (at least one)."""
    return max(1, math.ceil(connections / max(1, processes)))


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


class Window:
    """How many of one server's connections may carry messages now (AIMD), and its throttling pause.

    Halved (never below one) when the server turns a connection away while others
    are open (a 421 greeting or a refused connect: "too many connections") or
    throttles; grown back by one connection at most once a second, after
    ``GROW_AFTER`` messages went through since the last change. A throttling reply
    also rests the server for ``throttle_pause`` seconds.
    """

    GROW_AFTER = 10

    def __init__(self, throttle_pause: float, now: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = 1
        self.limit = 0.0  # 0: not set yet (the first Dispatcher sets it to its lanes)
        self.throttle_pause = throttle_pause
        self.paused_until = 0.0
        self._now = now
        self._changed = 0.0
        self._last_cut = -1e9
        self._successes = 0
        self.last_reason = ""
        self._lock = threading.Lock()

    def fit(self, lanes: int) -> None:
        """A dispatcher with ``lanes`` connections to this server: the most the window allows."""
        with self._lock:
            self.ceiling = lanes
            self.limit = float(lanes) if not self.limit else min(self.limit, lanes)

    @property
    def paused(self) -> bool:
        return self._now() < self.paused_until

    def allows(self, index: int) -> bool:
        """May the connection ``index`` (0-based) carry a message now?"""
        return index < max(1, int(self.limit)) and not self.paused

    def shrink(self, reason: str) -> None:
        with self._lock:
            now = self._now()
            if now - self._last_cut < 1.0:
                return  # the connections refused together count as one signal
            before = int(self.limit)
            self.limit = max(1.0, math.floor(self.limit / 2))
            self._changed = self._last_cut = now
            self._successes, self.last_reason = 0, reason
        if int(self.limit) != before:
            log.warning("server turned connections away: %d -> %d connections (%s)", before, self.limit, reason)

    def throttle(self, reason: str) -> None:
        self.shrink(reason)
        with self._lock:
            self.paused_until = self._now() + self.throttle_pause
        log.warning(
            "server throttles: resting %.0fs, then %d connections (%s)", self.throttle_pause, self.limit, reason
        )

    def success(self) -> None:
        if self.limit >= self.ceiling:
            return
        with self._lock:
            self._successes += 1
            now = self._now()
            if self._successes >= self.GROW_AFTER and now - self._changed >= 1.0:
                self.limit = min(float(self.ceiling), self.limit + 1)
                self._changed, self._successes = now, 0


@dataclass
class Job:
    """One message to one recipient, and (once done) its outcome.

    ``prepare()`` fills (and signs) the message; ``accepted(job)`` runs right after the
    server's 250 and before that connection sends its next message's data (the
    journal); ``done(job)`` once the outcome is known.
    """

    delivery_id: int
    envelope_from: str
    recipient: str
    prepare: Callable[[], bytes]
    done: Callable[[Job], None]
    accepted: Callable[[Job], None] = lambda job: None
    tried: set[str] = field(default_factory=set)
    # "sent", "temporary", "permanent", "released"; "deferred": its provider rests, back to
    # the outbox for ``retry_in`` s without counting an attempt; "policy": the provider
    # refused our mail for policy, not the address (temporary, no bounce; ``retry_in``: its pause).
    outcome: str = ""
    answer: str = ""
    error: TemporaryFailure | PermanentFailure | None = None
    provider: str = OTHER  # the recipient's mailbox provider (digest.transport.providers)
    retry_in: float = 0.0
    slot: bool = False  # holds one of its provider's in-flight slots
    # prepare() makes messages with no line starting with a dot: nothing to dot-stuff.
    no_leading_dots: bool = False


@dataclass
class ServerState:
    server: Server
    limiter: RateLimiter
    breaker: CircuitBreaker
    window: Window
    # The latency histogram of this server's accepted messages, looked up once, not a message.
    sent_seconds: Any = field(init=False)

    def __post_init__(self) -> None:
        self.sent_seconds = SMTP_SEND_SECONDS.labels(self.server.name, "sent")


# Limits, breakers and windows live as long as the process, not one send: a service
# that drains the outbox every few seconds must not forget that a server is down (and
# burn three more deliveries' attempts), nor restart its per-hour count.
_STATES: dict[tuple[str, float, int, int, float], ServerState] = {}
_STATES_LOCK = threading.Lock()


def server_state(server: Server, settings: Settings, rate_share: float = 1.0) -> ServerState:
    """The process-wide rate limiter, circuit breaker and window of ``server``."""
    d = settings.delivery
    per_second, per_hour = server.rate_per_second * rate_share, int(server.rate_per_hour * rate_share)
    key = (server.name, per_second, per_hour, d.breaker_failures, d.breaker_cooldown.total_seconds())
    with _STATES_LOCK:
        if key not in _STATES:
            _STATES[key] = ServerState(
                server,
                RateLimiter(per_second, per_hour),
                CircuitBreaker(d.breaker_failures, d.breaker_cooldown.total_seconds()),
                Window(d.throttle_pause.total_seconds()),
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


# Like the servers' states: a provider paused by a drain stays paused for the next one.
_SHAPERS: dict[str, ProviderShaper] = {}


def provider_shaper(settings: Settings) -> ProviderShaper:
    """The process-wide :class:`ProviderShaper` of the configured provider limits."""
    limits = settings.delivery.providers
    key = repr(sorted((name, lim.model_dump()) for name, lim in limits.items()))
    with _STATES_LOCK:
        if key not in _SHAPERS:
            _SHAPERS[key] = ProviderShaper(limits)
        return _SHAPERS[key]


Lane = tuple[Server, "Transport | AsyncSMTP"]
"""One connection: an :class:`AsyncSMTP` (the engine's own) or any blocking :class:`Transport`."""


class Dispatcher:
    """Lanes (one coroutine per persistent connection, one event-loop thread) taking jobs from one queue.

    A blocking :class:`Transport` (``MemoryTransport``, a test's own) runs in a
    worker thread of its own, driven by the same loop: there is one dispatcher
    whatever the transport. ``job.accepted`` (the journal) and ``on_sent(job)`` run
    right after the server accepted a message and before that connection sends the
    data of its next one: what makes a kill -9 cost at most one duplicate per open
    connection.
    """

    def __init__(
        self,
        lanes: list[Lane],
        settings: Settings,
        *,
        rate_share: float = 1.0,
        on_sent: Callable[[Job], None] = lambda job: None,
        should_stop: Callable[[], bool] = lambda: False,
        shaper: ProviderShaper | None = None,
    ) -> None:
        self.states: dict[str, ServerState] = {s.name: server_state(s, settings, rate_share) for s, _ in lanes}
        self.shaper = shaper or provider_shaper(settings)
        # Jobs waiting for their provider, off the queue so other providers' jobs go first:
        # until a time (its rate, the end of a short pause), or until one of its messages
        # in flight finishes (its cap; also woken every second, in case a slot was freed elsewhere).
        self._parked: dict[int, tuple[Job, asyncio.TimerHandle]] = {}
        self._waiting: dict[str, deque[Job]] = {}
        self._wake_timers: dict[str, asyncio.TimerHandle] = {}
        for name, state in self.states.items():
            state.window.fit(sum(1 for s, _ in lanes if s.name == name))
        self.on_sent = on_sent
        self.should_stop = should_stop
        self._closing = False
        self._halted = threading.Event()
        self.transports = [t for _, t in lanes]
        self._lanes = lanes
        self.in_flight = 0
        blocking = sum(1 for _, t in lanes if not isinstance(t, AsyncSMTP))
        self._executor = ThreadPoolExecutor(max_workers=blocking, thread_name_prefix="smtp") if blocking else None
        # The loop thread releases the GIL at every socket call and must get it back at
        # once: with the default 5 ms switch interval a busy main thread (claiming,
        # building jobs, recording) held every connection up to 5 ms a write (measured:
        # send 159 -> 278 msg/s on one process). The sender processes are ours to tune.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._loop = new_event_loop()
        self._queue: asyncio.Queue[Job] | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)
        self._thread.name = "smtp-loop"
        self._thread.start()
        self._started.wait()

    # ------------------------------------------------------------ the Sender's side (any thread)

    def submit_all(self, jobs: Sequence[Job]) -> None:
        """Hand ``jobs`` to the lanes, in order, with one wake-up of the loop.

        One wake-up a batch, not a message: each costs a write to the loop's self-pipe
        and a turn of the loop.
        """
        assert self._queue is not None
        queue = self._queue
        for job in jobs:
            job.done = self._freeing(job.done)

        def put_all() -> None:
            for job in jobs:
                queue.put_nowait(job)

        self._loop.call_soon_threadsafe(put_all)

    def _freeing(self, done: Callable[[Job], None]) -> Callable[[Job], None]:
        def finish(j: Job) -> None:
            self._free(j)  # whatever the outcome, its provider's slot is free again
            done(j)

        return finish

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
        if not self._thread.is_alive():
            return []
        return asyncio.run_coroutine_threadsafe(self._take_all(), self._loop).result()

    def close(self) -> None:
        """Stop the lanes after their current message; say QUIT on every connection."""
        self._closing = True
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._loop.close()
        if self._executor is not None:
            for t in self.transports:
                if not isinstance(t, AsyncSMTP):
                    try:
                        t.close()
                    except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                        log.exception("closing a transport failed")
            self._executor.shutdown()

    # ------------------------------------------------------------ the loop

    async def _main(self) -> None:
        self._queue = asyncio.Queue()
        self._stop = asyncio.Event()
        index: dict[str, int] = {}
        tasks = []
        for server, transport in self._lanes:
            state = self.states[server.name]
            i = index[server.name] = index.get(server.name, -1) + 1
            tasks.append(asyncio.ensure_future(self._lane(state, i, transport)))
        self._started.set()
        await self._stop.wait()
        for job in self._unpark_all():
            self._release(job)
        # Wake the lanes waiting for work: they see _closing and leave.
        for _ in tasks:
            self._queue.put_nowait(None)  # type: ignore[arg-type]
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in self.transports:
            if isinstance(t, AsyncSMTP):
                await t.close()

    async def _take_all(self) -> list[Job]:
        assert self._queue is not None
        taken: list[Job] = self._unpark_all()
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                taken.append(job)
        return taken

    def _stopping(self) -> bool:
        return self._closing or self._halted.is_set()

    def _requeue(self, job: Job) -> None:
        assert self._queue is not None
        self._free(job)
        if self._stopping():
            self._release(job)
        else:
            self._queue.put_nowait(job)

    @staticmethod
    def _release(job: Job) -> None:
        job.outcome = "released"
        job.done(job)

    # ------------------------------------------------------------ mailbox providers

    def _free(self, job: Job) -> None:
        if job.slot:
            job.slot = False
            self.shaper.finished(job.provider)
            if threading.current_thread() is self._thread:
                self._wake_one(job.provider)

    def _provider_admits(self, job: Job) -> bool:
        """Take a slot of the job's provider; else park the job (its cap, its rate) or send it back (a pause)."""
        admission = self.shaper.admit(job.provider)
        if admission.kind == "go":
            job.slot = True
            return True
        if admission.kind == "full":
            self._waiting.setdefault(job.provider, deque()).append(job)
            if job.provider not in self._wake_timers:
                self._wake_timers[job.provider] = self._loop.call_later(1.0, self._wake_all, job.provider)
        elif admission.kind == "wait":
            handle = self._loop.call_later(max(admission.seconds, 0.01), self._unpark, id(job))
            self._parked[id(job)] = (job, handle)
        else:
            job.outcome, job.retry_in = "deferred", admission.seconds
            job.error = TemporaryFailure(f"{job.provider} paused: {admission.reason}"[:1000])
            job.done(job)
        return False

    def _wake_one(self, provider: str) -> None:
        waiting = self._waiting.get(provider)
        if waiting:
            self._requeue(waiting.popleft())

    def _wake_all(self, provider: str) -> None:
        self._wake_timers.pop(provider, None)
        for job in self._waiting.pop(provider, ()):
            self._requeue(job)

    def _unpark(self, key: int) -> None:
        parked = self._parked.pop(key, None)
        if parked is not None:
            self._requeue(parked[0])

    def _unpark_all(self) -> list[Job]:
        jobs = []
        for job, handle in self._parked.values():
            handle.cancel()
            jobs.append(job)
        self._parked.clear()
        for handle in self._wake_timers.values():
            handle.cancel()
        self._wake_timers.clear()
        for waiting in self._waiting.values():
            jobs.extend(waiting)
        self._waiting.clear()
        return jobs

    def _provider_reply(self, state: ServerState, job: Job, exc: TemporaryFailure | PermanentFailure) -> bool:
        """Handle a reply that concerns the recipient's provider, not the recipient or the server.

        A throttling deferral rests that provider (its other messages wait, the other
        providers go on) and sends this message back without counting an attempt; a
        policy rejection rests it too and makes the failure temporary with no bounce.
        """
        if exc.code is None or (getattr(exc, "connection_level", False) and exc.code != 421):
            return False  # the server's own trouble (greeting, login, dropped line): not the provider's
        reply = str(exc)
        text = reply[4:] if reply[:3] == str(exc.code) else reply
        verdict = classify_reply(job.provider, exc.code, text)
        if verdict.action == "normal":
            return False
        state.breaker.success()  # the server answered: it is the provider that objects
        job.retry_in = self.shaper.react(job.provider, verdict, reply)
        job.outcome = "deferred" if verdict.action == "throttle" else "policy"
        job.error = exc if isinstance(exc, TemporaryFailure) else TemporaryFailure(reply, exc.code)
        job.done(job)
        return True

    def _others_open(self, job: Job) -> bool:
        return any(name not in job.tried and not st.breaker.is_open for name, st in self.states.items())

    def _live(self, name: str) -> int:
        return sum(1 for s, t in self._lanes if s.name == name and isinstance(t, AsyncSMTP) and t.is_open)

    async def _lane(self, state: ServerState, index: int, transport: Transport | AsyncSMTP) -> None:
        assert self._queue is not None
        held: Job | None = None  # the next job, its envelope already sent behind the last dot
        try:
            while True:
                if not self._closing and (state.breaker.is_open or not state.window.allows(index)):
                    # The server rests or wants fewer connections: the others take the jobs.
                    if isinstance(transport, AsyncSMTP) and transport.is_open and held is None:
                        await transport.close()
                    if held is not None:
                        self._requeue(held)
                        held = None
                        if isinstance(transport, AsyncSMTP):
                            transport.drop()
                    await asyncio.sleep(0.05)
                    continue
                job = held
                held = None
                if job is None:
                    job = await self._queue.get()
                    if job is None:
                        return
                if self._stopping():
                    if isinstance(transport, AsyncSMTP) and transport.ahead is not None:
                        transport.drop()
                    self._release(job)
                    continue
                if not job.slot and not self._provider_admits(job):
                    continue  # parked until its provider has room, or back to the outbox: take the next
                if not state.breaker.allow():
                    # Paused meanwhile, or another lane is probing it: leave the job to others.
                    self._free(job)
                    self._queue.put_nowait(job)
                    await asyncio.sleep(0.05)
                    continue
                self.in_flight += 1
                try:
                    held = await self._run(state, transport, job)
                finally:
                    self.in_flight -= 1
        finally:
            if held is not None:
                self._release(held)

    async def _admit(self, state: ServerState) -> bool:
        """Wait for the rate limiter's slot; False when sending stopped meanwhile."""
        wait = state.limiter.reserve()
        if wait <= 0:
            return not self._stopping()
        deadline = time.monotonic() + wait
        while wait > 0:
            if self.should_stop() or self._stopping():
                return False
            await asyncio.sleep(min(wait, 0.25))
            wait = deadline - time.monotonic()
        return not self._stopping()

    def _next_for(self, state: ServerState, job: Job, transport: AsyncSMTP) -> Job | None:
        """A queued job whose envelope may go out behind ``job``'s dot, if one is waiting."""
        assert self._queue is not None
        if (
            self._queue.empty()
            or not transport.can_pipeline_next()
            or not state.limiter.unlimited
            or state.breaker.consecutive
        ):
            return None
        nxt = self._queue.get_nowait()
        if nxt is None or state.server.name in nxt.tried or self.shaper.admit(nxt.provider).kind != "go":
            self._queue.put_nowait(nxt)
            return None
        nxt.slot = True
        return nxt

    async def _run(self, state: ServerState, transport: Transport | AsyncSMTP, job: Job) -> Job | None:
        """Send ``job``; return the job whose envelope went out behind it (this lane sends it next)."""
        if not await self._admit(state):
            state.breaker.abandon()
            self._release(job)
            return None
        then: Job | None = None
        name, started = state.server.name, time.monotonic()
        try:
            if isinstance(transport, AsyncSMTP):
                then = self._next_for(state, job, transport)
                # Filling and signing run here, in the loop: measured, an executor costs more
                # in hand-offs than it saves (the work is under the GIL either way).
                data = job.prepare()
                job.answer = await transport.send(
                    job.envelope_from,
                    job.recipient,
                    data,
                    (then.envelope_from, then.recipient) if then else None,
                    no_leading_dots=job.no_leading_dots,
                )
            else:
                assert self._executor is not None
                job.answer = await self._loop.run_in_executor(self._executor, _send_blocking, transport, job)
        except TemporaryFailure as exc:
            SMTP_SEND_SECONDS.labels(name, "temporary").observe(time.monotonic() - started)
            if not self._provider_reply(state, job, exc):
                self._temporary(state, transport, job, exc)
        except PermanentFailure as exc:
            SMTP_SEND_SECONDS.labels(name, "permanent").observe(time.monotonic() - started)
            if not self._provider_reply(state, job, exc):
                state.breaker.success()
                job.outcome, job.error = "permanent", exc
                job.done(job)
        except Exception as exc:  # noqa: BLE001 - a bug in one message must not stop the lane
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            state.breaker.abandon()
            job.outcome, job.error = "temporary", TemporaryFailure(f"internal error: {type(exc).__name__}: {exc}", 0)
            job.done(job)
        else:
            state.sent_seconds.observe(time.monotonic() - started)
            state.breaker.success()
            state.window.success()
            job.outcome = "sent"
            # The server said 250: from here on the message is sent, whatever fails next.
            job.accepted(job)
            self.on_sent(job)
            job.done(job)
        if then is None:
            return None
        if isinstance(transport, AsyncSMTP) and transport.ahead == (then.envelope_from, then.recipient):
            return then
        self._requeue(then)  # its envelope never left (or the connection is gone): any lane may take it
        return None

    def _temporary(self, state: ServerState, transport: Transport | AsyncSMTP, job: Job, exc: TemporaryFailure) -> None:
        name = state.server.name
        if exc.throttled:
            # The relay asks us to slow down: not the recipient's fault, not an outage.
            # The message waits (no attempt counted) and the server rests.
            state.breaker.abandon()
            state.window.throttle(str(exc))
            self._requeue(job)
            return
        if isinstance(exc, ConnectFailure) and exc.refused and self._live(name) > 0:
            # Turned away while other connections to it are open: too many connections.
            state.breaker.abandon()
            state.window.shrink(str(exc))
            self._requeue(job)
            return
        # A 421 greeting with none of ours open (with some open, the branch above took it): the
        # server may still count the connections we just closed. It spoke and took
        # nothing, so this job goes back once, even to this server, as "too many
        # connections", not an outage; a second refusal of the same job counts as one.
        turned_away = isinstance(exc, ConnectFailure) and exc.code == 421 and name not in job.tried
        if turned_away:
            state.breaker.abandon()
            state.window.shrink(str(exc))
        elif exc.connection_level:
            state.breaker.failure(str(exc))
        else:
            state.breaker.success()
        job.tried.add(name)
        if exc.connection_level and not exc.maybe_delivered and (turned_away or self._others_open(job)):
            self._requeue(job)  # nothing was handed over: another server (or this one, once) may take it now
            return
        job.outcome, job.error = "temporary", exc
        job.done(job)


def _send_blocking(transport: Transport, job: Job) -> str:
    return transport.send(job.envelope_from, job.recipient, job.prepare())
