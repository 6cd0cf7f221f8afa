"""Message: prepared MIME bytes per content variant, filled per recipient.

Everything common to a variant (headers, MIME structure, the inlined HTML and the
text, split around the personal-field markers) is built once in
:class:`PreparedMessage`. ``fill`` then only joins strings, escapes the personal
values and quoted-printable-encodes the two parts (``binascii``, in C): the Python
``email`` package stays off the per-recipient path, where it would cost
milliseconds a message.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from digest.compose.dkim import relaxed_lines
from digest.compose.render import GREETINGS, PERSONAL_FIELDS, Rendered
from digest.core.errors import ConfigError
from digest.core.text import one_line

CRLF = b"\r\n"
# The line before the first part (RFC 2046 5.1.1), the first line of the body.
_PREAMBLE = b"This is a multi-part message in MIME format.\r\n"


@dataclass(frozen=True)
class Recipient:
    """One addressee and the personal values filled into their copy."""

    email: str
    name: str
    subscriber_id: int | None
    unsubscribe_url: str
    preferences_url: str
    unsubscribe_mailto: str
    # ``b-ID-SIG`` (digest.core.tokens.verp_tag): the signed VERP tag of this subscriber's
    # return path; empty for non-subscribers or with VERP off.
    bounce_tag: str = ""

    def greeting(self, greetings: tuple[str, str] = GREETINGS) -> str:
        """``greetings`` (with a first name, without) in the copy's language, filled for this reader."""
        first = self.name.split()[0] if self.name.split() else ""
        return greetings[0] % {"name": first} if first else greetings[1]

    def values(self, greetings: tuple[str, str] = GREETINGS) -> dict[str, str]:
        return {
            "greeting": self.greeting(greetings),
            "name": self.name,
            "email": self.email,
            "unsubscribe_url": self.unsubscribe_url,
            "preferences_url": self.preferences_url,
        }


def address_domain(addr: str) -> str:
    return parseaddr(addr)[1].rpartition("@")[2] or "localhost"


def encode_header(name: str, value: str) -> bytes:
    """``Name: value`` as folded ASCII bytes (RFC 2047 where needed), CRLF-terminated."""
    if value.isascii() and value.isprintable() and len(name) + len(value) < 76:
        # The common case (a short ASCII To:), without the email package: it costs
        # ~60 us a header, a third of filling a whole message.
        return f"{name}: {' '.join(value.split())}\r\n".encode("ascii")
    value = one_line(value)
    try:
        value.encode("ascii")
        charset = "us-ascii"
    except UnicodeEncodeError:
        charset = "utf-8"
    folded = Header(value, charset, header_name=name, maxlinelen=78).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode("ascii")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9 ]*")


def format_address(name: str, addr: str) -> str:
    """An address with display name, RFC 2047-encoded when not ASCII."""
    if _PLAIN_NAME.fullmatch(name) and addr.isascii():
        # What formataddr gives for a name of letters, digits and spaces, at a tenth of the cost.
        name = " ".join(name.split())
        return f"{name} <{addr}>" if name else addr
    return formataddr((one_line(name), addr), charset="utf-8")


@functools.lru_cache(maxsize=4)
def _date_header(date: datetime) -> bytes:
    # Many messages share a second (and a fixed clock shares all): format it once.
    return f"Date: {format_datetime(date)}\r\n".encode("ascii")


def feedback_id(digest: str, edition: str, list_id: str, sender_id: str) -> str:
    """``digest:edition:list-id:sender-id``, the Feedback-ID of Gmail's feedback loop.

    Gmail splits the value at colons and reports complaint rates per field, so each
    field is reduced to letters, digits, dots and dashes (the List-Id to its
    ``<...>`` part).
    """
    inner = parseaddr(list_id)[1] or list_id
    return ":".join(re.sub(r"[^A-Za-z0-9.-]+", "-", f).strip("-") or "-" for f in (digest, edition, inner, sender_id))


def message_id(digest: str, slot: str, subscriber_id: int | None, domain: str) -> str:
    """Deterministic per (edition, subscriber): a duplicate send is recognisable."""
    who = f"s{subscriber_id}" if subscriber_id is not None else f"test-{secrets.token_hex(6)}"
    slot_part = re.sub(r"[^A-Za-z0-9.-]", "-", slot)
    digest_part = re.sub(r"[^A-Za-z0-9.-]", "-", digest)
    return f"<{digest_part}.{slot_part}.{who}@{domain}>"


class _Filler:
    """A text split around markers: ``fill`` joins it with escaped personal values."""

    def __init__(self, text: str, markers: dict[str, str], escape: bool) -> None:
        by_marker = {m: name for name, m in markers.items()}
        pattern = re.compile("|".join(re.escape(m) for m in by_marker))
        self.parts: list[str] = []
        self.fields: list[str] = []
        pos = 0
        for m in pattern.finditer(text):
            self.parts.append(text[pos : m.start()])
            self.fields.append(by_marker[m.group(0)])
            pos = m.end()
        self.parts.append(text[pos:])
        self.escape = escape
        # The static parts, quoted-printable encoded once: b2a_qp costs ~17 us a KB,
        # 0.6 ms for a digest's HTML, too much to repeat for every recipient.
        self.qp_parts = [_qp_chunk(part) for part in self.parts]

    def fill(self, values: dict[str, str]) -> str:
        esc = html.escape if self.escape else (lambda s: s)
        out = [self.parts[0]]
        for name, part in zip(self.fields, self.parts[1:], strict=True):
            out.append(esc(values[name]))
            out.append(part)
        return "".join(out)

    def qp_chunks(self, values: dict[str, str]) -> list[bytes]:
        """The text quoted-printable encoded, in chunks: static and personal in turn, static first and last.

        Only the personal values are encoded here (the static parts were encoded once).
        Every chunk is encoded from column 0 and ends with a line break (a soft one,
        ``=CRLF``, which decoding removes), so lines stay within 76 characters and the
        decoded text is exactly the filled text.
        """
        esc = html.escape if self.escape else (lambda s: s)
        out = [self.qp_parts[0]]
        for name, part in zip(self.fields, self.qp_parts[1:], strict=True):
            out.append(_qp_chunk(esc(values[name])))
            out.append(part)
        return out

    @functools.cached_property
    def relaxed_parts(self) -> list[bytes]:
        """The static chunks in relaxed canonical form (DKIM), made once for every copy."""
        return [relaxed_lines(part) for part in self.qp_parts]

    def hash_relaxed(self, h: hashlib._Hash, chunks: list[bytes]) -> None:
        """Feed ``chunks`` (from :meth:`qp_chunks`) to ``h`` in relaxed canonical form."""
        for i, chunk in enumerate(chunks):
            h.update(self.relaxed_parts[i // 2] if i % 2 == 0 else relaxed_lines(chunk))


def _qp(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    return _no_leading_dots(binascii.b2a_qp(body.encode("utf-8"), istext=True).replace(b"\n", CRLF))


def _no_leading_dots(encoded: bytes) -> bytes:
    """``encoded`` (quoted-printable, CRLF lines) with each line-leading ``.`` written ``=2E``.

    RFC 2049 (section 3, rule 8) recommends it: no line of the body then starts with a
    dot, so SMTP has nothing to dot-stuff and the sender skips searching 40 KB a message
    for one (the costliest step of sending it). A line the two extra characters would
    take past 76 is broken with a soft line break.
    """
    if not encoded.startswith(b".") and b"\n." not in encoded:
        return encoded
    out: list[bytes] = []
    for line in encoded.split(CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= 76:
                break
            cut = 75  # 75 characters and the soft break's "=", without splitting an =XX escape
            while b"=" in line[cut - 2 : cut]:
                cut -= 1
            out.append(line[:cut] + b"=")
            line = line[cut:]
        out.append(line)
    return CRLF.join(out)


def _qp_chunk(text: str) -> bytes:
    """``text`` quoted-printable encoded (CRLF line ends), ending at column 0."""
    if not text:
        return b""
    encoded = _qp(text)
    return encoded if encoded.endswith(CRLF) else encoded + b"=" + CRLF


class PreparedMessage:
    """One content variant of one edition, ready to be filled per recipient."""

    def __init__(
        self,
        rendered: Rendered,
        *,
        inlined_html: str,
        from_addr: str,
        reply_to: str | None,
        list_id: str,
        digest: str,
        slot: str,
        feedback_id: str | None = None,
    ) -> None:
        name, addr = parseaddr(from_addr)
        if "@" not in addr:
            raise ConfigError("from_addr", "not an email address")
        self.envelope_from = addr
        self.domain = addr.rpartition("@")[2]
        self.digest = digest
        self.slot = slot
        self.subject = rendered.subject
        self.html = inlined_html
        self.text = rendered.text
        self.greetings = rendered.greetings
        markers = {f: rendered.markers.marker(f) for f in PERSONAL_FIELDS}
        self._html = _Filler(inlined_html, markers, escape=True)
        self._text = _Filler(rendered.text, markers, escape=False)
        self.boundary = f"==digest-{secrets.token_hex(12)}=="
        head = [
            encode_header("From", format_address(name, addr)),
            encode_header("Subject", rendered.subject),
        ]
        if reply_to:
            head.append(encode_header("Reply-To", reply_to))
        if feedback_id:
            head.append(encode_header("Feedback-ID", feedback_id))
        head += [
            encode_header("List-Id", list_id),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'.encode(),
        ]
        self._head = b"".join(head)
        b = self.boundary.encode()
        part_head = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self._open_text = b"\r\n--" + b + b"\r\n" + part_head % b"plain"
        self._open_html = b"\r\n--" + b + b"\r\n" + part_head % b"html"
        self._close = b"\r\n--" + b + b"--\r\n"
        # The body's static chunks in relaxed canonical form, for fill_hashed.
        self._relaxed_open_text = relaxed_lines(_PREAMBLE + self._open_text)
        self._relaxed_open_html = relaxed_lines(self._open_html)
        self._relaxed_close = relaxed_lines(self._close)

    def filled_html(self, recipient: Recipient) -> str:
        """The HTML part as ``recipient`` sees it (for checks and previews)."""
        return self._html.fill(recipient.values(self.greetings))

    def message_id(self, recipient: Recipient) -> str:
        return message_id(self.digest, self.slot, recipient.subscriber_id, self.domain)

    def envelope_from_for(self, recipient: Recipient) -> str:
        """The SMTP MAIL FROM of ``recipient``'s copy: ``local+TAG@domain`` with a VERP tag.

        A bounce comes back to this address, so it names the subscriber it is about,
        signed; with a ``+`` recipient delimiter it lands in the same mailbox as
        ``from_addr`` does.
        """
        if not recipient.bounce_tag:
            return self.envelope_from
        local, _, domain = self.envelope_from.rpartition("@")
        return f"{local}+{recipient.bounce_tag}@{domain}"

    def fill(self, recipient: Recipient, date: datetime, msgid: str | None = None) -> bytes:
        """The complete RFC 5322 message for ``recipient`` (CRLF line endings).

        No line of it starts with a dot (header lines start with a name or folding
        white space, body lines are quoted-printable with leading dots as ``=2E``): it
        goes to SMTP as it is (``AsyncSMTP.send(..., no_leading_dots=True)``).
        """
        return self._fill(recipient, date, msgid, hashed=False)[0]

    def fill_hashed(self, recipient: Recipient, date: datetime, msgid: str | None = None) -> tuple[bytes, bytes]:
        """:meth:`fill`, and the SHA-256 digest of the message's relaxed-canonical body (DKIM's ``bh=``).

        Every chunk of the body starts and ends at a line boundary, so its canonical
        form is the chunks' canonical forms joined: the static ones are canonicalized
        once (:attr:`_Filler.relaxed_parts`), and per copy only the personal values,
        instead of 40 KB a message. The last chunk, the closing boundary, ends in a
        line that is not empty: no trailing empty line is left to strip.
        """
        data, digest = self._fill(recipient, date, msgid, hashed=True)
        assert digest is not None
        return data, digest

    def _fill(
        self, recipient: Recipient, date: datetime, msgid: str | None, hashed: bool
    ) -> tuple[bytes, bytes | None]:
        values = recipient.values(self.greetings)
        msgid = msgid or self.message_id(recipient)
        unsub = f"<{recipient.unsubscribe_url}>,\r\n <{recipient.unsubscribe_mailto}>"
        text = self._text.qp_chunks(values)
        html_ = self._html.qp_chunks(values)
        data = b"".join(
            (
                encode_header("To", format_address(recipient.name, recipient.email)),
                _date_header(date.replace(microsecond=0)),
                f"Message-ID: {msgid}\r\n".encode("ascii"),
                b"List-Unsubscribe: " + unsub.encode("ascii") + CRLF,
                self._head,
                b"\r\n",
                _PREAMBLE,
                self._open_text,
                *text,
                self._open_html,
                *html_,
                self._close,
            )
        )
        if not hashed:
            return data, None
        h = hashlib.sha256(self._relaxed_open_text)
        self._text.hash_relaxed(h, text)
        h.update(self._relaxed_open_html)
        self._html.hash_relaxed(h, html_)
        h.update(self._relaxed_close)
        return data, h.digest()
