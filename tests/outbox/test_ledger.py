"""The outbox ledger: claims, leases, dead workers, journals, draining."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.outbox.drain import drain_outbox
from digest.outbox.journal import Journal, recover_journals, worker_id
from digest.outbox.ledger import claim_batch, queue_deliveries
from digest.store.db import session_scope
from digest.store.models import DeliveryStatus, Edition, EditionStatus, Subscriber, SubscriberStatus
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.outbox.support import D, readers, rows
from tests.smtp_script import ScriptedSink

# ---------------------------------------------------------------- the outbox


def edition_of(engine: Engine, settings: Settings) -> int:
    edition, _, _ = get_or_build_edition(engine, settings, "daily", NOW)
    assert edition.id is not None
    with session_scope(engine) as s:
        queue_deliveries(s, edition.id, NOW)
    return edition.id


def test_claims_of_concurrent_workers_never_overlap(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(200))
    edition_id = edition_of(engine, settings)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := claim_batch(engine, name, NOW, timedelta(minutes=5), 7, [edition_id]):
            mine += [c.delivery_id for c in batch]
        got[name] = mine

    threads = [threading.Thread(target=claim, args=(f"host:{i}:1",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == len(set(claimed)) == 200


def test_expired_lease_is_claimed_again(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition_id = edition_of(engine, settings)
    first = claim_batch(engine, "elsewhere:1:1", NOW, timedelta(minutes=5), 10, [edition_id])
    assert len(first) == 3
    assert claim_batch(engine, "here:2:2", NOW + timedelta(minutes=4), timedelta(minutes=5), 10, [edition_id]) == []
    again = claim_batch(engine, "here:2:2", NOW + timedelta(minutes=6), timedelta(minutes=5), 10, [edition_id])
    assert len(again) == 3


def dead_worker() -> str:
    """The worker id of a process of this host that has exited."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:1"


def test_claims_of_a_dead_process_on_this_host_are_released_at_once(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(4))
    edition_id = edition_of(engine, settings)
    dead = dead_worker()
    claim_batch(engine, dead, NOW, timedelta(minutes=5), 10, [edition_id])
    claim_batch(engine, "otherhost:1:1", NOW, timedelta(minutes=5), 10, [edition_id])  # nothing left for it
    found = recover_journals(engine, settings.delivery.journal_dir, NOW)
    assert found.released == 4
    with session_scope(engine) as s:
        assert set(s.exec(select(D.c.status)).scalars()) == {DeliveryStatus.QUEUED}  # type: ignore[call-overload]


def test_claims_of_a_live_process_are_left_alone(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(2))
    edition_id = edition_of(engine, settings)
    claim_batch(engine, worker_id(), NOW, timedelta(minutes=5), 10, [edition_id])
    assert recover_journals(engine, settings.delivery.journal_dir, NOW).released == 0


def test_journal_of_a_dead_sender_marks_its_accepted_messages_sent(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(5))
    edition_id = edition_of(engine, settings)
    dead = dead_worker()
    claimed = claim_batch(engine, dead, NOW, timedelta(minutes=5), 10, [edition_id])
    log = Journal(settings.delivery.journal_dir, dead).batch()
    for c in claimed[:2]:
        log.note(c.delivery_id, f"<m{c.delivery_id}@x>", NOW)
    found = recover_journals(engine, settings.delivery.journal_dir, NOW)
    assert (found.journalled, found.released) == (2, 3)
    by_id = {d.id: d for d in rows(engine).values()}
    assert [by_id[c.delivery_id].status for c in claimed] == ["sent"] * 2 + ["queued"] * 3
    assert by_id[claimed[0].delivery_id].message_id == f"<m{claimed[0].delivery_id}@x>"
    assert list(Path(settings.delivery.journal_dir).rglob("*.sent")) == []


def test_drain_outbox_sends_what_is_due_across_editions(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    from digest.core.settings import DigestConfig

    pool.digests["evening"] = DigestConfig(title="Evening", sections=["World"])
    seed(engine, STANDARD_DRAFTS, readers(3))
    for name in ("daily", "evening"):
        edition, _, _ = get_or_build_edition(engine, pool, name, NOW)
        with session_scope(engine) as s:
            queue_deliveries(s, edition.id, NOW)  # type: ignore[arg-type]
    report = drain_outbox(engine, pool, clock=clock)
    assert report.sent == 6 and len(report.editions) == 2
    with session_scope(engine) as s:
        assert {e.status for e in s.exec(select(Edition)).scalars()} == {EditionStatus.SENT}  # type: ignore[call-overload]
    assert drain_outbox(engine, pool, clock=clock).sent == 0


def test_drain_outbox_stops_when_asked_and_releases_the_rest(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pool.delivery.connections = 1
    pool.batch_size = 5
    seed(engine, STANDARD_DRAFTS, readers(30))
    edition_of(engine, pool)
    sent_before_stop = 3
    report = drain_outbox(engine, pool, clock=clock, should_stop=lambda: len(script.messages) >= sent_before_stop)
    assert sent_before_stop <= report.sent < 30
    counts = {s: n for s, n in _status_counts(engine).items()}
    assert counts.get(DeliveryStatus.CLAIMED, 0) == 0
    assert counts[DeliveryStatus.SENT] == report.sent == len(script.messages)
    assert counts[DeliveryStatus.QUEUED] == 30 - report.sent
    assert drain_outbox(engine, pool, clock=clock).sent == 30 - report.sent


def _status_counts(engine: Engine) -> dict[str, int]:
    from collections import Counter

    with session_scope(engine) as s:
        return dict(Counter(s.exec(select(D.c.status)).scalars()))  # type: ignore[call-overload]


def test_bounced_or_unsubscribed_after_queueing_is_skipped(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    edition_of(engine, pool)
    with session_scope(engine) as s:
        s.execute(
            update(Subscriber).where(Subscriber.email_key == "r1@example.org").values(status=SubscriberStatus.BOUNCED)
        )
    report = drain_outbox(engine, pool, clock=clock)
    assert (report.sent, report.skipped) == (2, 1)
    assert rows(engine)["r1@example.org"].status == DeliveryStatus.SKIPPED
