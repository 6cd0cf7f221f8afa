"""The one drain path: ``digest send``, ``resend``, ``serve`` and the benchmark all deliver through here.

The configured pool (``[delivery]`` servers x connections x processes) is used in
every case; one given transport replaces it (tests, ``--to``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from digest.compose.dkim import Signer
from digest.compose.inline import inline_css
from digest.compose.variants import Variants
from digest.core.clock import Clock
from digest.core.errors import DeliveryError
from digest.core.settings import Settings
from digest.outbox.ledger import editions_with_work, finish_edition
from digest.outbox.loader import EditionVariants
from digest.outbox.processes import run_send
from digest.outbox.sender import SendReport
from digest.transport.pool import TransportFactory
from digest.transport.smtp import Transport


def send_edition(
    engine: Engine,
    settings: Settings,
    variants: Variants,
    edition_id: int,
    transport: Transport | None,
    clock: Clock,
    *,
    progress: Callable[[int], None] | None = None,
    worker: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    signer: Signer | None = None,
    transport_factory: TransportFactory | None = None,
    processes: int | None = None,
) -> SendReport:
    """Send every due delivery of one edition (its ``variants`` already prepared), recording each result.

    :func:`drain_outbox` limited to the edition. Raises DeliveryError when every
    SMTP server is paused by its circuit breaker (after recording and releasing, so
    nothing is lost); per-recipient failures are recorded, not raised.
    """
    report = drain_outbox(
        engine, settings, clock, editions=[edition_id], known={edition_id: variants},
        transport=transport, transport_factory=transport_factory, worker=worker, should_stop=should_stop,
        signer=signer, processes=processes, progress=progress,
    )  # fmt: skip
    report.edition_id, report.slot = edition_id, variants.slot
    if report.paused and not should_stop():
        raise DeliveryError(f"SMTP server unavailable, stopping this run: {report.paused}")
    return report


def drain_outbox(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    editions: Sequence[int] | None = None,
    known: dict[int, Variants] | None = None,
    transport: Transport | None = None,
    transport_factory: TransportFactory | None = None,
    worker: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    signer: Signer | None = None,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendReport:
    """Send whatever is due (new deliveries, retries, expired leases) of ``editions`` (default: all).

    With ``transport`` everything goes over that one connection in this process;
    otherwise over the configured pool (``[delivery]``: servers, connections,
    processes), each connection made by ``transport_factory(config,
    max_per_connection)``. ``signer`` (DKIM) signs every filled message. ``known``
    holds variants already prepared (their edition is not rendered again).

    The service calls it from a scheduler job as often as it likes, from as many
    processes and hosts as share the database. It returns when nothing is due, when
    ``should_stop()`` turns true (the messages in flight are finished, the rest
    released), or when every server is paused (``report.paused`` says why; nothing
    is raised). Editions with nothing left pending are marked sent.
    """
    editions = list(editions) if editions is not None else editions_with_work(engine)
    if not editions:
        return SendReport()
    inline = next(iter(known.values())).inline if known else inline_css
    variants_for = EditionVariants(engine, settings, inline, known)
    report = run_send(
        engine, settings, clock, editions, variants_for,
        transport=transport, transport_factory=transport_factory, processes=processes, signer=signer,
        should_stop=should_stop, progress=progress, worker=worker, prepared=variants_for.prepared,
    )  # fmt: skip
    for edition_id in editions:
        finish_edition(engine, edition_id, clock.now())
    return report
