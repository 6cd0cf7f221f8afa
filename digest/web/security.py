"""The web app's protections, each applied to every request or response that needs it.

- CSRF: a signed double-submit token. The form carries ``itsdangerous``-signed
  ``[nonce, scope]`` (timestamped, ``web.csrf_max_age``), the ``digest_csrf`` cookie
  carries the nonce (HttpOnly, SameSite=Strict). The scope binds it to one form
  (``subscribe``, or one subscriber's preferences).
- ``/subscribe``: a per-client-address rate limit (in memory, per process) and a
  honeypot field that bots fill and people never see. The limit counts IPv4 clients
  per address, IPv6 ones per /64.
- Every response (pages, errors, 413, ``/healthz``): ``Referrer-Policy: no-referrer``
  (links carry tokens), a strict Content-Security-Policy, ``X-Frame-Options: DENY``,
  ``nosniff`` and ``no-store`` caching (:class:`SecurityHeaders`).
- Link scanners: a confirm or unsubscribe button pressed within ``web.link_protection``
  of the mail's sending is asked again (:class:`LinkGuard`).
- Request bodies over 64 KiB are refused with 413 (:class:`BodyLimit`); the API's over ``[api] max_body_bytes``.
- The app refuses to start with a ``secret_key`` anyone could know (:func:`check_secret_key`).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta

from itsdangerous import BadSignature
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.core.clock import Clock
from digest.core.errors import ConfigError
from digest.core.settings import DEFAULT_SECRET_KEY, Settings
from digest.core.tokens import timed_serializer

MIN_SECRET_KEY = 32
CSRF_COOKIE = "digest_csrf"
MAX_BODY = 64 * 1024

APP_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'nonce-{nonce}'; "
    "form-action 'self' {origin}; frame-ancestors 'none'; base-uri 'none'"
)
# The archive shows the email itself: its inline styles and its (remote) images.
ARCHIVE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-ancestors 'none'"
# Responses that render nothing of their own (413, JSON, the last-resort 500).
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


# Besides the CSP, on every response: links carry tokens (no referrer), no framing, no caching.
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def secure(response: Response, csp: str) -> None:
    """Set the security headers on ``response``, with its own Content-Security-Policy."""
    response.headers["Content-Security-Policy"] = csp
    response.headers.update(HEADERS)


def check_secret_key(settings: Settings) -> None:
    """Raise ConfigError unless ``secret_key`` is fit to sign the app's links and forms.

    With the public default, an empty or a short key anyone could forge confirmation,
    unsubscribe and preference links for any subscriber.
    """
    key = settings.secret_key.get_secret_value()
    if not key.strip():
        problem = "is not set"
    elif key == DEFAULT_SECRET_KEY:
        problem = "is the public default"
    elif len(key) < MIN_SECRET_KEY:
        problem = f"is {len(key)} characters long"
    else:
        return
    raise ConfigError(
        "secret_key",
        f"{problem}; the web app needs a random key of at least {MIN_SECRET_KEY} characters in DIGEST_SECRET_KEY "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')",
    )


# ---------------------------------------------------------------- CSRF and rate limit


class Csrf:
    """Signed double-submit tokens, scoped to one form."""

    def __init__(self, secret_key: str, max_age: timedelta, clock: Clock, secure: bool) -> None:
        self.secret_key = secret_key
        self.max_age = int(max_age.total_seconds())
        self.clock = clock
        self.secure = secure

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The browser's nonce (from its cookie) or a new one; ``(nonce, is_new)``."""
        current = request.cookies.get(CSRF_COOKIE, "")
        if 16 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
            return current, False
        return secrets.token_urlsafe(24), True

    def field(self, nonce: str, scope: str) -> str:
        return timed_serializer(self.secret_key, "digest.csrf", self.clock.now()).dumps([nonce, scope])

    def valid(self, request: Request, form: FormData, scope: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        submitted = form.get("csrf")
        if not cookie or not isinstance(submitted, str):
            return False
        try:
            nonce, signed_scope = timed_serializer(self.secret_key, "digest.csrf", self.clock.now()).loads(
                submitted, max_age=self.max_age
            )
        except (BadSignature, ValueError, TypeError):
            return False
        return hmac.compare_digest(str(nonce), cookie) and signed_scope == scope

    def set_cookie(self, response: Response, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=self.secure, path="/", max_age=None
        )


class LinkGuard:
    """Tells a person pressing a mailed link's button from a link scanner doing it.

    Scanners (Safe Links, Mimecast) open, and some submit, everything in a mail
    within seconds of its delivery; a person rarely acts that fast. A press within
    ``window`` of the sending is answered with the same button again, carrying a
    signed field bound to that link (``scope``): pressing that one acts at once.
    Bound to the link, not to a cookie, so it also works in a mail app's browser.
    """

    SALT = "digest.link-again"

    def __init__(self, secret_key: str, window: timedelta, max_age: timedelta, clock: Clock) -> None:
        self.secret_key = secret_key
        self.window = window
        self.max_age = int(max_age.total_seconds())
        self.clock = clock

    def too_soon(self, sent_at: datetime | None) -> bool:
        """True when a press now is within the window after ``sent_at`` (None: nothing was sent)."""
        return sent_at is not None and self.clock.now() - sent_at < self.window

    def again_field(self, scope: str) -> str:
        """The signed value of the ``again`` field on the "confirm again" page of ``scope``."""
        return timed_serializer(self.secret_key, self.SALT, self.clock.now()).dumps(scope)

    def pressed_again(self, form: FormData, scope: str) -> bool:
        """True when ``form`` carries a valid ``again`` field of ``scope``."""
        submitted = form.get("again")
        if not isinstance(submitted, str):
            return False
        try:
            signed = timed_serializer(self.secret_key, self.SALT, self.clock.now()).loads(
                submitted, max_age=self.max_age
            )
        except (BadSignature, ValueError, TypeError):
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, scope)


def client_key(host: str) -> str:
    """The rate-limit key of a client address: IPv4 per address, IPv6 per /64.

    One IPv6 host usually holds a whole /64 and can pick a new address for every
    request; counting addresses would let it subscribe without limit.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """At most ``limit`` hits per key in any ``window`` (sliding log, in memory)."""

    MAX_KEYS = 100_000

    def __init__(self, limit: int, window: timedelta, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> int:
        """Count a hit; return 0 when allowed, else the seconds until the next one would be."""
        now = self.clock.now()
        with self._lock:
            log_ = self._hits.pop(key, None) or deque()
            while log_ and now - log_[0] >= self.window:
                log_.popleft()
            self._hits[key] = log_  # most recently used last
            if len(self._hits) > self.MAX_KEYS:
                self._hits.popitem(last=False)
            if len(log_) >= self.limit:
                return max(1, int((log_[0] + self.window - now).total_seconds()) + 1)
            log_.append(now)
            return 0


class SecurityHeaders:
    """Give every response the security headers, including those no page renders (413, /healthz, JSON).

    Headers a response sets itself (a page's CSP with its script nonce, the
    archive's CSP and caching) are kept.
    """

    DEFAULTS = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in {"Content-Security-Policy": DEFAULT_CSP, **HEADERS}.items()
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.DEFAULTS if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (forms here are tiny).

    ``larger``: other limits for paths under a prefix (the API's batches).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for prefix, n in self.larger.items() if path.startswith(prefix)), self.limit)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await PlainTextResponse("Request body too large.", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)
