"""The subscriber web app (Starlette): subscribe, confirm, preferences, unsubscribe, archive.

Thin by design: each endpoint parses the request, calls one function of
:mod:`digest.app.subscriptions` (in a worker thread: the store and SMTP block) and renders a
page from ``templates/web/`` with the one Jinja environment. Plain HTML forms; no
page needs JavaScript.

Protections:

- CSRF: a signed double-submit token. The form carries ``itsdangerous``-signed
  ``[nonce, scope]`` (timestamped, ``web.csrf_max_age``), the ``digest_csrf`` cookie
  carries the nonce (HttpOnly, SameSite=Strict). The scope binds it to one form
  (``subscribe``, or one subscriber's preferences).
- ``/subscribe``: a per-client-address rate limit (in memory, per process) and a
  honeypot field that bots fill and people never see.
- Tokens: every failure (forged, expired, another subscriber's, another purpose's)
  gets the same friendly 400 page.
- RFC 8058 one-click: ``POST /unsubscribe/{token}`` with ``List-Unsubscribe=One-Click``
  answers 200 with no cookie, no login and no redirect; the token is the authority.
- Every response (pages, errors, 413, ``/healthz``): ``Referrer-Policy: no-referrer``
  (links carry tokens), a strict Content-Security-Policy, ``X-Frame-Options: DENY``,
  ``nosniff`` and ``no-store`` caching (:class:`SecurityHeaders`).
- ``/subscribe``'s rate limit counts IPv4 clients per address, IPv6 ones per /64.

Run it alone with ``digest web``, or inside another process (``digest serve``) with
:class:`WebServer`::

    app = make_app(settings, engine, clock)
    server = WebServer(app, settings).start()   # uvicorn in a background thread
    ...
    server.stop()
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

import jinja2
from itsdangerous import BadSignature
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.app import subscriptions as lifecycle
from digest.app.notices import BackgroundMailer, Mailer
from digest.app.subscriptions import SubscribeForm
from digest.compose.render import make_environment, render_template
from digest.compose.variants import Variants
from digest.core.clock import Clock, SystemClock
from digest.core.errors import ConfigError, DeliveryError, DigestError, InputError, TemplateError, TokenError
from digest.core.settings import DEFAULT_SECRET_KEY, Settings
from digest.core.text import mask_email
from digest.core.tokens import timed_serializer
from digest.edition.build import edition_content
from digest.store.db import session_scope
from digest.store.models import Article, Edition, SubscriberStatus
from digest.transport.smtp import SMTPTransport, Transport, parse_smtp_url

if TYPE_CHECKING:
    import uvicorn

    from digest.compose.dkim import Signer

log = logging.getLogger(__name__)

MIN_SECRET_KEY = 32
# Ids are 32-bit INTEGER columns (PostgreSQL); a larger number in a URL names nothing.
MAX_ID = 2**31 - 1
CSRF_COOKIE = "digest_csrf"
HONEYPOT_FIELD = "website"
MAX_BODY = 64 * 1024
REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")

APP_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'nonce-{nonce}'; "
    "form-action 'self' {origin}; frame-ancestors 'none'; base-uri 'none'"
)
# The archive shows the email itself: its inline styles and its (remote) images.
ARCHIVE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-ancestors 'none'"


@cache
def timezone_groups() -> list[tuple[str, list[str]]]:
    """IANA zones for the timezone picker, grouped by region: ``[("Europe", ["Europe/Berlin", ...]), ...]``."""
    zones = sorted(z for z in available_timezones() if z.split("/", 1)[0] in REGIONS and "/" in z)
    groups: dict[str, list[str]] = {}
    for z in zones:
        groups.setdefault(z.split("/", 1)[0], []).append(z)
    return [("", ["UTC"]), *groups.items()]


def text_field(form: FormData, name: str, limit: int) -> str:
    """A form value as text, at most ``limit`` characters (uploads are refused as empty)."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def list_field(form: FormData, name: str, limit: int = 50) -> list[str]:
    """Every value of a repeated field (checkboxes), at most ``limit`` of them."""
    return [v[:200] for v in form.getlist(name) if isinstance(v, str)][:limit]


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


# ---------------------------------------------------------------- the app


@dataclass
class WebApp:
    """The app's dependencies and its endpoints."""

    settings: Settings
    engine: Engine
    clock: Clock
    mailer: Mailer
    env: jinja2.Environment
    csrf: Csrf = field(init=False)
    limiter: RateLimiter = field(init=False)
    _archive: OrderedDict[tuple[int, datetime], str] = field(default_factory=OrderedDict)
    _archive_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        web = self.settings.web
        secure = self.settings.base_url.startswith("https://")
        self.csrf = Csrf(self.settings.secret_key.get_secret_value(), web.csrf_max_age, self.clock, secure)
        self.limiter = RateLimiter(web.subscribe_limit, web.subscribe_window, self.clock)
        parts = urlsplit(self.settings.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    # -------------------------------------------------------------- rendering

    def page(
        self,
        template: str,
        status: int = 200,
        *,
        csrf_nonce: str | None = None,
        new_cookie: bool = False,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """Render ``web/TEMPLATE`` with the common context and security headers."""
        nonce = secrets.token_urlsafe(12)
        ctx = {
            "site": {"title": lifecycle.site_title(self.settings), "base_url": self.settings.base_url},
            "postal_address": self.settings.postal_address,
            "script_nonce": nonce,
            **context,
        }
        body = render_template(self.env, f"web/{template}", ctx)
        response = HTMLResponse(body, status_code=status, headers=headers)
        self._secure(response, APP_CSP.format(nonce=nonce, origin=self.origin))
        if csrf_nonce is not None and new_cookie:
            self.csrf.set_cookie(response, csrf_nonce)
        return response

    @staticmethod
    def _secure(response: Response, csp: str) -> None:
        h = response.headers
        h["Content-Security-Policy"] = csp
        h["Referrer-Policy"] = "no-referrer"
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Cache-Control"] = "no-store"

    def bad_link(self) -> HTMLResponse:
        """The one answer to every bad token: nothing about why."""
        return self.page("error.html", 400, title="This link doesn't work", kind="link")

    # -------------------------------------------------------------- subscribe

    def _subscribe_context(self, request: Request, form: dict[str, Any] | None = None) -> dict[str, Any]:
        nonce, new = self.csrf.nonce(request)
        return {
            "csrf_nonce": nonce,
            "new_cookie": new,
            "csrf": self.csrf.field(nonce, "subscribe"),
            "topics": lifecycle.available_topics(self.settings),
            "timezones": timezone_groups(),
            "honeypot": HONEYPOT_FIELD,
            "form": form or {"email": "", "name": "", "topics": [], "timezone": ""},
            "digests": [c.title for c in self.settings.digests.values()],
        }

    async def home(self, request: Request) -> Response:
        return self.page("subscribe.html", **self._subscribe_context(request))

    async def subscribe(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        retry_after = self.limiter.hit(client_key(client))
        if retry_after:
            log.info("subscribe rate limit reached for a client")
            return self.page(
                "error.html", 429, headers={"Retry-After": str(retry_after)}, title="Too many attempts", kind="rate"
            )
        form = await request.form(max_files=0, max_fields=50)
        request_form = SubscribeForm(
            email=text_field(form, "email", 320),
            name=text_field(form, "name", 200),
            topics=tuple(list_field(form, "topics")),
            timezone=text_field(form, "timezone", 64),
        )
        values = {
            "email": request_form.email,
            "name": request_form.name,
            "topics": list(request_form.topics),
            "timezone": request_form.timezone,
        }
        if not self.csrf.valid(request, form, "subscribe"):
            return self.page("error.html", 403, title="This form has expired", kind="csrf")
        if form.get(HONEYPOT_FIELD):
            # A bot: answer exactly as for a person, do nothing.
            log.info("subscribe honeypot filled; ignored")
            return self.page("check_inbox.html", email=request_form.email.strip())
        try:
            await run_in_threadpool(
                lifecycle.request_subscription, self.engine, self.settings, self.clock, request_form, self.mailer
            )
        except InputError as exc:
            problem = (
                "Please enter a valid email address."
                if exc.where == "email"
                else "Please choose a timezone from the list."
            )
            ctx = self._subscribe_context(request, values)
            return self.page("subscribe.html", 400, error=problem, error_field=exc.where, **ctx)
        except DeliveryError as exc:
            log.warning("confirmation email not sent: %s", exc)
            return self.page("error.html", 503, title="We couldn't send the email", kind="mail")
        return self.page("check_inbox.html", email=request_form.email.strip())

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            sub = await run_in_threadpool(lifecycle.confirm_subscription, self.engine, self.settings, self.clock, token)
        except TokenError:
            return self.bad_link()
        prefs = lifecycle.make_link(self.settings, "preferences", sub, self.clock.now())
        return self.page("confirmed.html", preferences_url=prefs, email=mask_email(sub.email))

    # -------------------------------------------------------------- unsubscribe

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]

        def load() -> Any:
            with session_scope(self.engine) as session:
                return lifecycle.subscriber_from_token(session, self.settings, "unsubscribe", token, self.clock.now())

        try:
            sub = await run_in_threadpool(load)
        except TokenError:
            return self.bad_link()
        return self.page(
            "unsubscribe.html",
            email=mask_email(sub.email),
            already=sub.status == SubscriberStatus.UNSUBSCRIBED,
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click (and the page's button): the token authorises; no cookie is set or needed."""
        token = request.path_params["token"]
        form = await request.form(max_files=0, max_fields=20)
        if form.get("List-Unsubscribe") != "One-Click":
            return self.page("error.html", 400, title="Nothing to do", kind="request")
        try:
            sub = await run_in_threadpool(
                lifecycle.unsubscribe_by_token, self.engine, self.settings, self.clock, token, source="one-click"
            )
        except TokenError:
            return self.bad_link()
        prefs = lifecycle.make_link(self.settings, "preferences", sub, self.clock.now())
        return self.page("unsubscribed.html", email=mask_email(sub.email), preferences_url=prefs)

    # -------------------------------------------------------------- preferences

    def _preferences_page(
        self,
        request: Request,
        sub: Any,
        prefs: lifecycle.Preferences,
        status: int = 200,
        **extra: Any,
    ) -> HTMLResponse:
        nonce, new = self.csrf.nonce(request)
        return self.page(
            "preferences.html",
            status,
            csrf_nonce=nonce,
            new_cookie=new,
            csrf=self.csrf.field(nonce, f"preferences:{sub.id}"),
            email=mask_email(sub.email),
            status_name=sub.status,
            prefs=prefs,
            topics=lifecycle.available_topics(self.settings),
            timezones=timezone_groups(),
            weekdays=list(enumerate(lifecycle.WEEKDAYS)),
            frequencies=lifecycle.FREQUENCIES,
            unsubscribe_url=lifecycle.make_link(self.settings, "unsubscribe", sub, self.clock.now()),
            **extra,
        )

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            sub = await run_in_threadpool(
                lifecycle.subscriber_for_preferences, self.engine, self.settings, self.clock, token
            )
        except TokenError:
            return self.bad_link()
        return self._preferences_page(request, sub, lifecycle.current_preferences(sub))

    async def save_preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            sub = await run_in_threadpool(
                lifecycle.subscriber_for_preferences, self.engine, self.settings, self.clock, token
            )
        except TokenError:
            return self.bad_link()
        form = await request.form(max_files=0, max_fields=60)
        if not self.csrf.valid(request, form, f"preferences:{sub.id}"):
            return self.page("error.html", 403, title="This form has expired", kind="csrf")
        if form.get("action") == "resubscribe":
            sub = await run_in_threadpool(lifecycle.resubscribe_by_token, self.engine, self.settings, self.clock, token)
            return self._preferences_page(request, sub, lifecycle.current_preferences(sub), notice="resubscribed")
        topics = list_field(form, "topics")
        timezone = text_field(form, "timezone", 64) or None
        send_time = text_field(form, "send_time", 5) or None
        frequency = text_field(form, "frequency", 10) or None
        weekday = text_field(form, "weekday", 2) or None
        try:
            prefs = lifecycle.parse_preferences(
                self.settings,
                topics=topics,
                timezone=timezone,
                send_time=send_time,
                frequency=frequency,
                weekday=weekday,
            )
        except InputError as exc:
            entered = lifecycle.Preferences(
                topics=tuple(topics),
                timezone=timezone,
                send_time=send_time,
                frequency=frequency or "daily",
                weekday=int(weekday) if weekday and weekday.isdigit() else None,
            )
            return self._preferences_page(request, sub, entered, 400, error=exc.problem, error_field=exc.where)
        sub = await run_in_threadpool(
            lifecycle.update_preferences, self.engine, self.settings, self.clock, token, prefs
        )
        return self._preferences_page(request, sub, lifecycle.current_preferences(sub), notice="saved")

    # -------------------------------------------------------------- archive and articles

    def _archive_html(self, edition: Edition) -> str | None:
        if edition.id is None:
            return None
        key = (edition.id, edition.built_at)
        with self._archive_lock:
            if key in self._archive:
                self._archive.move_to_end(key)
                return self._archive[key]
        found = edition_content(self.engine, self.settings, edition.id)
        if found is None:
            return None
        stored, cfg, content = found
        variants = Variants(self.settings, stored.digest, cfg, stored.slot, stored.built_at, content, self.env)
        html = variants.web_copy()
        with self._archive_lock:
            self._archive[key] = html
            while len(self._archive) > 32:
                self._archive.popitem(last=False)
        return html

    def _archive_response(self, edition: Edition | None) -> Response:
        html = self._archive_html(edition) if edition is not None else None
        if html is None:
            return self.page("error.html", 404, title="No such edition", kind="missing")
        response = HTMLResponse(html)
        self._secure(response, ARCHIVE_CSP)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    def _find_edition(self, **where: Any) -> Edition | None:
        from sqlmodel import select

        with session_scope(self.engine) as session:
            stmt = select(Edition)
            for k, v in where.items():
                stmt = stmt.where(getattr(Edition, k) == v)
            return session.exec(stmt).first()

    async def archive_by_id(self, request: Request) -> Response:
        edition_id = request.path_params["edition_id"]
        if edition_id > MAX_ID:  # the database would refuse the number itself (500)
            return self.page("error.html", 404, title="No such edition", kind="missing")
        edition = await run_in_threadpool(self._find_edition, id=edition_id)
        return await run_in_threadpool(self._archive_response, edition)

    async def archive(self, request: Request) -> Response:
        p = request.path_params
        edition = await run_in_threadpool(self._find_edition, digest=p["digest"], slot=p["slot"])
        return await run_in_threadpool(self._archive_response, edition)

    async def article(self, request: Request) -> Response:
        def load() -> Article | None:
            article_id = request.path_params["article_id"]
            if article_id > MAX_ID:
                return None
            with session_scope(self.engine) as session:
                return session.get(Article, article_id)

        article = await run_in_threadpool(load)
        if article is None:
            return self.page("error.html", 404, title="No such story", kind="missing")
        return self.page("article.html", article=article)

    # -------------------------------------------------------------- health

    async def healthz(self, request: Request) -> Response:
        def ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as exc:  # any database failure is "unhealthy", never a crash
            log.warning("healthz: database unavailable: %s", type(exc).__name__)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    # -------------------------------------------------------------- errors

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kinds = {404: ("Page not found", "missing"), 405: ("Not allowed", "request"), 413: ("Too large", "request")}
        title, kind = kinds.get(exc.status_code, ("Something went wrong", "server"))
        return self.page("error.html", exc.status_code, title=title, kind=kind)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("web: %s on %s: %s", type(exc).__name__, request.url.path.split("/")[1], exc)
        try:
            return self.page("error.html", 500, title="Something went wrong", kind="server")
        except TemplateError:
            # Outside the middleware (Starlette answers a crash last): secure it here.
            response = PlainTextResponse("Something went wrong.", status_code=500)
            self._secure(response, SecurityHeaders.DEFAULTS[0][1].decode())
            return response


class SecurityHeaders:
    """Give every response the security headers, including those no page renders (413, /healthz, JSON).

    Headers a response sets itself (a page's CSP with its script nonce, the
    archive's CSP and caching) are kept.
    """

    DEFAULTS = (
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
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
    """Refuse request bodies over ``limit`` bytes with 413 (forms here are tiny)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await PlainTextResponse("Request body too large.", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


def smtp_transport_factory(settings: Settings) -> Callable[[], Transport]:
    """A new SMTP connection per notice, from ``smtp_url``."""
    config = parse_smtp_url(settings.smtp_url.get_secret_value(), settings.smtp_timeout)
    return lambda: SMTPTransport(config)


def make_app(
    settings: Settings,
    engine: Engine,
    clock: Clock | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    *,
    signer: Signer | None = None,
    env: jinja2.Environment | None = None,
) -> Starlette:
    """The ASGI app. ``transport_factory`` makes the transport for each notice (default: ``smtp_url``);
    ``signer`` signs notices (default: the ``[dkim]`` signer, if configured).

    Raises ConfigError when ``secret_key`` is unset, short or the public default.
    """
    from digest.compose.dkim import signer_from_settings

    check_secret_key(settings)
    clock = clock or SystemClock()
    env = env or make_environment(settings.templates_dir)
    if signer is None:
        signer = signer_from_settings(settings, clock)
    # Notices go out from a background thread: a subscribe answer never waits on
    # SMTP, so its timing cannot tell a known address from a new one.
    mailer = BackgroundMailer(settings, transport_factory or smtp_transport_factory(settings), signer=signer, env=env)
    web = WebApp(settings, engine, clock, mailer, env)

    routes = [
        Route("/", web.home, methods=["GET"]),
        Route("/subscribe", web.home, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/confirm/{token}", web.confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["POST"]),
        Route("/preferences/{token}", web.preferences, methods=["GET"]),
        Route("/preferences/{token}", web.save_preferences, methods=["POST"]),
        Route("/archive/{edition_id:int}", web.archive_by_id, methods=["GET"]),
        Route("/archive/{digest}/{slot}", web.archive, methods=["GET"]),
        Route("/articles/{article_id:int}", web.article, methods=["GET"]),
        Route("/healthz", web.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: web.http_error, Exception: web.server_error},
    )
    app.state.web = web
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so it also sees BodyLimit's 413
    return app


# ---------------------------------------------------------------- serving


def uvicorn_config(app: Starlette, settings: Settings, host: str | None = None, port: int | None = None) -> Any:
    """The uvicorn configuration: trusted proxies from settings, no access log (URLs carry tokens)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host or settings.web.host,
        port=port if port is not None else settings.web.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
        access_log=False,
        server_header=False,
        log_level="warning",
        lifespan="off",
    )


def start_in_thread(
    settings: Settings,
    engine: Engine,
    clock: Clock | None = None,
    transport_factory: Callable[[], Transport] | None = None,
) -> WebServer | None:
    """For ``digest serve``: the web app running in a background thread when ``[web] enabled``, else None.

    Call ``stop()`` on the result at shutdown.
    """
    if not settings.web.enabled:
        return None
    return WebServer(make_app(settings, engine, clock, transport_factory), settings).start()


def serve_forever(app: Starlette, settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve in the foreground until SIGTERM or SIGINT; return (exit 0) after a graceful stop.

    uvicorn re-raises the signal after shutting down, which ends the process "killed
    by SIGTERM"; a service manager and a shell both prefer a plain exit 0.
    """
    import signal
    from contextlib import contextmanager

    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Any:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    _Server(uvicorn_config(app, settings, host, port)).run()
    close_mailer(app, settings)


def close_mailer(app: Starlette, settings: Settings) -> None:
    """Send the notices still queued when the server stops (at most ``smtp_timeout`` seconds)."""
    mailer = getattr(app.state, "web", None) and app.state.web.mailer
    if isinstance(mailer, BackgroundMailer):
        mailer.close(settings.smtp_timeout)


class WebServer:
    """uvicorn serving an app from a background thread (for ``digest serve`` and tests).

    ``start()`` returns once the socket listens; ``stop()`` lets requests in flight
    finish and joins the thread.
    """

    def __init__(self, app: Starlette, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        import uvicorn

        self.app, self.settings = app, settings
        self.config = uvicorn_config(app, settings, host, port)
        self.server: uvicorn.Server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="digest-web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DigestError(f"web server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        close_mailer(self.app, self.settings)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
