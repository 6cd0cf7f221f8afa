"""The engine's own SMTP connection against real servers: pipelining, the next envelope ahead, classification."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.core.errors import PermanentFailure, TemporaryFailure
from digest.transport.aio import AsyncSMTP
from digest.transport.sink import free_port
from digest.transport.smtp import parse_smtp_url
from tests.smtp_script import ScriptedSink

MESSAGE = b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n..two dots\r\n.\r\nend"


def send_all(url: str, recipients: list[str]) -> tuple[AsyncSMTP, list[str | Exception], int]:
    """Send MESSAGE to each recipient in turn, announcing the next one; how many envelopes went ahead."""

    async def run() -> tuple[AsyncSMTP, list[str | Exception], int]:
        conn = AsyncSMTP(parse_smtp_url(url, 5))
        answers: list[str | Exception] = []
        ahead = 0
        for i, rcpt in enumerate(recipients):
            then = ("news@example.com", recipients[i + 1]) if i + 1 < len(recipients) else None
            try:
                answers.append(await conn.send("news@example.com", rcpt, MESSAGE, then))
            except (TemporaryFailure, PermanentFailure) as exc:
                answers.append(exc)
            ahead += conn.ahead is not None
        await conn.close()
        return conn, answers, ahead

    return asyncio.run(run())


def test_next_envelope_goes_behind_the_dot_and_every_message_arrives_once_intact() -> None:
    with ScriptedSink() as sink:
        sink.handler.pipelining = True
        sink.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        recipients = ["a@example.org", "b@example.org", "bad@example.org", "c@example.org"]
        conn, answers, ahead = send_all(sink.url, recipients)
        got = [(m.rcpt_tos, m.data) for m in sink.messages]
    # Behind a's and b's dots; the refused envelope had no dot to send c's behind.
    assert ahead == 2 and conn.connections_opened == 1
    assert isinstance(answers[2], PermanentFailure) and answers[2].code == 550
    assert [r for r, _ in got] == [["a@example.org"], ["b@example.org"], ["c@example.org"]]
    assert all(data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n") + b"\n" for _, data in got)


def test_without_pipelining_nothing_is_sent_ahead() -> None:
    with ScriptedSink() as sink:
        conn, answers, ahead = send_all(sink.url, ["a@example.org", "b@example.org"])
        assert len(sink.messages) == 2
    assert ahead == 0 and all(isinstance(a, str) and a.startswith("250") for a in answers)


@pytest.fixture
def postfix_sink() -> Iterator[tuple[str, Path]]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(binary):
        pytest.skip("Postfix smtp-sink is not installed")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    # Writable by the unprivileged user smtp-sink runs as (pytest's tmp_path is not).
    holder = tempfile.TemporaryDirectory()
    tmp_path = Path(holder.name)
    tmp_path.chmod(0o777)
    # -d: one file per message in tmp_path (named from a date template); -c counts.
    proc = subprocess.Popen(
        [binary, *user, "-d", f"{tmp_path}/%M%S.", f"127.0.0.1:{port}", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket
        import time

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"smtp://127.0.0.1:{port}", tmp_path
    finally:
        proc.terminate()
        proc.wait(5)
        holder.cleanup()


def test_postfix_smtp_sink_gets_each_pipelined_message_once(postfix_sink: tuple[str, Path]) -> None:
    url, directory = postfix_sink
    recipients = [f"r{i}@example.org" for i in range(20)]
    conn, answers, ahead = send_all(url, recipients)
    assert all(isinstance(a, str) and a.startswith("250") for a in answers), answers
    assert ahead == 19 and conn.connections_opened == 1
    dumps = b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())
    assert all(dumps.count(f"<{r}>".encode()) == 1 for r in recipients)
    # Dot-stuffing undone by the server: each message's text exactly as given.
    assert dumps.count(b"\n\n.leading dot\nline\n..two dots\n.\nend\n") == 20


def test_the_lanes_run_on_uvloop() -> None:
    # Installed with digest (not on Windows): the loop's own CPU a message is what
    # bounds sending on loopback (docs/performance.md).
    from digest.transport.pool import new_event_loop

    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
