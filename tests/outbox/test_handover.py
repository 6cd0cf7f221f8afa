"""While the sender processes start, the process that starts them sends alone, then hands over.

``[delivery] send_while_starting``: a worker spends a second or two starting; the
parent sends over all the connections meanwhile, and the workers begin only once
its connections are closed, so the relay never sees more than ``[delivery]
connections`` from one send.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers
from tests.smtp_script import CrowdedServer

PARENT = os.getpid()
SUBSCRIBERS = 300


class PidSigner:
    """Marks each copy with the process that filled it (picklable: it goes to the workers)."""

    def sign(self, message: bytes, body_hash: bytes | None = None) -> bytes:
        return b"X-Filled-By: %d\r\n" % os.getpid() + message


def filled_by(data: bytes) -> int:
    return int(data.split(b"\r\n", 1)[0].removeprefix(b"X-Filled-By: "))


@pytest.fixture
def relay() -> Iterator[CrowdedServer]:
    """Two connections at most; the parent's copies take 0.5 s each (alone it would need 75 s)."""
    with CrowdedServer(
        max_connections=2, burst=10**6, hold=lambda data: 0.5 if filled_by(data) == PARENT else 0.0
    ) as server:
        yield server


@pytest.fixture
def two_processes(settings: Settings, relay: CrowdedServer) -> Settings:
    settings.smtp_url = SecretStr(relay.url)
    settings.delivery.connections = 2
    settings.delivery.processes = 2
    settings.batch_size = 20
    return settings


def senders(relay: CrowdedServer) -> list[int]:
    return [filled_by(data) for _, data in relay.messages]


def test_the_parent_sends_until_the_workers_are_ready_then_only_they_send(
    engine: Engine, two_processes: Settings, relay: CrowdedServer, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(SUBSCRIBERS))

    report = send_digest(engine, two_processes, "daily", None, clock, signer=PidSigner())

    assert report.sent == SUBSCRIBERS and report.released == 0
    assert Counter(rcpt for rcpt, _ in relay.messages) == {f"r{i}@example.org": 1 for i in range(SUBSCRIBERS)}
    order = senders(relay)
    handed_over = next(i for i, pid in enumerate(order) if pid != PARENT)
    assert handed_over > 0  # the parent began
    assert PARENT not in order[handed_over:]  # and stopped before any worker's first message


def test_the_hand_over_keeps_to_the_connections_setting(
    engine: Engine, two_processes: Settings, relay: CrowdedServer, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(SUBSCRIBERS))
    send_digest(engine, two_processes, "daily", None, clock, signer=PidSigner())
    assert (relay.refused, relay.most_open) == (0, 2)


def test_without_send_while_starting_only_the_workers_send(
    engine: Engine, two_processes: Settings, relay: CrowdedServer, clock: FixedClock
) -> None:
    two_processes.delivery.send_while_starting = False
    seed(engine, STANDARD_DRAFTS, readers(60))

    report = send_digest(engine, two_processes, "daily", None, clock, signer=PidSigner())

    assert report.sent == 60
    assert report.workers == 2 and PARENT not in senders(relay)
