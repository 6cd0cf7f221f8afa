"""A scripted aiosmtpd server for the delivery tests: failure classes, TLS, AUTH, limits.

It is a real SMTP server on loopback (aiosmtpd), told per recipient how to
misbehave: reply 421/451/452/550 at RCPT, 552 at the end of DATA, drop the
connection after DATA, stall; and per connection: close after N messages (421
at the next MAIL, as Postfix does), advertise PIPELINING. :class:`CrowdedServer`
is a relay that turns away extra connections and throttles bursts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword

from digest.transport.sink import SinkHandler, free_port


@dataclass
class ScriptedHandler(SinkHandler):
    data_replies: dict[str, str] = field(default_factory=dict)  # address -> reply after DATA
    drop_after_data: set[str] = field(default_factory=set)  # close the connection instead of replying
    stall: dict[str, float] = field(default_factory=dict)  # seconds to sleep before answering RCPT
    messages_per_connection: int = 0  # 421 at the next MAIL after this many, then close
    pipelining: bool = False
    per_session: Counter[int] = field(default_factory=Counter)
    sessions: set[int] = field(default_factory=set)

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions.add(id(session))
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.messages_per_connection and self.per_session[id(session)] >= self.messages_per_connection:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 too many messages on one connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        delay = self.stall.get(address.lower())
        if delay:
            await asyncio.sleep(delay)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else ""
        if rcpt in self.drop_after_data:
            server.transport.close()
            return "250 never seen by the client"
        if rcpt in self.data_replies:
            return self.data_replies[rcpt]
        self.per_session[id(session)] += 1
        return await super().handle_DATA(server, session, envelope)

    def count(self) -> Counter[str]:
        with self.lock:
            return Counter(r for m in self.messages for r in m.rcpt_tos)


class ScriptedSink:
    """``with ScriptedSink(...) as sink``: ``sink.url``, ``sink.handler``, ``sink.messages``."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.handler = ScriptedHandler()
        self.implicit_tls = implicit_tls
        kwargs: dict[str, Any] = {"decode_data": False, "enable_SMTPUTF8": True}
        if tls is not None and implicit_tls:
            kwargs["ssl_context"] = tls
            kwargs["auth_require_tls"] = False  # the whole session is TLS already
        elif tls is not None:
            kwargs["tls_context"] = tls
            kwargs["require_starttls"] = True
        if users is not None:

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and users.get(data.login.decode()) == data.password.decode()
                return AuthResult(success=ok, handled=False)

            kwargs["authenticator"] = authenticate
            kwargs["auth_required"] = True
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages

    def __enter__(self) -> ScriptedSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for ``host``, and the certificate's path."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


class CrowdedServer:
    """A raw asyncio SMTP server that behaves like a busy relay: it turns away and throttles.

    It answers ``421 4.7.0 too many connections`` to every connection beyond
    ``max_connections`` open at once, and ``454 4.7.0 Throttling failure`` (as Amazon
    SES does) to a MAIL beyond ``burst`` messages within ``window`` seconds. It
    offers PIPELINING and keeps every message it accepts, ``hold(data)`` seconds
    after its final dot.
    """

    def __init__(
        self, max_connections: int, burst: int, window: float = 0.25, hold: Callable[[bytes], float] | None = None
    ) -> None:
        self.port = free_port()
        self.hold = hold  # seconds to wait before accepting a message, given its data
        self.max_connections = max_connections
        self.burst = burst
        self.window = window
        self.open = 0
        self.most_open = 0
        self.refused = 0
        self.throttled = 0
        self.messages: list[tuple[str, bytes]] = []
        self._recent: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> CrowdedServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _burst_exceeded(self) -> bool:
        now = time.monotonic()
        self._recent = [t for t in self._recent if now - t < self.window]
        if len(self._recent) >= self.burst:
            return True
        self._recent.append(now)
        return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections:
            self.refused += 1
            writer.write(b"421 4.7.0 too many connections from your host\r\n")
            writer.close()
            return
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self._session(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 crowded ESMTP\r\n")
        rcpt, ok = "", False
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-crowded\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                ok = not self._burst_exceeded()
                if not ok:
                    self.throttled += 1
                writer.write(
                    b"250 OK\r\n" if ok else b"454 4.7.0 Throttling failure: Maximum sending rate exceeded\r\n"
                )
            elif verb == b"RCPT":
                rcpt = line[9:].strip().strip(b"<>").decode()
                writer.write(b"250 OK\r\n" if ok else b"503 5.5.1 MAIL first\r\n")
            elif verb == b"DATA":
                if not ok:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                    continue
                writer.write(b"354 go ahead\r\n")
                data = bytearray()
                while (chunk := await reader.readline()) != b".\r\n":
                    if not chunk:
                        return
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                if self.hold is not None:
                    await asyncio.sleep(self.hold(bytes(data)))
                self.messages.append((rcpt, bytes(data)))
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"RSET":
                writer.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"502 5.5.2 unknown command\r\n")
