"""One SMTP client connection on asyncio streams: the delivery engine's connection.

Many of these share one event-loop thread (:class:`digest.transport.pool.Dispatcher`),
so a process keeps dozens of connections busy without a thread each. The protocol
is our own (RFC 5321 client side): EHLO, STARTTLS, AUTH PLAIN/LOGIN, SMTPUTF8,
RFC 2920 pipelining of MAIL/RCPT/DATA and, where PIPELINING is offered, the next
message's MAIL/RCPT/DATA sent right behind this message's terminating dot. A
message then costs one round trip: its data, dot and the next envelope go out
together, and the replies to the dot and to the next envelope come back together.

The next message's *data* is only written by the next :meth:`AsyncSMTP.send`, which
the caller makes after it has noted the 250 of this one (the journal): an envelope
sent ahead delivers nothing, so a kill -9 still costs at most one duplicate per
connection.

Failures are classified exactly as :class:`digest.transport.smtp.SMTPTransport`
does: 4xx temporary, 5xx permanent, connection-level for the server's own
failures, ``maybe_delivered`` when the connection dies after the dot, and a
reused connection that fails before the data retries once on a fresh one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import socket
import ssl

from digest.core.errors import PermanentFailure, TemporaryFailure
from digest.transport.smtp import SMTPConfig, classify, is_throttling

_FQDN: str | None = None


def _local_name() -> str:
    global _FQDN  # noqa: PLW0603 - computed once: getfqdn may ask DNS
    if _FQDN is None:
        _FQDN = socket.getfqdn()
    return _FQDN


class ConnectFailure(TemporaryFailure):
    """The session could not be set up; ``refused`` when the server turned the connection away.

    Refused means a refused TCP connect or a 421 greeting: with other connections
    to the same server alive that is "too many connections", a reason to use fewer,
    not an outage.
    """

    def __init__(
        self, message: str, code: int | None = None, *, refused: bool = False, throttled: bool = False
    ) -> None:
        super().__init__(message, code, connection_level=True, throttled=throttled)
        self.refused = refused


class _NotHandedOver(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def envelope(envelope_from: str, recipient: str, utf8: bool) -> bytes:
    """MAIL, RCPT and DATA of one message, as one block of bytes."""
    enc = "utf-8" if utf8 else "ascii"
    mail = b"MAIL FROM:<" + envelope_from.encode(enc) + (b"> SMTPUTF8\r\n" if utf8 else b">\r\n")
    return mail + b"RCPT TO:<" + recipient.encode(enc) + b">\r\nDATA\r\n"


def dot_stuffed(message: bytes, no_leading_dots: bool = False) -> bytes:
    """The message as DATA content, terminating dot included (RFC 5321 4.5.2).

    ``no_leading_dots``: the caller vouches that no line starts with a dot (a digest
    copy: :meth:`digest.compose.message.PreparedMessage.fill`), which spares the search
    through the whole message, ~60 us for a 43 KB digest.
    """
    # Looked for before replacing: mostly there is none, and a search copies nothing.
    stuff = not no_leading_dots and b"\n." in message
    body = message.replace(b"\r\n.", b"\r\n..") if stuff else message
    if body.startswith(b"."):
        body = b"." + body
    return body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n")


class AsyncSMTP:
    """One persistent SMTP connection, opened lazily, reused for many messages."""

    def __init__(self, config: SMTPConfig, *, max_messages: int = 0) -> None:
        self.config = config
        self.max_messages = max_messages
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self._on_connection = 0
        # The envelope written behind the previous message's dot whose replies are unread.
        self.ahead: tuple[str, str] | None = None
        self.connections_opened = 0
        self.messages_sent = 0

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    def can_pipeline_next(self) -> bool:
        """Would a next envelope sent behind this message's dot be used on this connection?"""
        if not self.is_open or not self.pipelining:
            return False
        return not (self.max_messages and self._on_connection + 1 >= self.max_messages)

    # ------------------------------------------------------------ the wire

    async def _reply(self) -> tuple[int, str]:
        async with asyncio.timeout(self.config.timeout):
            return await self._read_reply()

    async def _replies(self, n: int) -> list[tuple[int, str]]:
        """``n`` pipelined replies within one timeout: the server sends them together (RFC 2920
        section 3.2), and a timer per reply cost more than the rest of reading them."""
        async with asyncio.timeout(self.config.timeout):
            return [await self._read_reply() for _ in range(n)]

    async def _read_reply(self) -> tuple[int, str]:
        reader = self._reader
        if reader is None:
            raise ConnectionResetError(errno.ECONNRESET, "connection closed")
        lines: list[str] = []
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionResetError(errno.ECONNRESET, "connection closed by the server")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                break
        try:
            code = int(line[:3])
        except ValueError:
            code = 0  # unintelligible: classify() makes it temporary
        return code, "\n".join(lines)

    async def _command(self, line: bytes) -> tuple[int, str]:
        assert self._writer is not None
        self._writer.write(line + b"\r\n")
        return await self._reply()

    # ------------------------------------------------------------ the session

    def _context(self) -> ssl.SSLContext:
        c = self.config
        context = ssl.create_default_context(cafile=c.cafile)
        if not c.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def connect(self) -> None:
        """Open the session: greeting, EHLO, STARTTLS, AUTH. Raises :class:`ConnectFailure`."""
        c = self.config
        where = f"{c.host}:{c.port}"
        try:
            async with asyncio.timeout(c.timeout):
                if c.implicit_tls:
                    self._reader, self._writer = await asyncio.open_connection(
                        c.host, c.port, ssl=self._context(), server_hostname=c.host
                    )
                else:
                    self._reader, self._writer = await asyncio.open_connection(c.host, c.port)
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                # Without it Nagle's algorithm holds each command back for a delayed ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code, text = await self._reply()
            if code != 220:
                raise ConnectFailure(
                    f"{where} refused the session: {code} {text}",
                    code,
                    refused=code == 421,
                    throttled=is_throttling(code, text),
                )
            await self._ehlo(where)
            if c.starttls and not c.implicit_tls:
                if "STARTTLS" not in self.extensions:
                    raise ConnectFailure(f"{where}: STARTTLS extension not supported by server.")
                code, text = await self._command(b"STARTTLS")
                if code != 220:
                    raise ConnectFailure(f"{where} refused STARTTLS: {code} {text}", code)
                await self._writer.start_tls(self._context(), server_hostname=c.host)
                await self._ehlo(where)
            if c.username:
                await self._login(where)
        except ConnectFailure:
            self.drop()
            raise
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.drop()
            refused = isinstance(exc, ConnectionRefusedError)
            raise ConnectFailure(f"cannot connect to {where}: {type(exc).__name__}: {exc}", refused=refused) from None
        self.connections_opened += 1
        self._on_connection = 0

    async def _ehlo(self, where: str) -> None:
        code, text = await self._command(b"EHLO " + (self.config.local_hostname or _local_name()).encode())
        self.extensions = {}
        if code != 250:
            code, text = await self._command(b"HELO " + (self.config.local_hostname or _local_name()).encode())
            if code != 250:
                raise ConnectFailure(f"{where} refused the session: {code} {text}", code)
            return
        for line in text.split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params

    async def _login(self, where: str) -> None:
        c = self.config
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        user, password = (c.username or "").encode(), (c.password or "").encode()
        if "PLAIN" in mechanisms:
            code, _ = await self._command(b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + password))
        elif "LOGIN" in mechanisms:
            code, _ = await self._command(b"AUTH LOGIN")
            if code == 334:
                code, _ = await self._command(base64.b64encode(user))
            if code == 334:
                code, _ = await self._command(base64.b64encode(password))
        else:
            raise ConnectFailure(f"{where}: SMTP AUTH extension not supported by server.")
        if code != 235:
            # Never the server's text: it may echo what we sent.
            raise ConnectFailure(f"SMTP authentication failed at {where}", code)

    # ------------------------------------------------------------ one message

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        message: bytes,
        then: tuple[str, str] | None = None,
        *,
        no_leading_dots: bool = False,
    ) -> str:
        """Send one message; raise TemporaryFailure or PermanentFailure for this recipient.

        ``then``: the envelope (sender, recipient) of the message this connection
        sends next; with PIPELINING it goes out right behind this message's dot.
        ``no_leading_dots``: no line of ``message`` starts with a dot (see :func:`dot_stuffed`).
        """
        while True:
            if self.is_open and self.max_messages and self._on_connection >= self.max_messages:
                await self.close()
            if not self.is_open:
                await self.connect()
            reused = self._on_connection > 0
            try:
                return await self._transaction(envelope_from, recipient, message, then, no_leading_dots)
            except _NotHandedOver as exc:
                # The server closed an idle connection (its per-connection limit, or 421
                # before DATA): nothing was delivered, so one fresh connection may take it.
                self.drop()
                if reused:
                    continue
                raise TemporaryFailure(str(exc), exc.code, connection_level=True) from None

    async def _transaction(
        self, envelope_from: str, recipient: str, message: bytes, then: tuple[str, str] | None, no_leading_dots: bool
    ) -> str:
        assert self._writer is not None
        utf8 = not (envelope_from.isascii() and recipient.isascii())
        if utf8 and "SMTPUTF8" not in self.extensions:
            if self.ahead is not None:
                self.drop()  # the envelope sent ahead cannot be taken back cleanly
            raise PermanentFailure(f"{recipient}: non-ASCII address and the server does not offer SMTPUTF8", 553)
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead != (envelope_from, recipient):
            # Not the message announced: start afresh rather than guess the server's state.
            self.drop()
            raise _NotHandedOver("the envelope sent ahead was for another message")
        replies: list[tuple[int, str]] = []
        try:
            if ahead is not None:
                replies = await self._replies(3)
            elif self.pipelining:
                self._writer.write(envelope(envelope_from, recipient, utf8))
                replies = await self._replies(3)
            else:
                enc = "utf-8" if utf8 else "ascii"
                mail = b"MAIL FROM:<" + envelope_from.encode(enc) + (b"> SMTPUTF8" if utf8 else b">")
                for cmd in (mail, b"RCPT TO:<" + recipient.encode(enc) + b">", b"DATA"):
                    replies.append(await self._command(cmd))
                    if replies[-1][0] not in (250, 251, 354):
                        break
        except (OSError, TimeoutError) as exc:
            why = f"{type(exc).__name__}: {str(exc) or 'timed out'}"
            raise _NotHandedOver(f"connection lost before DATA: {why}") from None
        throttled = next(((c, t) for c, t in replies if is_throttling(c, t)), None)
        if throttled is None:
            for code, text in replies:
                if code == 421:
                    raise _NotHandedOver(f"421 {text}", 421)
        bad = throttled or next(((c, t) for c, t in replies if c not in (250, 251, 354)), None)
        if bad is not None:
            if replies[-1][0] == 354 or bad[0] == 421:
                # A server that accepted DATA after refusing the envelope cannot be put
                # back in a known state: drop it rather than send an empty message.
                self.drop()
            else:
                await self._reset()
            raise classify(bad[0], bad[1])
        return await self._data(message, then, no_leading_dots)

    async def _data(self, message: bytes, then: tuple[str, str] | None, no_leading_dots: bool) -> str:
        assert self._writer is not None
        payload = dot_stuffed(message, no_leading_dots)
        following: tuple[str, str] | None = None
        if then is not None and self.can_pipeline_next():
            utf8 = not (then[0].isascii() and then[1].isascii())
            if not utf8 or "SMTPUTF8" in self.extensions:
                payload += envelope(then[0], then[1], utf8)
                following = then
        try:
            self._writer.write(payload)
            await self._writer.drain()
            code, text = await self._reply()
        except (OSError, TimeoutError) as exc:
            # The message may or may not have been accepted: it is retried later,
            # which is the one duplicate SMTP cannot rule out.
            self.drop()
            raise TemporaryFailure(
                f"connection lost after DATA: {type(exc).__name__}: {str(exc) or 'timed out'}",
                connection_level=True,
                maybe_delivered=True,
            ) from None
        self.ahead = following
        if code != 250:
            if code == 421:
                self.drop()
                raise TemporaryFailure(f"421 {text}", 421, connection_level=True, throttled=is_throttling(code, text))
            raise classify(code, text)
        self._on_connection += 1
        self.messages_sent += 1
        return f"{code} {text}"

    async def _reset(self) -> None:
        try:
            code, _ = await self._command(b"RSET")
        except (OSError, TimeoutError):
            code = 0
        if code != 250:
            self.drop()

    def drop(self) -> None:
        """Close the connection without a word (nothing half-sent can be delivered by it)."""
        writer, self._writer, self._reader = self._writer, None, None
        self.ahead = None
        self.extensions = {}
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        """Say QUIT politely; the connection is gone either way."""
        if self._writer is None:
            return
        if self.ahead is not None:
            self.drop()  # the server may be waiting for data: QUIT would be taken as message text
            return
        try:
            async with asyncio.timeout(min(self.config.timeout, 5.0)):
                await self._command(b"QUIT")
        except (OSError, TimeoutError):
            pass
        writer = self._writer
        self.drop()
        if writer is not None:
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
