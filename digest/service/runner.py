"""The service (``digest serve``): APScheduler jobs wired to the planner, feeds and outbox.

Jobs are derived from the settings at start, with fixed ids, in a MemoryJobStore
that belongs to this process alone (APScheduler's FAQ: a shared job store gives
duplicate or missed runs). Nothing about what already ran lives in the scheduler:
the store is the source of truth, and every job asks it.

=================  ======================  =============================================
job id             trigger                 what it does
=================  ======================  =============================================
``leader``         every leader_interval   take or keep the scheduler role; heartbeat
``digest:NAME``    the digest's cron, in   (leader) build and queue the edition that is
                   its own timezone        due now
``slots``          every tick              (leader) local-time slots, catch-up after
                                           downtime, editions a dead leader left half done
``feeds``          every tick              (leader) poll the feeds that are due
``alerts``         every alerts_interval   (leader) queue breaking alerts (digest.app.alerts)
``outbox``         every outbox_interval   (every process) send queued deliveries
``webhooks``       every [webhooks]        (every process) POST the webhook events due
                   interval                (claimed with a lease: each goes out once)
=================  ======================  =============================================

Stopping: the first SIGTERM or SIGINT stops the scheduler from starting jobs and
asks running ones to stop between messages; the SMTP transaction in flight may
finish within ``shutdown_timeout``; then this process's claims are released, the
scheduler role is given up and the process exits 0. A second signal exits at once
(every write is a transaction, so the store stays consistent; claims left behind
expire with their lease).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col

from digest.app.alerts import queue_alerts
from digest.app.jobs import JobSpec, job_specs
from digest.app.metrics import serve_metrics
from digest.app.planner import run_due
from digest.app.webhooks import deliver_due as deliver_webhooks
from digest.compose.dkim import Signer, signer_from_settings
from digest.core.clock import Clock, SystemClock
from digest.core.errors import JournalError
from digest.core.logs import event
from digest.core.settings import Settings, setting_source
from digest.ingest.feeds import poll_due
from digest.outbox.drain import drain_outbox
from digest.outbox.journal import worker_id
from digest.outbox.ledger import release_worker
from digest.service.leader import Leadership, make_leader
from digest.store.db import session_scope
from digest.store.models import ServiceNode
from digest.transport.pool import TransportFactory

log = logging.getLogger(__name__)

# A process not seen for this long is forgotten by ``digest status``.
STALE_NODE = timedelta(hours=1)


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        pass


class Service:
    """One ``digest serve`` process."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Clock | None = None,
        transport_factory: TransportFactory | None = None,
        leader: Leadership | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.settings = settings
        # DKIM: the key is read once at start; a bad key file stops the service here.
        self.signer = signer if signer is not None else signer_from_settings(settings, clock)
        self.engine = engine
        self.clock = clock or SystemClock()
        self.transport_factory = transport_factory
        self.leader = leader or make_leader(engine, settings.service.leader_lock_id)
        self.worker = worker_id()
        self.stopping = threading.Event()
        self.started_at = self.clock.now()
        self._busy: dict[str, int] = {}
        self._journal_problem = ""
        # The digest's cron job and the slots job may both look at a digest at once.
        self._digest_locks = {name: threading.Lock() for name in settings.digests}
        self._idle = threading.Condition()
        self.specs = job_specs(settings)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(settings.service.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone=UTC,
        )

    # ------------------------------------------------------------ jobs

    def _run(self, job_id: str, leader_only: bool, fn: Callable[[], None]) -> None:
        if self.stopping.is_set() or (leader_only and not self.leader.holding):
            return
        with self._idle:
            self._busy[job_id] = self._busy.get(job_id, 0) + 1
        try:
            fn()
        except Exception:
            # A job that fails must not take the scheduler down; it runs again next time.
            log.exception("job %s failed", job_id)
        finally:
            with self._idle:
                self._busy[job_id] -= 1
                if not self._busy[job_id]:
                    del self._busy[job_id]
                self._idle.notify_all()

    def wake(self, job_id: str) -> None:
        """Run a job now instead of at its next time."""
        if self.stopping.is_set():
            return
        # The scheduler may be shutting down, or the job gone: then there is nothing to wake.
        with contextlib.suppress(Exception):
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    def check_leader(self) -> None:
        was = self.leader.holding
        now_leader = self.leader.try_acquire()
        if now_leader and not was:
            event(log, "leader.acquired", worker=self.worker, lock=self.leader.describe())
            # Catch up at once: whatever a dead leader left is due now.
            self.wake("slots")
            self.wake("feeds")
        elif was and not now_leader:
            event(log, "leader.lost", logging.WARNING, worker=self.worker)
        self._heartbeat(now_leader)

    def _heartbeat(self, leading: bool) -> None:
        host, _, pid = self.worker.rpartition(":")
        now = self.clock.now()
        with session_scope(self.engine) as session:
            if leading:
                # Processes that died without saying goodbye (kill -9, a lost machine).
                session.execute(delete(ServiceNode).where(col(ServiceNode.seen_at) < now - STALE_NODE))
            session.merge(
                ServiceNode(
                    worker=self.worker,
                    hostname=host,
                    pid=int(pid) if pid.isdigit() else 0,
                    leader=leading,
                    started_at=self.started_at,
                    seen_at=now,
                )
            )

    def run_digest(self, name: str) -> None:
        with self._digest_locks[name]:
            outcomes = run_due(self.engine, self.settings, name, self.clock)
        if any(o.queued for o in outcomes):
            self.wake("outbox")

    def run_slots(self) -> None:
        for name in self.settings.digests:
            if self.stopping.is_set():
                return
            self.run_digest(name)

    def run_alerts(self) -> None:
        """Queue the breaking alerts due now; every process's outbox job sends them."""
        run = queue_alerts(self.engine, self.settings, self.clock.now())
        if run.queued:
            self.wake("outbox")

    def poll_feeds(self) -> None:
        poll_due(self.engine, self.settings.service, self.clock, should_stop=self.stopping.is_set)

    def send(self) -> None:
        """Drain the outbox through the configured pool, exactly as ``digest send`` does."""
        try:
            report = drain_outbox(
                self.engine,
                self.settings,
                self.clock,
                transport_factory=self.transport_factory,
                worker=self.worker,
                should_stop=self.stopping.is_set,
                signer=self.signer,
            )
        except JournalError as exc:
            # Nothing is sent while the journal cannot be written; every drain probes it
            # again, so sending resumes by itself once there is room. Said once, not per drain.
            if self._journal_problem != str(exc):
                event(log, "outbox.journal_unwritable", logging.ERROR, error=str(exc))
            self._journal_problem = str(exc)
            return
        if self._journal_problem:
            event(log, "outbox.journal_writable", directory=self.settings.delivery.journal_dir)
            self._journal_problem = ""
        if report.paused and not self.stopping.is_set():
            event(log, "outbox.smtp_down", logging.ERROR, error=report.paused, sent=report.sent)
        elif report.sent or report.failed or report.skipped:
            event(
                log,
                "outbox.drained",
                sent=report.sent,
                failed=report.failed,
                skipped=report.skipped,
                workers=report.workers,
            )

    def send_webhooks(self) -> None:
        """POST the webhook events due (claimed with a lease, so several processes share them)."""
        report = deliver_webhooks(self.engine, self.settings, self.clock, self.worker, should_stop=self.stopping.is_set)
        if report.delivered or report.failed:
            event(log, "webhooks.delivered", delivered=report.delivered, failed=report.failed)

    def _job_function(self, spec: JobSpec) -> Callable[[], None]:
        if spec.id == "leader":
            fn: Callable[[], None] = self.check_leader
        elif spec.id.startswith("digest:"):
            name = spec.id.split(":", 1)[1]

            def fn() -> None:
                self.run_digest(name)
        else:
            fn = {
                "slots": self.run_slots,
                "feeds": self.poll_feeds,
                "alerts": self.run_alerts,
                "outbox": self.send,
                "webhooks": self.send_webhooks,
            }[spec.id]
        return lambda: self._run(spec.id, spec.leader_only, fn)

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Add the jobs and start the scheduler (in background threads)."""
        now = datetime.now(UTC)
        for spec in self.specs:
            kwargs: dict[str, Any] = {}
            if spec.id in ("leader", "outbox"):
                kwargs["next_run_time"] = now
            if spec.id.startswith("digest:"):
                cfg = self.settings.digests[spec.id.split(":", 1)[1]]
                kwargs["misfire_grace_time"] = max(1, int(cfg.max_delay.total_seconds()))
            self.scheduler.add_job(
                self._job_function(spec),
                spec.trigger,
                id=spec.id,
                name=spec.description,
                replace_existing=True,
                **kwargs,
            )
        self.scheduler.start()
        event(
            log,
            "service.started",
            worker=self.worker,
            pid=os.getpid(),
            jobs=",".join(s.id for s in self.specs),
            leader_lock=self.leader.describe(),
        )
        sd_notify("READY=1")

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            event(log, "service.stopping", reason=reason)
            self.stopping.set()

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def release_claims(self) -> int:
        """Put this process's claimed deliveries back in the queue for anyone to send."""
        return release_worker(self.engine, self.worker)

    def shutdown(self) -> bool:
        """Stop: no new jobs, in-flight work bounded by shutdown_timeout, claims released.

        Returns True when every job finished in time.
        """
        self.request_stop()
        sd_notify("STOPPING=1")
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=False)
        timeout = self.settings.service.shutdown_timeout.total_seconds()
        finished = self._wait_idle(timeout)
        if not finished:
            event(log, "service.stop_timeout", logging.WARNING, busy=",".join(sorted(self._busy)), timeout=timeout)
        released = self.release_claims()
        self.leader.release()
        with session_scope(self.engine) as session:
            node = session.get(ServiceNode, self.worker)
            if node is not None:
                session.delete(node)
        event(log, "service.stopped", worker=self.worker, released=released, clean=finished)
        return finished


class Stoppable(Protocol):
    """What runs beside the service (the web app): stopped after the scheduler."""

    @property
    def url(self) -> str: ...

    def stop(self, timeout: float = ...) -> None: ...


def serve(
    service: Service,
    *,
    install_signals: bool = True,
    start_web: Callable[[Service], Stoppable | None] | None = None,
) -> int:
    """Run ``service`` until SIGTERM/SIGINT; return the exit code (0 after a clean stop).

    ``start_web`` starts the subscriber pages beside the service (the CLI passes it:
    the service shell does not import the web shell).
    """

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if service.stopping.is_set():
            # Second signal: leave now. Every write is a transaction, so the store stays whole.
            event(log, "service.killed", logging.WARNING, signal=name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(128 + signum)
        service.request_stop(f"signal {name}")

    if install_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    web = start_web(service) if start_web is not None else None
    if web is not None:
        event(log, "web.started", url=web.url)
    metrics = serve_metrics(service.engine, service.settings, service.clock, setting_source("metrics.port"))
    if metrics is not None:
        event(log, "metrics.started", url=f"http://{service.settings.metrics.bind}:{metrics.server_port}/metrics")
    service.start()
    while not service.stopping.wait(1.0):
        pass
    finished = service.shutdown()
    if metrics is not None:
        metrics.shutdown()
    if web is not None:
        # After the scheduler: a subscriber's unsubscribe in flight still lands.
        web.stop()
    for handler in logging.getLogger().handlers:
        handler.flush()
    if not finished:
        # Threads still inside a job would keep the interpreter alive; their claims
        # are released already, so leave without waiting for them.
        os._exit(0)
    return 0
