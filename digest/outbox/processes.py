"""Worker processes: one :class:`~digest.outbox.sender.Sender` each, the parent's limits split.

Filling and SMTP framing are CPU work under the GIL: for more than one core,
:func:`run_send` starts worker processes (``[delivery] processes``), each a Sender
claiming from the same outbox (``FOR UPDATE SKIP LOCKED`` keeps them apart on
PostgreSQL; SQLite serialises the short claim and record transactions). A worker
is spawned with the parent's settings, clock, transport factory, signer and
logging set-up, and reports back its :class:`~digest.outbox.sender.SendReport`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Sequence
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
from digest.outbox.loader import edition_variants
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
    prepared: dict[int, Variants] | None = None,
) -> SendReport:
    """Send the due deliveries of ``edition_ids``: in this process, or in worker processes.

    ``prepared``: variants the caller has already rendered (those ``variants_for``
    gives too); worker processes get copies instead of rendering them again.

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
        lanes = make_lanes(settings, transport, transport_factory, processes=1)
        sender = Sender(
            engine, settings, clock, lanes, variants_for,
            worker=worker, signer=signer, should_stop=should_stop, progress=progress,
        )  # fmt: skip
        report = sender.run(edition_ids)
    else:
        report = _run_processes(
            engine, settings, clock, edition_ids, n, transport_factory, signer, should_stop, progress, prepared
        )
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
    prepared: dict[int, Variants] | None = None,
) -> SendReport:
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
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
        "prepared": _shareable(prepared),
    }
    counter = ctx.Value("q", 0)  # messages sent, all workers: progress without counting rows
    children = [ctx.Process(target=_child_main, args=(spec, stop, results, counter), daemon=False) for _ in range(n)]
    for child in children:
        child.start()
    report = SendReport(editions=list(edition_ids))
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


def _shareable(prepared: dict[int, Variants] | None) -> bytes | None:
    """``prepared`` pickled for the workers; None when it does not pickle (a test's own inliner)."""
    if not prepared:
        return None
    try:
        return pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        log.debug("prepared variants not shared with the sender processes: %s", exc)
        return None


def _add(counter: Any, n: int) -> None:
    with counter.get_lock():
        counter.value += n


def _child_main(spec: dict[str, Any], stop: Any, results: Any, counter: Any) -> None:
    """A worker process: its own engine, variants and connections; the parent's limits split."""
    settings: Settings = spec["settings"]
    # The parent's level, format (--log-format) and masking: a spawned process starts
    # with none of them, and its lines share the parent's stderr.
    spec["logging"].apply()
    engine = make_engine(spec["url"])
    parent = spec["parent"]
    # Which lines of the shared stderr come from which process.
    event(log, "sender.process_started", pid=os.getpid(), parent=parent)

    def should_stop() -> bool:
        # An orphan (the parent was killed) stops cleanly instead of sending on unsupervised.
        return stop.is_set() or os.getppid() != parent

    try:
        lanes = make_lanes(settings, None, spec["transport_factory"], processes=spec["processes"])
        sender = Sender(
            engine,
            settings,
            spec["clock"],
            lanes,
            edition_variants(engine, settings, known=pickle.loads(spec["prepared"]) if spec["prepared"] else None),
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
