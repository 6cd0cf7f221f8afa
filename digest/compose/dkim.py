"""DKIM: sign every outgoing message (RFC 6376, rsa-sha256, relaxed/relaxed; optionally ed25519-sha256 too).

dkimpy is the reference here: it parses the header block, canonicalizes and
selects the signed header fields, and it verifies in the tests. Its own signing
path does the RSA operation in pure Python (about 7 ms a message, a cap near 140
messages a second), so :class:`DkimSigner` reuses dkimpy's parsing,
canonicalization and header hashing and hands only the RSA step to the
``cryptography`` package (OpenSSL, about 0.25 ms).

The signature covers From, To, Subject, Date, Message-ID, Reply-To, List-Id,
List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 section 4 requires both List-*
fields to be signed), MIME-Version, Content-Type and Feedback-ID. Fields whose
repetition would change how a receiver treats the message are signed one extra
time ("oversigned"), so a copy added in transit breaks the signature.

With an Ed25519 key as well (RFC 8463), every message carries two signatures over
the same header fields and body hash: the rsa-sha256 one on top (a verifier that
checks only the first signature sees the RSA one), the ed25519-sha256 one below.
Receivers that do not know Ed25519 ignore that signature (RFC 6376 section 6.1.2)
and judge the RSA one, so dual signing never costs deliverability.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy, correct_empty_body, strip_trailing_lines

from digest.core.errors import ConfigError

if TYPE_CHECKING:
    from digest.core.clock import Clock
    from digest.core.settings import Settings

CRLF = b"\r\n"

SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
    "feedback-id",
)
# Signed once more than they occur: a second copy added later breaks the signature.
OVERSIGNED: tuple[str, ...] = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")

_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
# Two literal spaces first: the regex engine then finds candidates by fast literal search.
_SPACE_RUN = re.compile(rb"   *")


class Signer(Protocol):
    """Anything that signs a finished message: ``sign(message) -> message with a signature header``.

    ``body_hash``: the SHA-256 digest of the message's relaxed-canonical body, when the
    caller has it (:meth:`digest.compose.message.PreparedMessage.fill_hashed`).
    """

    def sign(self, message: bytes, body_hash: bytes | None = None) -> bytes: ...


def canonicalize_body(body: bytes) -> bytes:
    """RFC 6376 relaxed body canonicalization: the same bytes as dkimpy's ``Relaxed``, faster.

    dkimpy's expressions (``[\\t ]+\\r\\n``, then ``[\\t ]+``) take milliseconds on a
    50 KB digest: a character class at the start defeats the regex engine's literal
    search, and every lone space is matched and replaced. Here tabs become spaces,
    runs of two or more spaces (a literal prefix, found by fast search) become one,
    and a space left before a line break goes: the same result in a tenth of the time.
    """
    return correct_empty_body(strip_trailing_lines(relaxed_lines(body)))


def relaxed_lines(data: bytes) -> bytes:
    """The line-by-line part of relaxed body canonicalization: white-space runs to one space, none at line ends.

    Whole lines in, whole lines out: the canonical body of a message made of chunks
    that each start and end at a line boundary is the chunks' canonical forms joined
    (:meth:`digest.compose.message.PreparedMessage.fill_hashed` relies on it).
    """
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"  " in data:
        data = _SPACE_RUN.sub(b" ", data)
    if b" \r\n" in data:
        data = data.replace(b" \r\n", b"\r\n")
    return data


def _fold_list(names: Sequence[bytes], width: int = 70) -> bytes:
    """``a:b:c``, folded before a colon when a line would pass ``width`` (FWS is allowed there)."""
    lines: list[bytes] = []
    line = b""
    for name in names:
        if line and len(line) + len(name) + 1 > width:
            lines.append(line)
            line = b""
        line += (b":" if line or lines else b"") + name
    lines.append(line)
    return b"\r\n ".join(lines)


def _fold_b64(value: bytes, width: int = 72) -> bytes:
    return b"\r\n ".join(value[i : i + width] for i in range(0, len(value), width))


_SELECTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _load_ed25519(pem: bytes) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("dkim.ed25519_private_key_file", f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(
            "dkim.ed25519_private_key_file", "not an Ed25519 key (make one: digest dkim keygen --algorithm ed25519)"
        )
    return key


class DkimSigner:
    """Signs messages with an RSA key: ``sign(message) -> message`` with DKIM-Signature prepended.

    Given ``ed25519_selector`` and ``ed25519_private_key_pem`` as well, it prepends
    an ed25519-sha256 signature (RFC 8463) below the RSA one, both relaxed/relaxed
    over the same header fields. Messages must use CRLF line endings (as
    ``PreparedMessage.fill`` makes them). The Feedback-ID header ``PreparedMessage``
    writes is among the signed ones.
    """

    def __init__(
        self,
        selector: str,
        domain: str,
        private_key_pem: bytes,
        *,
        clock: Clock | None = None,
        headers: Sequence[str] = SIGNED_HEADERS,
        oversigned: Sequence[str] = OVERSIGNED,
        ed25519_selector: str | None = None,
        ed25519_private_key_pem: bytes | None = None,
    ) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError("dkim.private_key_file", f"not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("dkim.private_key_file", "only RSA keys are supported (rsa-sha256)")
        if key.key_size < 1024:
            raise ConfigError("dkim.private_key_file", f"RSA key of {key.key_size} bits is too short (use 2048)")
        if not _SELECTOR.fullmatch(selector):
            raise ConfigError("dkim.selector", f"not a valid selector: {selector!r}")
        if (ed25519_selector is None) != (ed25519_private_key_pem is None):
            raise ConfigError("dkim.ed25519_selector", "give ed25519_selector and ed25519_private_key_file together")
        self._ed_key: ed25519.Ed25519PrivateKey | None = None
        self.ed25519_selector: bytes | None = None
        self.ed25519_private_key_pem = ed25519_private_key_pem
        if ed25519_selector is not None and ed25519_private_key_pem is not None:
            if not _SELECTOR.fullmatch(ed25519_selector):
                raise ConfigError("dkim.ed25519_selector", f"not a valid selector: {ed25519_selector!r}")
            if ed25519_selector == selector:
                # One TXT record cannot hold two keys: each algorithm needs its own selector.
                raise ConfigError("dkim.ed25519_selector", "must differ from dkim.selector")
            self._ed_key = _load_ed25519(ed25519_private_key_pem)
            self.ed25519_selector = ed25519_selector.encode("ascii")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9-]+", domain):
            raise ConfigError("dkim.domain", f"not a domain name: {domain!r}")
        self.selector = selector.encode("ascii")
        self.domain = domain.lower().encode("ascii")
        self.private_key_pem = private_key_pem
        self._key = key
        self._clock = clock
        self._headers = tuple(h.lower().encode("ascii") for h in headers)
        self._oversigned = tuple(h.lower().encode("ascii") for h in oversigned)
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, object]:
        # Worker processes get the signer by pickling: the key object and the thread
        # pool cannot travel, the PEM can (the process boundary stays on this host).
        state = self.__dict__.copy()
        state["_key"] = None
        state["_pool"] = None
        state["_ed_key"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._key = serialization.load_pem_private_key(self.private_key_pem, password=None)  # type: ignore[assignment]
        if self.ed25519_private_key_pem is not None:
            self._ed_key = _load_ed25519(self.ed25519_private_key_pem)

    def _timestamp(self) -> int:
        return int(self._clock.now().timestamp()) if self._clock is not None else int(time.time())

    def sign(self, message: bytes, body_hash: bytes | None = None) -> bytes:
        """Return ``message`` with a ``DKIM-Signature`` header field prepended.

        ``body_hash`` (see :class:`Signer`) spares canonicalizing the 40 KB body, the
        costliest step after the RSA operation.
        """
        message, digest, tags = self._prepare(message, body_hash)
        return self._assemble(message, tags, self._rsa(digest))

    def sign_stream(self, messages: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
        """Sign ``messages`` in order, the RSA step of up to ``depth`` of them in a worker thread.

        ``cryptography`` releases the GIL while it signs, so the RSA work of the
        next messages runs on another core while the caller sends the current one:
        a send loop that consumes this stream barely waits for signing.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dkim")
        pending: deque[tuple[bytes, bytes, Future[bytes]]] = deque()
        it = iter(messages)
        exhausted = False
        while True:
            while not exhausted and len(pending) < depth:
                try:
                    message, digest, tags = self._prepare(next(it))
                except StopIteration:
                    exhausted = True
                    break
                pending.append((message, tags, self._pool.submit(self._rsa, digest)))
            if not pending:
                return
            message, tags, future = pending.popleft()
            yield self._assemble(message, tags, future.result())

    def close(self) -> None:
        """Stop the worker thread of :meth:`sign_stream`, if it was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _prepare(self, message: bytes, body_hash: bytes | None = None) -> tuple[bytes, bytes, bytes]:
        """Everything but the RSA step: ``(message, digest to sign, header value up to b=)``.

        With an Ed25519 key the returned message already carries the ed25519-sha256
        signature: it costs about a twentieth of the RSA step, not worth a thread.
        """
        split = message.find(b"\r\n\r\n")
        if split < 0:
            raise ValueError("message has no header/body separator (CRLF CRLF)")
        # Parse only the header block: dkimpy's parser splits every line of its input.
        headers, _ = dkim.rfc822_parse(message[: split + 2] + CRLF)
        if body_hash is None:
            body_hash = hashlib.sha256(canonicalize_body(message[split + 4 :])).digest()
        bh = base64.b64encode(body_hash)
        present = {name.lower() for name, _ in headers}
        include = [h for h in self._headers if h in present]
        include += [h for h in self._oversigned if h in present]
        canonical = _RELAXED.canonicalize_headers(headers)
        now = str(self._timestamp()).encode("ascii")
        h = _fold_list(include)
        tags = self._tags(b"rsa-sha256", self.selector, now, h, bh)
        if self._ed_key is not None and self.ed25519_selector is not None:
            ed_tags = self._tags(b"ed25519-sha256", self.ed25519_selector, now, h, bh)
            # RFC 8463 section 3: Ed25519 signs the SHA-256 hash of the canonicalized headers.
            ed_sig = self._ed_key.sign(_header_digest(canonical, include, ed_tags))
            message = self._assemble(message, ed_tags, ed_sig)
        return message, _header_digest(canonical, include, tags), tags

    def _tags(self, algorithm: bytes, selector: bytes, now: bytes, h: bytes, bh: bytes) -> bytes:
        return (
            b"v=1; a=" + algorithm + b"; c=relaxed/relaxed; d=" + self.domain + b";\r\n s=" + selector
            + b"; t=" + now + b";\r\n h=" + h + b";\r\n bh=" + bh + b";\r\n b="
        )  # fmt: skip

    def _rsa(self, digest: bytes) -> bytes:
        return self._key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))

    @staticmethod
    def _assemble(message: bytes, tags: bytes, signature: bytes) -> bytes:
        return b"DKIM-Signature: " + tags + _fold_b64(base64.b64encode(signature)) + CRLF + message


def _header_digest(canonical: list[tuple[bytes, bytes]], include: list[bytes], tags: bytes) -> bytes:
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, _RELAXED, canonical, include, (b"DKIM-Signature", b" " + tags), None)
    return hasher.digest()


def _read_key(setting: str, key_file: str) -> bytes:
    path = Path(key_file)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None


def signer_from_settings(settings: Settings, clock: Clock | None = None) -> DkimSigner | None:
    """The signer ``[dkim]`` describes, or None when signing is not configured."""
    cfg = settings.dkim
    selector, domain, key_file = cfg.selector, cfg.domain, cfg.private_key_file
    if not (selector and domain and key_file):  # the same test as ``cfg.enabled``, spelt out for the types
        return None
    pem = _read_key("dkim.private_key_file", key_file)
    ed_pem = (
        _read_key("dkim.ed25519_private_key_file", cfg.ed25519_private_key_file)
        if cfg.ed25519_private_key_file
        else None
    )
    return DkimSigner(
        selector, domain, pem, clock=clock, ed25519_selector=cfg.ed25519_selector, ed25519_private_key_pem=ed_pem
    )


# ---------------------------------------------------------------- keys and DNS


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes
    public_b64: str  # the p= value (see public_key_b64)
    algorithm: str = "rsa"  # the k= value: rsa or ed25519

    def txt_value(self) -> str:
        """The TXT record's content."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_b64}"


def generate_key(bits: int = 2048, algorithm: str = "rsa") -> KeyPair:
    """A new DKIM key pair: RSA of ``bits`` bits, or Ed25519 (RFC 8463) with ``algorithm="ed25519"``."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r} (rsa or ed25519)")
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem, public_pem, public_key_b64(private_pem), algorithm)


def public_key_b64(private_pem: bytes) -> str:
    """The p= value of the public half of ``private_pem``.

    RSA: base64 of the DER SubjectPublicKeyInfo (RFC 6376). Ed25519: base64 of the
    raw 32-byte public key, not wrapped in a SubjectPublicKeyInfo (RFC 8463 section 4.2).
    """
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def dns_record(selector: str, domain: str, txt_value: str, ttl: int = 3600) -> str:
    """A zone-file line publishing the key; strings split at 255 characters (RFC 1035)."""
    chunks = [txt_value[i : i + 255] for i in range(0, len(txt_value), 255)]
    quoted = "\n    ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain}. {ttl} IN TXT (\n    {quoted} )"


def static_dns(records: dict[str, str]) -> object:
    """A dkimpy ``dnsfunc`` answering TXT queries from ``records`` (name -> value); for tests and checks."""

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        value = records.get(key)
        return value.encode("ascii") if value is not None else None

    return lookup


def verify(message: bytes, dnsfunc: object) -> bool:
    """dkimpy's verdict on the first (topmost) signature of ``message``, TXT lookups answered by ``dnsfunc``."""
    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def verify_each(message: bytes, dnsfunc: object) -> dict[str, bool]:
    """dkimpy's verdict on every DKIM signature of ``message``, by its a= tag (e.g. ``ed25519-sha256``).

    Verifying ed25519-sha256 needs PyNaCl (dkimpy's optional dependency).
    """
    checker = dkim.DKIM(message)
    verdicts: dict[str, bool] = {}
    for idx, (_name, value) in enumerate(h for h in checker.headers if h[0].lower() == b"dkim-signature"):
        tags = dkim.util.parse_tag_value(value)
        try:
            ok = bool(checker.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            ok = False
        verdicts[tags[b"a"].decode("ascii")] = ok
    return verdicts
