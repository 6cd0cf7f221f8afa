"""Transport: where prepared messages go. One small interface, several backends.

- :class:`SMTPTransport`: a persistent SMTP connection (Mailman's ``Connection``
  model), reconnecting when the server drops it, sorting failures per recipient
  into temporary (4xx, timeouts, dropped connections) and permanent (5xx).
- :class:`FileTransport`: writes ``.eml`` files (preview, demo).
- :class:`MemoryTransport`: keeps messages in a list (dry-run, preview to stdout).

The same pipeline runs for send, preview and dry-run; only the transport differs.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from digest.core.errors import ConfigError, PermanentFailure, TemporaryFailure
from digest.core.settings import check_smtp_url

if TYPE_CHECKING:
    from digest.core.settings import Settings


class Transport(Protocol):
    """Sends one message to one recipient; returns the server's answer."""

    def send(self, envelope_from: str, recipient: str, message: bytes) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = False
    verify: bool = True
    cafile: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None

    def __repr__(self) -> str:  # never show the password
        return f"SMTPConfig(host={self.host!r}, port={self.port}, user={self.username!r}, tls={self.implicit_tls})"


def parse_smtp_url(url: str, timeout: float = 30.0) -> SMTPConfig:
    """Parse ``smtp://user:pass@host:port?starttls=true`` or ``smtps://...``."""
    try:
        check_smtp_url(url)
    except ValueError as exc:
        raise ConfigError("smtp_url", str(exc)) from None
    parts = urlsplit(url)
    q = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    truthy = ("1", "true", "yes", "on")
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    return SMTPConfig(
        host=parts.hostname or "",  # checked above
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=parts.scheme == "smtps",
        starttls=q.get("starttls", "false") in truthy,
        verify=q.get("verify", "true") in truthy,
        cafile=parse_qs(parts.query).get("cafile", [None])[-1],
        timeout=timeout,
    )


def smtp_config(settings: Settings, url: str | None = None) -> SMTPConfig:
    """The connection settings of ``url`` (default: ``smtp_url``) with the configured ``smtp_timeout``."""
    return parse_smtp_url(url if url is not None else settings.smtp_url.get_secret_value(), settings.smtp_timeout)


def smtp_from_settings(settings: Settings) -> SMTPTransport:
    """A new connection to ``smtp_url`` (opened on its first message): notices, ``send --to``, the demo.

    Raises ConfigError when ``smtp_url`` is not an SMTP URL. Deliveries go through the
    pool instead (``[delivery] servers``, see :mod:`digest.transport.pool`).
    """
    return SMTPTransport(smtp_config(settings))


def _code_of(reply: str) -> int | None:
    m = re.match(r"\s*(\d{3})", reply)
    return int(m.group(1)) if m else None


def is_throttling(code: int, text: str) -> bool:
    """Is this reply a relay asking the client to slow down (not a failure of the recipient)?

    Amazon SES "454 4.7.0 Throttling failure", Gmail "421 4.7.28 ... unusual rate",
    "451 4.7.1" (rate or reputation limit, try later), and any 421/451/454 that says
    throttling or rate limit.
    """
    t = text.lstrip().lower()
    if code == 421 and t.startswith("4.7.28"):
        return True
    if code == 451 and re.match(r"4\.7\.1\b", t):
        return True
    return code in (421, 451, 454) and ("throttl" in t or "rate limit" in t)


def classify(code: int, text: str) -> TemporaryFailure | PermanentFailure:
    """5xx is permanent; 4xx (and anything unintelligible) temporary (RFC 5321 section 4.2.1)."""
    reply = f"{code} {text}".strip()
    if 400 <= code < 500 or not 500 <= code < 600:
        return TemporaryFailure(reply, code, throttled=is_throttling(code, text))
    return PermanentFailure(reply, code)


class SMTPTransport:
    """One persistent SMTP connection, opened lazily and reused for many messages.

    Connection set-up (EHLO, STARTTLS, AUTH) is smtplib's; the per-message
    transaction is our own, because smtplib's costs more than the network does on a
    fast link: it dot-stuffs with a regular expression (40% of its time on a 30 KB
    message) and waits for each reply before sending the next command. Here
    dot-stuffing is one ``bytes.replace`` and, when the server offers PIPELINING
    (RFC 2920), MAIL, RCPT and DATA go out in one packet: two round trips a message
    instead of four.

    ``max_messages`` closes the connection after that many messages (some servers
    limit messages per connection); a connection the server has dropped meanwhile is
    noticed before the message is handed over and replaced once, transparently.
    """

    def __init__(self, config: SMTPConfig, *, max_messages: int = 0) -> None:
        self.config = config
        self.max_messages = max_messages
        self._smtp: smtplib.SMTP | None = None
        self._on_connection = 0
        self.connections_opened = 0
        self.messages_sent = 0

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = ssl.create_default_context(cafile=c.cafile)
        if not c.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            smtp: smtplib.SMTP
            if c.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    c.host, c.port, timeout=c.timeout, context=context, local_hostname=c.local_hostname
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout, local_hostname=c.local_hostname)
            if smtp.sock is None:  # smtplib connects in the constructor when given a host
                raise OSError("no socket after connecting")
            # smtplib never sets TCP_NODELAY: on a reused connection Nagle's algorithm
            # then stalls every message for ~40 ms waiting for a delayed ACK.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if c.starttls and not c.implicit_tls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password or "")
        # A session that cannot be set up is the server's (or our configuration's)
        # problem, never the recipient's: connection-level, so the circuit breaker
        # pauses the server instead of every subscriber collecting a bounce.
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(
                f"SMTP authentication failed at {c.host}:{c.port}", exc.smtp_code, connection_level=True
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise TemporaryFailure(f"{c.host}:{c.port}: {exc}", connection_level=True) from None
        except smtplib.SMTPResponseException as exc:
            raise TemporaryFailure(
                f"{c.host}:{c.port} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}",
                exc.smtp_code,
                connection_level=True,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot connect to {c.host}:{c.port}: {type(exc).__name__}: {exc}", connection_level=True
            ) from None
        self.connections_opened += 1
        self._on_connection = 0
        return smtp

    def send(self, envelope_from: str, recipient: str, message: bytes) -> str:
        """Send one message; raise TemporaryFailure or PermanentFailure for this recipient."""
        while True:
            if self._smtp is not None and self.max_messages and self._on_connection >= self.max_messages:
                self.close()
            if self._smtp is None:
                self._smtp = self._connect()
            reused = self._on_connection > 0
            try:
                answer = self._transaction(self._smtp, envelope_from, recipient, message)
            except _NotHandedOver as exc:
                # The server closed an idle connection (its per-connection limit, or
                # 421 before DATA): nothing was delivered, so one fresh connection may
                # take the message now. A fresh one is not reused: the loop ends there.
                self._drop()
                if reused:
                    continue
                raise TemporaryFailure(str(exc), exc.code, connection_level=True) from None
            self._on_connection += 1
            self.messages_sent += 1
            return answer

    def _transaction(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str, message: bytes) -> str:
        sock = self._envelope(smtp, envelope_from, recipient)
        return self._data(smtp, sock, message)

    def _envelope(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str) -> socket.socket:
        """MAIL, RCPT and DATA (pipelined when offered); the socket, ready for the message data."""
        utf8 = not (envelope_from.isascii() and recipient.isascii())
        if utf8 and not smtp.has_extn("smtputf8"):
            raise PermanentFailure(f"{recipient}: non-ASCII address and the server does not offer SMTPUTF8", 553)
        enc = "utf-8" if utf8 else "ascii"
        mail = b"MAIL FROM:<" + envelope_from.encode(enc) + (b"> SMTPUTF8\r\n" if utf8 else b">\r\n")
        commands = (mail, b"RCPT TO:<" + recipient.encode(enc) + b">\r\n", b"DATA\r\n")
        replies: list[tuple[int, bytes]] = []
        sock = smtp.sock
        if sock is None:
            raise _NotHandedOver("connection closed")
        try:
            if smtp.has_extn("pipelining"):
                sock.sendall(b"".join(commands))
                replies = [smtp.getreply() for _ in commands]
            else:
                for cmd in commands:
                    sock.sendall(cmd)
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in (250, 251, 354):
                        break
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _NotHandedOver(f"connection lost before DATA: {type(exc).__name__}: {exc}") from None
        for code, text in replies:
            if code == 421:
                raise _NotHandedOver(f"421 {_text(text)}", 421)
        bad = next(((c, t) for c, t in replies if c not in (250, 251, 354)), None)
        if bad is not None:
            if replies[-1][0] == 354:
                # A server that accepted DATA after refusing the envelope cannot be
                # put back in a known state: drop it rather than send an empty message.
                self._drop()
            else:
                self._reset(smtp)
            raise classify(bad[0], _text(bad[1]))
        return sock

    def _data(self, smtp: smtplib.SMTP, sock: socket.socket, message: bytes) -> str:
        """The message data, dot-stuffed, and the server's answer to it."""
        body = message.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            sock.sendall(body + b".\r\n")
        except OSError as exc:
            # The terminating dot never left: the server cannot have accepted it.
            self._drop()
            raise TemporaryFailure(
                f"connection lost during DATA: {type(exc).__name__}: {exc}", connection_level=True
            ) from None
        try:
            code, text = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The message may or may not have been accepted: it is retried later,
            # which is the one duplicate SMTP cannot rule out.
            self._drop()
            raise TemporaryFailure(
                f"connection lost after DATA: {type(exc).__name__}: {exc}", connection_level=True, maybe_delivered=True
            ) from None
        if code != 250:
            if code == 421:
                self._drop()
                raise TemporaryFailure(f"421 {_text(text)}", 421, connection_level=True)
            raise classify(code, _text(text))
        return f"{code} {_text(text)}"

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        """Say QUIT politely; the connection is gone either way."""
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NotHandedOver(Exception):
    """The connection failed before the message data was sent: nothing was delivered."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass
class MemoryTransport:
    """Keeps every message in memory: dry-run and preview."""

    messages: list[tuple[str, str, bytes]] = field(default_factory=list)

    def send(self, envelope_from: str, recipient: str, message: bytes) -> str:
        self.messages.append((envelope_from, recipient, message))
        return "250 kept in memory"

    def close(self) -> None:
        pass


class FileTransport:
    """Writes each message to ``DIR/NNNN-recipient.eml``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def send(self, envelope_from: str, recipient: str, message: bytes) -> str:
        safe = re.sub(r"[^A-Za-z0-9@._-]", "_", recipient)
        path = self.directory / f"{len(self.written) + 1:04d}-{safe}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(message)
        tmp.replace(path)  # never leave a half-written .eml behind
        self.written.append(path)
        return f"250 written to {path}"

    def close(self) -> None:
        pass
