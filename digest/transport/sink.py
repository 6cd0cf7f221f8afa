"""A local SMTP server (aiosmtpd) that keeps what it receives: demo, tests, ``digest sink``.

It is a real SMTP server on loopback, so whatever talks to it goes through the
same smtplib code path as production. Replies can be scripted per recipient to
exercise temporary and permanent failures.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SinkHandler:
    """Keeps messages in memory and, with ``directory``, as ``.eml`` files."""

    directory: Path | None = None
    messages: list[Received] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 no such user"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self.lock:
            self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data))
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                for rcpt in envelope.rcpt_tos:
                    safe = re.sub(r"[^A-Za-z0-9@._-]", "_", rcpt)
                    path = self.directory / f"{len(self.saved) + 1:04d}-{safe}.eml"
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                    self.saved.append(path)
        return "250 Message accepted for delivery"


class SmtpSink:
    """A running sink: ``with SmtpSink() as sink: ... sink.port ... sink.messages``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, directory: str | Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.handler = SinkHandler(Path(directory) if directory else None)
        # decode_data=False keeps the exact bytes; 8BITMIME/SMTPUTF8 as real MTAs offer.
        self.controller = Controller(
            self.handler, hostname=host, port=self.port, decode_data=False, enable_SMTPUTF8=True
        )

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
