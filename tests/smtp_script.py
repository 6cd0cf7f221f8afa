"""A scripted aiosmtpd server for the delivery tests: failure classes, TLS, AUTH, limits.

It is a real SMTP server on loopback (aiosmtpd), told per recipient how to
misbehave: reply 421/451/452/550 at RCPT, 552 at the end of DATA, drop the
connection after DATA, stall; and per connection: close after N messages (421
at the next MAIL, as Postfix does), advertise PIPELINING.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections import Counter
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
