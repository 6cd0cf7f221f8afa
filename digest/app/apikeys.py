"""API keys: make one (shown once), list, revoke, and check the key of a request.

A key reads ``dg_PREFIX_SECRET``. Only its SHA-256 is stored, with ``PREFIX`` in the
clear to find the row (and to tell keys apart in ``digest apikeys list``); the key
itself cannot be recovered from the database. Scopes:

- ``read``: every GET (articles, subscribers, editions);
- ``articles:write``: add and hide articles;
- ``subscribers:write``: add, change, unsubscribe and delete subscribers.

Each key may make ``[api] rate_per_minute`` requests a minute. The count lives in
the key's row (one atomic UPDATE a request), so every web process on the same
database shares it; the window is the clock's minute, so a burst across a minute's
end may see up to twice the rate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel import select as select_rows

from digest.core.clock import Clock
from digest.core.errors import ApiKeyError, InputError, NotFoundError, RateLimited, ScopeError
from digest.store.db import session_scope
from digest.store.models import ApiKey

log = logging.getLogger(__name__)

SCOPES = ("articles:write", "subscribers:write", "read")
KEY_PREFIX = "dg_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_KEY = re.compile(r"dg_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def key_hash(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str | Iterable[str], where: str = "--scope") -> list[str]:
    """Known scopes of a comma-separated list, in canonical order; InputError naming an unknown one."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    wanted = {s.strip() for s in items if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InputError(where, f"unknown scope {', '.join(unknown)} (scopes: {', '.join(SCOPES)})")
    if not wanted:
        raise InputError(where, f"give at least one scope ({', '.join(SCOPES)})")
    return [s for s in SCOPES if s in wanted]


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown once and never stored."""

    name: str
    prefix: str
    scopes: list[str]
    key: str


def create_key(engine: Engine, clock: Clock, name: str, scopes: str | Iterable[str]) -> NewKey:
    """Make a key ``name`` with ``scopes``; InputError for a bad or taken name or an unknown scope."""
    if not _NAME.fullmatch(name):
        raise InputError("NAME", "use 1 to 100 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    wanted = parse_scopes(scopes)
    prefix = KEY_PREFIX + secrets.token_hex(6)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, key_hash=key_hash(key), scopes=",".join(wanted), created_at=clock.now())
    try:
        with session_scope(engine) as session:
            session.add(row)
    except IntegrityError:
        raise InputError("NAME", f"a key named {name!r} exists already (revoke it or choose another name)") from None
    log.info("API key %s (%s) created with scopes %s", name, prefix, ",".join(wanted))
    return NewKey(name, prefix, wanted, key)


def list_keys(engine: Engine) -> Sequence[ApiKey]:
    """Every key, revoked ones too, oldest first."""
    with session_scope(engine) as session:
        return session.exec(select_rows(ApiKey).order_by(col(ApiKey.id))).all()


def revoke_key(engine: Engine, clock: Clock, name: str) -> ApiKey:
    """Revoke key ``name`` (at once, in every process); revoking it again changes nothing."""
    with session_scope(engine) as session:
        row = session.exec(select_rows(ApiKey).where(ApiKey.name == name)).first()
        if row is None:
            raise NotFoundError(f"no API key named {name!r} (see digest apikeys list)")
        if row.revoked_at is None:
            row.revoked_at = clock.now()
            session.add(row)
            log.info("API key %s (%s) revoked", row.name, row.prefix)
        return row


@dataclass(frozen=True)
class Caller:
    """The key a request was made with."""

    name: str
    scopes: tuple[str, ...]


def authorise(engine: Engine, clock: Clock, authorization: str | None, scope: str, rate_per_minute: int) -> Caller:
    """Check a request's ``Authorization`` header, count it, and check that its key holds ``scope``.

    ApiKeyError (401) for a missing, malformed, unknown or revoked key; RateLimited
    (429) past ``rate_per_minute`` this minute; ScopeError (403) without ``scope``.
    """
    if not authorization:
        raise ApiKeyError("no API key: send the header 'Authorization: Bearer <key>' (digest apikeys create)")
    kind, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if kind.lower() != "bearer" or not key:
        raise ApiKeyError("the Authorization header must be 'Bearer <key>'")
    found = _KEY.fullmatch(key)
    if not found:
        raise ApiKeyError("this is not a digest API key (they look like dg_<12 hex>_<43 characters>)")
    now = clock.now()
    window = int(now.timestamp() // 60)
    table = ApiKey.__table__  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        row = session.execute(select(table).where(table.c.prefix == KEY_PREFIX + found.group(1))).first()
        if row is None or not hmac.compare_digest(row.key_hash, key_hash(key)):
            raise ApiKeyError("unknown API key")
        if row.revoked_at is not None:
            raise ApiKeyError(f"this API key was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
        # One statement: concurrent requests of every process count exactly once each.
        session.execute(
            update(table)
            .where(table.c.id == row.id)
            .values(
                rate_count=case((table.c.rate_window == window, table.c.rate_count + 1), else_=1),
                rate_window=window,
                last_used_at=now,
            )
        )
        count = session.execute(select(table.c.rate_count).where(table.c.id == row.id)).scalar_one()
    if count > rate_per_minute:
        retry_after = max(1, math.ceil((window + 1) * 60 - now.timestamp()))
        raise RateLimited(retry_after, rate_per_minute)
    scopes = tuple(s for s in row.scopes.split(",") if s)
    if scope not in scopes:
        raise ScopeError(scope, list(scopes))
    return Caller(row.name, scopes)
