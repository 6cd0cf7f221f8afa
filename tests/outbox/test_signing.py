"""Signing and transports handed in: DKIM-style signers, single transports, factories."""

from __future__ import annotations

import pickle

from sqlalchemy.engine import Engine

from digest.app.send import send_digest, send_test
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.store.db import session_scope
from digest.transport.smtp import MemoryTransport, SMTPConfig, SMTPTransport, parse_smtp_url
from tests.conftest import STANDARD_DRAFTS, seed
from tests.outbox.support import readers
from tests.smtp_script import ScriptedSink

# ---------------------------------------------------------------- signing, tokens


class PrependSigner:
    """Stands in for DKIM: prepends a DKIM-Signature header (picklable, for worker processes)."""

    def sign(self, message: bytes, body_hash: bytes | None = None) -> bytes:
        return b"DKIM-Signature: v=1; test=" + str(len(message)).encode() + b"\r\n" + message


def test_signer_signs_every_filled_message(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    send_digest(engine, pool, "daily", None, clock, signer=PrependSigner())
    assert len(script.messages) == 3
    for m in script.messages:
        first, _, rest = m.data.partition(b"\r\n")
        assert first == b"DKIM-Signature: v=1; test=" + str(len(rest)).encode()


def test_signer_signs_test_copies(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    seed(engine, STANDARD_DRAFTS, readers(1))
    sink = MemoryTransport()
    with session_scope(engine) as s:
        send_test(s, settings, "daily", ["r0@example.org"], sink, clock, signer=PrependSigner())
    assert sink.messages[0][2].startswith(b"DKIM-Signature: ")


def test_signer_reaches_worker_processes(
    engine: Engine, pool: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    pickle.dumps(PrependSigner())
    pool.delivery.processes = 2
    pool.batch_size = 4  # more due than one batch: worth starting the processes
    pool.delivery.send_while_starting = False  # and they send every copy
    seed(engine, STANDARD_DRAFTS, readers(10))
    report = send_digest(engine, pool, "daily", None, clock, signer=PrependSigner())
    assert (report.sent, report.workers) == (10, 2) and len(script.messages) == 10
    assert all(m.data.startswith(b"DKIM-Signature: ") for m in script.messages)


def test_single_transport_still_works_for_callers_that_pass_one(
    engine: Engine, settings: Settings, script: ScriptedSink, clock: FixedClock
) -> None:
    seed(engine, STANDARD_DRAFTS, readers(3))
    with SMTPTransport(parse_smtp_url(script.url)) as t:
        report = send_digest(engine, settings, "daily", t, clock)
        assert t.connections_opened == 1
    assert report.sent == 3


def test_transport_factory_gets_each_connections_server_config(
    engine: Engine, pool: Settings, clock: FixedClock
) -> None:
    kept = MemoryTransport()
    configs = []

    def factory(config: SMTPConfig, max_per_connection: int) -> MemoryTransport:
        configs.append((config.host, config.port, max_per_connection))
        return kept

    seed(engine, STANDARD_DRAFTS, readers(3))
    send_digest(engine, pool, "daily", None, clock, transport_factory=factory)

    server = parse_smtp_url(pool.smtp_url.get_secret_value())
    assert len(kept.messages) == 3
    assert configs == [(server.host, server.port, pool.delivery.max_per_connection)] * pool.delivery.connections
