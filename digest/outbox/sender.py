"""The send loop: claim batches from the outbox, hand them to the SMTP lanes, record.

One :class:`Sender` per process. Its main thread claims a batch, builds each job
(variant lookup, recipient values) and queues it; the lanes (one coroutine per SMTP
connection in the dispatcher's event-loop thread, :mod:`digest.transport.pool`)
fill, sign and send; when a batch is done the
main thread records it in one statement. Two batches are kept in flight so the
connections never wait for the database.

For more than one core, :mod:`digest.outbox.processes` runs one Sender in each
of several worker processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from digest.compose.dkim import Signer
from digest.compose.message import PreparedMessage, Recipient
from digest.compose.recipients import recipient_values
from digest.core.clock import Clock
from digest.core.errors import JournalError
from digest.core.settings import Settings
from digest.edition.dedup import Drop
from digest.outbox.journal import BatchJournal, Journal, worker_id
from digest.outbox.ledger import Bounce, Claimed, claim_batch, extend_leases, record, release
from digest.outbox.retry import backoff
from digest.store.models import DeliveryStatus, SubscriberStatus
from digest.store.provider_pauses import active_provider_pauses, record_provider_pause
from digest.transport.aio import AsyncSMTP
from digest.transport.pool import (
    Dispatcher,
    Job,
    Lane,
    Server,
    TransportFactory,
    configured_servers,
    per_process,
)
from digest.transport.providers import ProviderMap, provider_map
from digest.transport.smtp import SMTPTransport, Transport

log = logging.getLogger(__name__)

# Batches claimed ahead of the one being recorded: the lanes never wait for the database.
BATCHES_IN_FLIGHT = 2
# How often a sender reads the provider pauses other processes recorded (seconds).
PAUSES_EVERY = 2.0


@dataclass
class SendReport:
    """What one send run did. ``skipped`` counts subscribers already sent to before."""

    edition_id: int | None = None
    slot: str = ""
    queued: int = 0
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    skipped: int = 0
    already_sent: int = 0
    # Active subscribers not queued: another edition of the digest already served their local day.
    served_today: int = 0
    empty: bool = False
    variants: int = 0
    released: int = 0
    held: int = 0  # sent back to the outbox while their mailbox provider rests (no attempt counted)
    paused: str = ""  # why sending stopped early: every SMTP server paused by its circuit breaker
    server_error: str = ""  # the last failure of a server itself (cannot connect, login refused), not of a recipient
    recovered: int = 0  # deliveries recorded from the journal of a killed sender
    workers: int = 1  # sender processes used
    pending_after: int = 0  # still to send after the run: retries not yet due, or held by another sender
    workers_failed: int = 0
    editions: list[int] = field(default_factory=list)
    # Stories left out of the edition when this run built it (repeats of kept stories).
    drops: list[Drop] = field(default_factory=list)
    over_limit: int = 0  # fresh articles left out because the edition was full

    @property
    def failed(self) -> int:
        return self.failed_temporary + self.failed_permanent

    def add(self, other: SendReport) -> None:
        for name in ("sent", "failed_temporary", "failed_permanent", "skipped", "released", "held", "recovered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.variants = max(self.variants, other.variants)
        self.paused = self.paused or other.paused
        self.server_error = other.server_error or self.server_error
        self.editions = sorted(set(self.editions) | set(other.editions))


VariantsFor = Callable[[int], Any]
"""``variants_for(edition_id)``: the edition's :class:`digest.app.send.Variants`, or None."""


@dataclass
class _Batch:
    journal: BatchJournal
    results: list[dict[str, object]] = field(default_factory=list)
    bounced: list[Bounce] = field(default_factory=list)
    deferred: list[Bounce] = field(default_factory=list)  # 4xx for the recipient: the sunset rule
    accepted: list[int] = field(default_factory=list)  # subscriber ids whose copy was taken
    waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def one_done(self) -> None:
        with self.lock:
            self.waiting -= 1
            if self.waiting == 0:
                self.finished.set()


class Sender:
    """Drains due deliveries of some editions through one :class:`Dispatcher`."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        lanes: list[Lane],
        variants_for: VariantsFor,
        *,
        worker: str | None = None,
        signer: Signer | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int], None] | None = None,
        rate_share: float = 1.0,
        providers: ProviderMap | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.variants_for = variants_for
        # Claims always start with host:pid:start, so a restart on this host can tell
        # that their process is gone; a caller's label is kept after it.
        self.worker = worker_id() if not worker or worker == worker_id() else f"{worker_id()}:{worker}"[:200]
        self.signer = signer
        # Each recipient's mailbox provider: the dispatcher shapes traffic by it.
        self.providers = providers if providers is not None else provider_map(settings)
        self.should_stop = should_stop
        self.progress = progress
        self.report = SendReport()
        self.journal = Journal(settings.delivery.journal_dir, worker_id())
        # Set by the lane whose journal write failed: no lane starts another message.
        self.journal_error: JournalError | None = None
        self._batches: list[_Batch] = []  # claimed and not yet recorded (their journals are open)
        self.dispatcher = Dispatcher(lanes, settings, rate_share=rate_share, should_stop=should_stop)
        self._pauses_read = -PAUSES_EVERY
        self.lock = threading.Lock()
        self._variants_seen: set[int] = set()
        # A batch must be sendable well within its lease even at the configured rate.
        rate = min((s.rate_per_second * rate_share for s, _ in lanes if s.rate_per_second), default=0)
        lease = settings.lease.total_seconds()
        self.claim_size = settings.batch_size if not rate else max(1, min(settings.batch_size, int(rate * lease / 4)))

    def run(self, edition_ids: Sequence[int]) -> SendReport:
        """Send until nothing is due, ``should_stop`` turns true, or every server is paused."""
        inflight: deque[_Batch] = deque()
        last_extend = time.monotonic()
        self.report.editions = list(edition_ids)
        try:
            while True:
                self._share_pauses()
                stopping = self.should_stop() or self.dispatcher.all_paused() or self.journal_error is not None
                if not stopping and len(inflight) < BATCHES_IN_FLIGHT:
                    rows = claim_batch(
                        self.engine, self.worker, self.clock.now(), self.settings.lease, self.claim_size, edition_ids
                    )
                    if rows:
                        inflight.append(self._dispatch(rows))
                        continue
                if not inflight:
                    break
                if stopping:
                    self._wind_down(inflight)
                    break
                if inflight[0].finished.wait(0.05):
                    self._finish(inflight[0])
                    inflight.popleft()
                if time.monotonic() - last_extend > self.settings.lease.total_seconds() / 3:
                    extend_leases(self.engine, self.worker, self.clock.now(), self.settings.lease)
                    last_extend = time.monotonic()
        except BaseException:
            # The database failed (or we are interrupted): stop handing out messages,
            # let the lanes finish the ones in flight, and record what we can. What
            # cannot be recorded stays claimed until its lease expires.
            try:
                self._wind_down(inflight)
            except Exception:  # noqa: BLE001 - the original error is the one to raise
                log.exception("could not record the batches in flight after an error")
            raise
        finally:
            self.dispatcher.close()
            try:
                self._share_pauses(read=False)
            except Exception:  # noqa: BLE001 - the run's own outcome matters more than a pause not shared
                log.exception("could not record a provider pause")
            # After the lanes are gone: nothing appends any more. A journal still open
            # here belongs to a batch that could not be recorded: its file stays for
            # recover_journals (of this process's next send, or of the next process).
            for batch in self._batches:
                batch.journal.close()
        if self.journal_error is not None:
            raise self.journal_error
        if self.dispatcher.all_paused():
            self.report.paused = self.dispatcher.pause_reason() or "every SMTP server is paused"
        self.report.variants = sum(getattr(self.variants_for(e), "prepared_count", 0) for e in self._variants_seen)
        return self.report

    def _share_pauses(self, read: bool = True) -> None:
        """Record the provider pauses replies caused here; every PAUSES_EVERY seconds apply everyone's.

        In the main thread, between batches: the lanes never wait for the database.
        Each process's shaper counts in monotonic seconds, the table in the clock's time.
        """
        shaper = self.dispatcher.shaper
        taken = shaper.take_pauses()
        if taken:
            now = self.clock.now()
            with self.engine.begin() as conn:
                for provider, seconds, reason in taken:
                    record_provider_pause(conn, provider, now + timedelta(seconds=seconds), reason, now)
        if read and time.monotonic() - self._pauses_read >= PAUSES_EVERY:
            now = self.clock.now()
            with self.engine.connect() as conn:
                active = active_provider_pauses(conn, now)
            for p in active:
                shaper.pause(p.provider, (p.paused_until - now).total_seconds(), p.reason)
            self._pauses_read = time.monotonic()

    def _wind_down(self, inflight: deque[_Batch]) -> None:
        """Release every job no lane has started, wait for those in flight, record all."""
        while inflight:
            # Again on every turn: a lane may hand a job back (its server failed
            # before the message was handed over) after the previous sweep.
            for job in self.dispatcher.release_pending():
                job.outcome = "released"
                job.done(job)
            if inflight[0].finished.wait(0.05):
                self._finish(inflight[0])
                inflight.popleft()

    # ------------------------------------------------------------ one batch

    def _dispatch(self, rows: list[Claimed]) -> _Batch:
        try:
            batch = _Batch(journal=self.journal.batch())
        except JournalError as exc:
            self.journal_error = exc
            release(self.engine, [r.delivery_id for r in rows])
            raise
        self._batches.append(batch)
        jobs: list[Job] = []
        provider_of = self.providers.providers(
            (r.email for r in rows if r.status == SubscriberStatus.ACTIVE),
            budget=self.settings.delivery.mx_lookup_timeout,
        )
        for row in rows:
            result: dict[str, object] = {"id": row.delivery_id, "claimed_by": None, "lease_until": None}
            batch.results.append(result)
            if row.status != SubscriberStatus.ACTIVE:
                result.update(status=DeliveryStatus.SKIPPED, last_response="subscriber no longer active")
                self.report.skipped += 1
                continue
            if row.suppressed:
                result.update(status=DeliveryStatus.SKIPPED, last_response="address on the suppression list")
                self.report.skipped += 1
                continue
            variants = self.variants_for(row.edition_id)
            if variants is None:
                result.update(status=DeliveryStatus.QUEUED)  # the digest is no longer configured: leave it
                self.report.released += 1
                continue
            self._variants_seen.add(row.edition_id)
            prepared = variants.for_topics(row.topics, row.breaking, row.locale)
            if prepared is None:
                result.update(status=DeliveryStatus.SKIPPED, last_response="nothing new in the subscriber's topics")
                self.report.skipped += 1
                continue
            jobs.append(self._job(batch, row, result, prepared, provider_of[row.email]))
        batch.waiting = len(jobs)
        if not jobs:
            batch.finished.set()
        self.dispatcher.submit_all(jobs)
        return batch

    def _job(
        self, batch: _Batch, row: Claimed, result: dict[str, object], prepared: PreparedMessage, provider: str
    ) -> Job:
        recipient: Recipient = recipient_values(self.settings, row.subscriber_id, row.email, row.email_key, row.name)
        msgid = prepared.message_id(recipient)
        clock, signer, journal = self.clock, self.signer, batch.journal

        def prepare() -> bytes:
            if signer is None:
                return prepared.fill(recipient, clock.now(), msgid)
            # The body hash made from the variant's canonical parts: signing does not
            # canonicalize 40 KB a message.
            data, body_hash = prepared.fill_hashed(recipient, clock.now(), msgid)
            return signer.sign(data, body_hash)

        def accepted(job: Job) -> None:
            # The server said 250. Before this connection sends its next message's
            # data: what makes a kill -9 cost at most one duplicate per connection.
            try:
                journal.note(row.delivery_id, msgid, clock.now())
            except Exception as exc:  # noqa: BLE001 - any failure to journal stops sending, never retries
                self._journal_failed(exc)

        def done(job: Job) -> None:
            self._outcome(batch, row, result, msgid, job)
            batch.one_done()

        return Job(
            row.delivery_id,
            prepared.envelope_from_for(recipient),
            recipient.email,
            prepare,
            done,
            accepted,
            provider=provider,
            no_leading_dots=True,  # PreparedMessage.fill's promise; a DKIM header starts with its name
        )

    def _journal_failed(self, exc: Exception) -> None:
        """Stop every lane before its next message: one more could not be journalled either."""
        self.dispatcher.halt()
        with self.lock:
            if self.journal_error is None:
                problem = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                self.journal_error = JournalError(self.journal.directory, problem)

    def _outcome(self, batch: _Batch, row: Claimed, result: dict[str, object], msgid: str, job: Job) -> None:
        now = self.clock.now()
        attempts = row.attempts + 1
        with self.lock:
            if job.outcome == "released":
                result.update(status=DeliveryStatus.QUEUED)
                self.report.released += 1
            elif job.outcome == "deferred":
                # The recipient's provider asked us to slow down: not an attempt, not their fault;
                # but a provider that never lets it through still gives up on it after retry_max_age.
                too_old = now - row.created_at > self.settings.retry_max_age
                result.update(
                    status=DeliveryStatus.FAILED_PERMANENT if too_old else DeliveryStatus.FAILED_TEMPORARY,
                    last_response=str(job.error)[:1000],
                    next_attempt_at=None if too_old else now + timedelta(seconds=job.retry_in),
                )
                if too_old:
                    self.report.failed_permanent += 1
                else:
                    self.report.held += 1
            elif job.outcome == "sent":
                result.update(
                    status=DeliveryStatus.SENT,
                    attempts=attempts,
                    message_id=msgid,
                    last_response=job.answer[:1000],
                    sent_at=now,
                    next_attempt_at=None,
                )
                self.report.sent += 1
                batch.sent += 1
                batch.accepted.append(row.subscriber_id)
            elif job.outcome == "permanent":
                result.update(
                    status=DeliveryStatus.FAILED_PERMANENT,
                    attempts=attempts,
                    message_id=msgid,
                    last_response=str(job.error)[:1000],
                    next_attempt_at=None,
                )
                batch.bounced.append(Bounce(row.subscriber_id, msgid, str(job.error)[:1000]))
                self.report.failed_permanent += 1
                log.warning("delivery %s failed permanently: %s", row.delivery_id, job.error)
            else:
                too_old = now - row.created_at > self.settings.retry_max_age
                # A policy rejection waits at least for its provider's pause.
                wait = max(backoff(self.settings, attempts), timedelta(seconds=job.retry_in))
                result.update(
                    status=DeliveryStatus.FAILED_PERMANENT if too_old else DeliveryStatus.FAILED_TEMPORARY,
                    attempts=attempts,
                    message_id=msgid,
                    last_response=str(job.error)[:1000],
                    next_attempt_at=None if too_old else now + wait,
                )
                if too_old:
                    self.report.failed_permanent += 1
                else:
                    self.report.failed_temporary += 1
                if getattr(job.error, "connection_level", False):
                    self.report.server_error = str(job.error)
                elif job.outcome == "policy":
                    pass  # refused for the sender's setup or reputation: says nothing of the address
                elif row.attempts == 0:
                    # Only this recipient was deferred: a soft bounce. A server outage says nothing of them,
                    # and the retries of one delivery count once (the rule counts deliveries, not attempts).
                    batch.deferred.append(Bounce(row.subscriber_id, msgid, str(job.error)[:1000]))
                log.warning("delivery %s failed temporarily: %s", row.delivery_id, job.error)

    def _finish(self, batch: _Batch) -> None:
        record(
            self.engine,
            self.settings,
            batch.results,
            batch.bounced,
            self.clock.now(),
            deferred=batch.deferred,
            accepted=batch.accepted,
        )
        batch.journal.discard()
        # Recorded: nothing refers to it any more. Kept, a million messages' results
        # grew a sender by ~570 bytes each (370 MB at the end of a million).
        self._batches.remove(batch)
        if self.progress and batch.sent:
            self.progress(batch.sent)


# ---------------------------------------------------------------- lanes


def transport_name(transport: Transport) -> str:
    if isinstance(transport, SMTPTransport):
        return f"{transport.config.host}:{transport.config.port}"
    return f"{type(transport).__name__}@{id(transport):x}"


def make_lanes(
    settings: Settings,
    transport: Transport | None = None,
    transport_factory: TransportFactory | None = None,
    processes: int = 1,
) -> list[Lane]:
    """The connections of one of ``processes`` processes: ``transport`` alone, or its share of the pool.

    Without ``transport_factory`` each connection is the engine's own
    :class:`~digest.transport.aio.AsyncSMTP`; a factory's (blocking) transports run in
    worker threads of the same dispatcher.
    """
    d = settings.delivery
    if transport is not None:
        server = Server(transport_name(transport), None, 1, d.rate_per_second, d.rate_per_hour, d.max_per_connection)
        return [(server, transport)]
    lanes: list[Lane] = []
    for server in configured_servers(settings):
        assert server.config is not None  # always, for configured servers
        for _ in range(per_process(server.connections, processes)):
            if transport_factory is None:
                lanes.append((server, AsyncSMTP(server.config, max_messages=server.max_per_connection)))
            else:
                lanes.append((server, transport_factory(server.config, server.max_per_connection)))
    return lanes
