"""Signed, purpose-scoped subscriber tokens (itsdangerous).

A token carries its purpose (as the signing salt), the subscriber id and a short
hash of the subscriber's address, so it can be neither forged, nor used for another
purpose, nor for another subscriber (even one that later reuses a deleted row id).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from digest.errors import DigestError

PURPOSES = ("unsubscribe", "preferences", "confirm")
# Only these carry a timestamp and can expire. Unsubscribe and preference links must
# work for as long as the mail sits in an inbox, and without a timestamp they are
# deterministic: a preview shows the very links the subscriber will get.
TIMED = frozenset({"confirm"})


class TokenError(DigestError):
    """A token is malformed, forged, for another purpose, or expired."""


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose "now" is given (an injected clock), not time.time()."""

    now: datetime | None = None

    def get_timestamp(self) -> int:
        return int(self.now.timestamp()) if self.now is not None else super().get_timestamp()


def timed_serializer(secret_key: str, salt: str, now: datetime | None = None) -> URLSafeTimedSerializer:
    """A URL-safe timed serializer whose timestamps come from ``now`` (default: the system clock)."""
    if now is None:
        return URLSafeTimedSerializer(secret_key, salt=salt)
    # itsdangerous instantiates the signer class itself: bind "now" on a subclass.
    signer = type("_Signer", (_ClockSigner,), {"now": now})
    return URLSafeTimedSerializer(secret_key, salt=salt, signer=signer)


def _serializer(
    secret_key: str, purpose: str, now: datetime | None = None
) -> URLSafeSerializer | URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if purpose in TIMED:
        return timed_serializer(secret_key, f"digest.{purpose}", now)
    return URLSafeSerializer(secret_key, salt=f"digest.{purpose}")


def address_hash(email_key: str) -> str:
    return hashlib.sha256(email_key.encode()).hexdigest()[:10]


def make_token(
    secret_key: str, purpose: str, subscriber_id: int, email_key: str, *, now: datetime | None = None
) -> str:
    """A URL-safe token for ``purpose`` and this subscriber, stamped with ``now`` (default: the system clock)."""
    return _serializer(secret_key, purpose, now).dumps([subscriber_id, address_hash(email_key)])


def read_token(
    secret_key: str, purpose: str, token: str, max_age: int | None = None, *, now: datetime | None = None
) -> tuple[int, str]:
    """Return ``(subscriber_id, address_hash)``; raise TokenError if it does not verify.

    ``max_age`` (seconds) is measured up to ``now`` (default: the system clock).
    """
    try:
        serializer = _serializer(secret_key, purpose, now)
        if isinstance(serializer, URLSafeTimedSerializer):
            value = serializer.loads(token, max_age=max_age)
        else:
            value = serializer.loads(token)
    except SignatureExpired:
        raise TokenError("this link has expired") from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
        raise TokenError("this link is not valid")
    return value[0], str(value[1])
