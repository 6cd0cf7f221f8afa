"""Worker processes: one :class:`~digest.outbox.sender.Sender` each, the parent's limits split.

Filling and SMTP framing are CPU work under the GIL: for more than one core,
:func:`run_send` starts worker processes (``[delivery] processes``), each a Sender
claiming from the same outbox (``FOR UPDATE SKIP LOCKED`` keeps them apart on
PostgreSQL; SQLite serialises the short claim and record transactions). A worker
is forked from multiprocessing's fork server (spawned where there is none) with the
parent's settings, clock, transport factory, signer and logging set-up, and reports
back its :class:`~digest.outbox.sender.SendReport`.

The first workers wait a second or two for the fork server to import the package
(a tenth of a 20,000-subscriber send to a relay 10 ms away). Meanwhile the parent
sends on its own over all the connections (``[delivery] send_while_starting``):
once every live worker is ready it stops claiming, lets its messages in flight
finish, hands back what it claimed but had not started, and closes its
connections; only then do the workers begin, so the server never sees more than
``[delivery] connections`` from this send.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict
from typing import Any

from sqlalchemy.engine import Engine

from digest.compose.dkim import Signer
from digest.compose.variants import Variants
from digest.core.clock import Clock
from digest.core.errors import DigestError, JournalError
from digest.core.logs import current_config, event
from digest.core.settings import Settings
from digest.outbox.journal import Journal, recover_journals, worker_id
from digest.outbox.ledger import pending_count
from digest.outbox.loader import EditionVariants
from digest.outbox.sender import Sender, SendReport, VariantsFor, make_lanes
from digest.store.db import make_engine
from digest.transport.pool import TransportFactory
from digest.transport.smtp import Transport

log = logging.getLogger(__name__)


def process_count(settings: Settings, processes: int | None) -> int:
    n = settings.delivery.processes if processes is None else processes
    return n if n > 0 else (os.cpu_count() or 1)


def run_send(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    edition_ids: Sequence[int],
    variants_for: VariantsFor,
    *,
    transport: Transport | None = None,
    transport_factory: TransportFactory | None = None,
    processes: int | None = None,
    signer: Signer | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
    worker: str | None = None,
    prepared: dict[int, Variants | None] | None = None,
) -> SendReport:
    """Send the due deliveries of ``edition_ids``: in this process, or in worker processes.

    ``prepared``: the variants ``variants_for`` holds (a live view: what it renders
    meanwhile is added); worker processes get copies instead of rendering them again.

    Raises :class:`JournalError` when the journal cannot be written: before the first
    message when the probe fails, else after recording what was sent (sent) and
    releasing the rest.
    """
    Journal(settings.delivery.journal_dir, worker_id()).check()
    recovered = recover_journals(engine, settings.delivery.journal_dir, clock.now())
    n = 1 if transport is not None else process_count(settings, processes)
    if n > 1 and pending_count(engine, edition_ids) <= settings.batch_size:
        n = 1  # a few retries are not worth starting processes for (the service drains often)
    if n <= 1:
        report = _send_here(
            engine, settings, clock, edition_ids, variants_for, transport, transport_factory, signer,
            should_stop, progress, worker,
        )  # fmt: skip
    else:
        report = _run_processes(
            engine, settings, clock, edition_ids, n, transport_factory, signer, should_stop, progress, prepared,
            variants_for, worker,
        )  # fmt: skip
    report.recovered += recovered.journalled
    report.workers = n
    return report


def _run_processes(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    edition_ids: Sequence[int],
    n: int,
    transport_factory: TransportFactory | None,
    signer: Signer | None,
    should_stop: Callable[[], bool],
    progress: Callable[[int], None] | None,
    prepared: dict[int, Variants | None] | None,
    variants_for: VariantsFor,
    worker: str | None,
) -> SendReport:
    ctx = _context()
    stop = ctx.Event()
    go = ctx.Event()  # set once the parent's own sending has handed over (its connections closed)
    ready = ctx.Value("i", 0)  # workers started and waiting for ``go``
    results = ctx.Queue()
    # The prepared variants, one copy a worker, put at the hand-over: by then they hold
    # every content variant the parent met while sending alone.
    handed = ctx.Queue()
    handed.cancel_join_thread()  # a worker that died unread must not hold this process at exit
    spec = {
        "url": engine.url.render_as_string(hide_password=False),
        "settings": settings,
        "clock": clock,
        "edition_ids": list(edition_ids),
        "transport_factory": transport_factory,
        "signer": signer,
        "rate_share": 1.0 / n,
        "processes": n,
        "parent": os.getpid(),
        "logging": current_config(settings),
    }
    counter = ctx.Value("q", 0)  # messages sent, all workers: progress without counting rows
    workers = _Workers(ctx, n, (spec, stop, results, counter, ready, go, handed))
    alone = settings.delivery.send_while_starting
    report = SendReport(editions=list(edition_ids))
    try:
        if alone:
            report.add(
                _send_while_starting(
                    engine, settings, clock, edition_ids, workers, ready, stop, transport_factory, signer,
                    should_stop, progress, variants_for, worker,
                )
            )  # fmt: skip
    except BaseException:
        stop.set()  # the workers leave without sending: the error is this send's outcome
        raise
    finally:
        if alone:
            workers.cancelled.set()  # those not started yet are not needed: all were ready, or nothing is left
        workers.wait_started()
        shared = _shareable(prepared) if workers.started else None
        for _ in workers.started:
            handed.put(shared)
        go.set()
        if stop.is_set():
            for child in workers.started:
                child.join()
    if workers.error is not None and not workers.started and not alone:
        raise workers.error
    children = workers.started
    _gather(children, results, stop, counter, report, should_stop, progress)
    for child in children:
        child.join()
        if child.exitcode != 0:
            report.workers_failed += 1
            log.error("sender process %s exited with %s; its claims are released", child.pid, child.exitcode)
    if report.workers_failed:
        report.recovered += recover_journals(engine, settings.delivery.journal_dir, clock.now()).journalled
    if any(c.exitcode == JournalError.exit_code for c in children):
        directory = Journal(settings.delivery.journal_dir, worker_id()).directory
        raise JournalError(directory, "a sender process could not write it (see its log line)")
    return report


class _Workers:
    """The worker processes of one send, started from a thread: this one sends meanwhile.

    Starting can take a second (the fork server imports the package first); one that
    fails to start is logged, and this process's own sending goes on without it.
    """

    def __init__(self, ctx: Any, n: int, args: tuple[Any, ...]) -> None:
        self._planned = [ctx.Process(target=_child_main, args=args, daemon=False) for _ in range(n)]
        self.started: list[Any] = []
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._start, name="sender-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            for process in self._planned:
                if self.cancelled.is_set():
                    return
                process.start()
                self.started.append(process)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's thread
            self.error = exc
            log.error("could not start a sender process: %s", exc)

    def starting(self) -> bool:
        return self._thread.is_alive()

    def alive(self) -> int:
        return sum(1 for c in list(self.started) if c.is_alive())

    def wait_started(self) -> None:
        self._thread.join()


def _context() -> Any:
    """Workers forked from a fork server that imported this module once (spawned where there is none).

    Spawning imports the package in every worker: 1-2 s of CPU each, every send. The
    fork server is a fresh single-threaded process (forking it is safe, unlike forking
    this one, which has threads), started at the first send and kept for the next:
    ``digest serve`` pays the imports once.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _send_here(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    edition_ids: Sequence[int],
    variants_for: VariantsFor,
    transport: Transport | None,
    transport_factory: TransportFactory | None,
    signer: Signer | None,
    should_stop: Callable[[], bool],
    progress: Callable[[int], None] | None,
    worker: str | None,
) -> SendReport:
    """One Sender in this process, over every connection (``[delivery] connections``, unsplit)."""
    lanes = make_lanes(settings, transport, transport_factory, processes=1)
    sender = Sender(
        engine, settings, clock, lanes, variants_for,
        worker=worker, signer=signer, should_stop=should_stop, progress=progress,
    )  # fmt: skip
    return sender.run(edition_ids)


def _send_while_starting(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    edition_ids: Sequence[int],
    workers: _Workers,
    ready: Any,
    stop: Any,
    transport_factory: TransportFactory | None,
    signer: Signer | None,
    should_stop: Callable[[], bool],
    progress: Callable[[int], None] | None,
    variants_for: VariantsFor,
    worker: str | None,
) -> SendReport:
    """Send in this process, over every connection, until each live worker is ready to take over.

    The claimed deliveries no connection had started go back to the outbox (the
    workers claim them at once); they are not counted as released.
    """

    handed_over = False

    def handing_over() -> bool:
        nonlocal handed_over
        if should_stop():
            stop.set()
            return True
        if not handed_over and not workers.starting():
            alive = workers.alive()
            # No live worker: this process sends everything (their failures are reported after).
            handed_over = alive > 0 and int(ready.value) >= alive
        return handed_over

    report = _send_here(
        engine, settings, clock, edition_ids, variants_for, None, transport_factory, signer, handing_over,
        progress, worker,
    )  # fmt: skip
    report.released = 0
    if report.paused:
        stop.set()  # every server's breaker is open: the workers would only knock again
    return report


def _gather(
    children: list[Any],
    results: Any,
    stop: Any,
    counter: Any,
    report: SendReport,
    should_stop: Callable[[], bool],
    progress: Callable[[int], None] | None,
) -> None:
    """Add up the workers' reports as they come; pass on progress and the order to stop."""
    done = 0
    seen = 0
    journal_failed = False
    while done < len(children):
        if any(c.exitcode == JournalError.exit_code for c in children):
            journal_failed = True  # the others would fail at their next message too: stop them now
        if should_stop() or journal_failed:
            stop.set()
        try:
            part = results.get(timeout=0.5)
        except Exception:  # noqa: BLE001 - queue.Empty: poll the workers
            if all(not c.is_alive() for c in children) and results.empty():
                break
        else:
            done += 1
            report.add(SendReport(**part))
        if progress:
            now_sent = int(counter.value)
            if now_sent > seen:
                progress(now_sent - seen)
                seen = now_sent


def _shareable(prepared: dict[int, Variants | None] | None) -> bytes | None:
    """``prepared`` pickled for the workers; None when it does not pickle (a test's own inliner)."""
    known = {k: v for k, v in (prepared or {}).items() if v is not None}
    if not known:
        return None
    try:
        return pickle.dumps(known, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        log.debug("prepared variants not shared with the sender processes: %s", exc)
        return None


def _add(counter: Any, n: int) -> None:
    with counter.get_lock():
        counter.value += n


def _child_main(spec: dict[str, Any], stop: Any, results: Any, counter: Any, ready: Any, go: Any, handed: Any) -> None:
    """A worker process: its own engine and connections, the parent's variants; the parent's limits split."""
    settings: Settings = spec["settings"]
    # The parent's level, format (--log-format) and masking: a spawned process starts
    # with none of them, and its lines share the parent's stderr.
    spec["logging"].apply()
    engine = make_engine(spec["url"])
    parent = spec["parent"]
    # Which lines of the shared stderr come from which process.
    event(log, "sender.process_started", pid=os.getpid(), parent=parent)
    starter = multiprocessing.parent_process()  # the process that asked for this one (not the fork server)

    def should_stop() -> bool:
        # An orphan (the parent was killed) stops cleanly instead of sending on unsupervised.
        return stop.is_set() or (starter is not None and not starter.is_alive())

    try:
        _add(ready, 1)
        # Until the parent has handed over: its connections count against [delivery] connections.
        while not go.wait(0.1):
            if should_stop():
                break
        shared = None
        if go.is_set():
            with suppress(queue.Empty):  # put before ``go``; only a feeder thread may still be writing it
                shared = handed.get(timeout=30)
        lanes = make_lanes(settings, None, spec["transport_factory"], processes=spec["processes"])
        sender = Sender(
            engine,
            settings,
            spec["clock"],
            lanes,
            EditionVariants(engine, settings, known=pickle.loads(shared) if shared else None),
            signer=spec["signer"],
            should_stop=should_stop,
            rate_share=spec["rate_share"],
            progress=lambda n: _add(counter, n),
        )
        report = sender.run(spec["edition_ids"])
        results.put(asdict(report))
    except JournalError as exc:
        log.error("sender process failed: %s", exc)
        raise SystemExit(exc.exit_code) from None
    except DigestError as exc:
        log.error("sender process failed: %s", exc)
        raise SystemExit(1) from None
    finally:
        engine.dispose()
