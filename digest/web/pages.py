"""The subscriber pages (Starlette endpoints): subscribe, confirm, preferences, unsubscribe, archive.

Thin by design: each endpoint parses the request, calls one function of
:mod:`digest.app.subscriptions` (in a worker thread: the store and SMTP block) and renders a
page from ``templates/web/`` with the one Jinja environment. Plain HTML forms; no
page needs JavaScript.

- Tokens: every failure (forged, expired, another subscriber's, another purpose's)
  gets the same friendly 400 page.
- Nothing changes on GET (or HEAD): link scanners open every link of a mail. The
  confirm and unsubscribe links show a page with one button that POSTs back to the
  same address; a press within ``web.link_protection`` of the mail's sending is
  asked again (:class:`~digest.web.security.LinkGuard`).
- RFC 8058 one-click: ``POST /unsubscribe/{token}`` with ``List-Unsubscribe=One-Click``
  answers 200 with no cookie, no login and no redirect; the token is the authority,
  and it acts at once, however soon after sending.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import jinja2
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from digest.app import preferences as preferences_app
from digest.app import subscriptions as lifecycle
from digest.app.archive import Archive, find_article, past_editions
from digest.app.feeds import Feed, archive_feed, digest_feeds
from digest.app.notices import Mailer
from digest.compose.i18n import N_, available_locales, catalog_dirs, language_name, negotiate, text_direction
from digest.compose.render import builtin_templates_dir, for_locale, render_template
from digest.core.clock import Clock
from digest.core.errors import DeliveryError, InputError, TemplateError, TokenError
from digest.core.settings import Settings
from digest.core.text import mask_email
from digest.store.db import session_scope
from digest.store.models import Subscriber, SubscriberStatus
from digest.web.forms import HONEYPOT_FIELD, PreferencesFields, subscribe_form, timezone_groups
from digest.web.security import (
    APP_CSP,
    ARCHIVE_CSP,
    DEFAULT_CSP,
    Csrf,
    LinkGuard,
    RateLimiter,
    client_key,
    secure,
)

log = logging.getLogger(__name__)

# Ids are 32-bit INTEGER columns (PostgreSQL); a larger number in a URL names nothing.
MAX_ID = 2**31 - 1


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
    guard: LinkGuard = field(init=False)
    archive_copies: Archive = field(init=False)

    def __post_init__(self) -> None:
        web = self.settings.web
        secure = self.settings.base_url.startswith("https://")
        self.csrf = Csrf(self.settings.secret_key.get_secret_value(), web.csrf_max_age, self.clock, secure)
        self.limiter = RateLimiter(web.subscribe_limit, web.subscribe_window, self.clock)
        self.guard = LinkGuard(
            self.settings.secret_key.get_secret_value(), web.link_protection, web.csrf_max_age, self.clock
        )
        self.archive_copies = Archive(self.engine, self.settings, self.env)
        # The preferences page's language picker: every language with a catalog, named in itself.
        dirs = catalog_dirs(builtin_templates_dir(), self.settings.templates_dir)
        self.locales = [(tag, language_name(tag)) for tag in available_locales(dirs)]
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
        reader: Any = None,
        language: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """Render ``web/TEMPLATE`` with the common context and security headers.

        In ``language``, else ``reader``'s (a subscriber: their locale), else the site's.
        """
        nonce = secrets.token_urlsafe(12)
        language = language or lifecycle.reader_language(self.settings, reader)
        ctx = {
            "language": language,
            "dir": text_direction(language),
            "site": {"title": lifecycle.site_title(self.settings), "base_url": self.settings.base_url},
            "postal_address": self.settings.postal_address,
            "script_nonce": nonce,
            **context,
        }
        body = render_template(for_locale(self.env, language), f"web/{template}", ctx)
        response = HTMLResponse(body, status_code=status, headers=headers)
        secure(response, APP_CSP.format(nonce=nonce, origin=self.origin))
        if csrf_nonce is not None and new_cookie:
            self.csrf.set_cookie(response, csrf_nonce)
        return response

    def browser_language(self, request: Request) -> str | None:
        """The language the browser asks for (Accept-Language) among those with a catalog,
        when it is not the site's own; None: the site's."""
        found = negotiate(request.headers.get("accept-language", ""), [tag for tag, _ in self.locales])
        return None if found == lifecycle.site_language(self.settings) else found

    def bad_link(self) -> HTMLResponse:
        """The one answer to every bad token: nothing about why."""
        return self.page("error.html", 400, title=N_("This link doesn't work"), kind="link")

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
        return self.page("subscribe.html", language=self.browser_language(request), **self._subscribe_context(request))

    async def subscribe(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        retry_after = self.limiter.hit(client_key(client))
        if retry_after:
            log.info("subscribe rate limit reached for a client")
            return self.page(
                "error.html", 429, headers={"Retry-After": str(retry_after)}, title=N_("Too many attempts"), kind="rate"
            )
        form = await request.form(max_files=0, max_fields=50)
        language = self.browser_language(request)
        request_form = replace(subscribe_form(form), locale=language)
        if not self.csrf.valid(request, form, "subscribe"):
            return self.page("error.html", 403, language=language, title=N_("This form has expired"), kind="csrf")
        if form.get(HONEYPOT_FIELD):
            # A bot: answer exactly as for a person, do nothing.
            log.info("subscribe honeypot filled; ignored")
            return self.page("check_inbox.html", language=language, email=request_form.email.strip())
        try:
            await run_in_threadpool(
                lifecycle.request_subscription, self.engine, self.settings, self.clock, request_form, self.mailer
            )
        except InputError as exc:
            problem = (
                N_("Please enter a valid email address.")
                if exc.where == "email"
                else N_("Please choose a timezone from the list.")
            )
            values = {
                "email": request_form.email,
                "name": request_form.name,
                "topics": list(request_form.topics),
                "timezone": request_form.timezone,
            }
            ctx = self._subscribe_context(request, values)
            return self.page("subscribe.html", 400, language=language, error=problem, error_field=exc.where, **ctx)
        except DeliveryError as exc:
            log.warning("confirmation email not sent: %s", exc)
            return self.page("error.html", 503, language=language, title=N_("We couldn't send the email"), kind="mail")
        return self.page("check_inbox.html", language=language, email=request_form.email.strip())

    def _confirmed(self, sub: Subscriber) -> HTMLResponse:
        prefs = lifecycle.make_link(self.settings, "preferences", sub, self.clock.now())
        return self.page("confirmed.html", reader=sub, preferences_url=prefs, email=mask_email(sub.email))

    async def confirm_page(self, request: Request) -> Response:
        """The confirmation link: a page with the button; confirming is the POST's."""
        token = request.path_params["token"]
        try:
            found = await run_in_threadpool(lifecycle.check_confirmation, self.engine, self.settings, self.clock, token)
        except TokenError:
            return self.bad_link()
        if found.done:
            return self._confirmed(found.subscriber)
        return self.page("confirm.html", reader=found.subscriber, email=mask_email(found.subscriber.email))

    async def confirm(self, request: Request) -> Response:
        """The page's button; within ``link_protection`` of the mail, only its "confirm again" button acts."""
        token = request.path_params["token"]
        form = await request.form(max_files=0, max_fields=20)
        try:
            found = await run_in_threadpool(lifecycle.check_confirmation, self.engine, self.settings, self.clock, token)
        except TokenError:
            return self.bad_link()
        scope = f"confirm:{token}"
        if not found.done and self.guard.too_soon(found.sent_at) and not self.guard.pressed_again(form, scope):
            log.info("subscriber %s: confirm pressed right after sending; asked again", found.subscriber.id)
            return self.page(
                "confirm.html",
                reader=found.subscriber,
                email=mask_email(found.subscriber.email),
                again=self.guard.again_field(scope),
            )
        try:
            sub = await run_in_threadpool(lifecycle.confirm_subscription, self.engine, self.settings, self.clock, token)
        except TokenError:
            return self.bad_link()
        return self._confirmed(sub)

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
            reader=sub,
            email=mask_email(sub.email),
            already=sub.status == SubscriberStatus.UNSUBSCRIBED,
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click (acts at once) and the page's button (asked again right after a digest went out).

        The token authorises; no cookie is set or needed.
        """
        token = request.path_params["token"]
        form = await request.form(max_files=0, max_fields=20)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click and form.get("action") != "unsubscribe":
            return self.page("error.html", 400, title=N_("Nothing to do"), kind="request")
        try:
            if not one_click:
                scope = f"unsubscribe:{token}"
                owner, sent_at = await run_in_threadpool(
                    lifecycle.unsubscribe_link_sent_at, self.engine, self.settings, self.clock, token
                )
                if self.guard.too_soon(sent_at) and not self.guard.pressed_again(form, scope):
                    log.info("subscriber %s: unsubscribe pressed right after a digest went out; asked again", owner.id)
                    return self.page(
                        "unsubscribe.html",
                        reader=owner,
                        email=mask_email(owner.email),
                        already=owner.status == SubscriberStatus.UNSUBSCRIBED,
                        again=self.guard.again_field(scope),
                    )
            sub = await run_in_threadpool(
                lifecycle.unsubscribe_by_token,
                self.engine,
                self.settings,
                self.clock,
                token,
                source="one-click" if one_click else "web",
            )
        except TokenError:
            return self.bad_link()
        prefs = lifecycle.make_link(self.settings, "preferences", sub, self.clock.now())
        return self.page("unsubscribed.html", reader=sub, email=mask_email(sub.email), preferences_url=prefs)

    # -------------------------------------------------------------- preferences

    def _preferences_page(
        self,
        request: Request,
        sub: Any,
        prefs: preferences_app.Preferences,
        status: int = 200,
        **extra: Any,
    ) -> HTMLResponse:
        nonce, new = self.csrf.nonce(request)
        own = lifecycle.make_link(self.settings, "preferences", sub, self.clock.now())
        return self.page(
            "preferences.html",
            status,
            reader=sub,
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
            locales=self.locales,
            unsubscribe_url=lifecycle.make_link(self.settings, "unsubscribe", sub, self.clock.now()),
            data_url=f"{own}/data",
            delete_url=f"{own}/delete",
            **extra,
        )

    async def _preferences_subscriber(self, token: str) -> Subscriber | None:
        """The subscriber a preferences link names; None for any bad token."""
        try:
            return await run_in_threadpool(
                preferences_app.subscriber_for_preferences, self.engine, self.settings, self.clock, token
            )
        except TokenError:
            return None

    async def _gone_or_bad_link(self, token: str) -> HTMLResponse:
        """A genuine link to someone erased says their data is gone; any other bad token: the one answer."""
        if await run_in_threadpool(preferences_app.erased_by_token, self.engine, self.settings, self.clock, token):
            return self.page("erased.html", 410)
        return self.bad_link()

    async def preferences(self, request: Request) -> Response:
        sub = await self._preferences_subscriber(request.path_params["token"])
        if sub is None:
            return await self._gone_or_bad_link(request.path_params["token"])
        return self._preferences_page(request, sub, preferences_app.current_preferences(sub))

    async def save_preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub = await self._preferences_subscriber(token)
        if sub is None:
            return self.bad_link()
        form = await request.form(max_files=0, max_fields=60)
        if not self.csrf.valid(request, form, f"preferences:{sub.id}"):
            return self.page("error.html", 403, title=N_("This form has expired"), kind="csrf")
        if form.get("action") == "resubscribe":
            sub = await run_in_threadpool(
                preferences_app.resubscribe_by_token, self.engine, self.settings, self.clock, token
            )
            return self._preferences_page(request, sub, preferences_app.current_preferences(sub), notice="resubscribed")
        fields = PreferencesFields.read(form)
        try:
            prefs = fields.validate(self.settings)
        except InputError as exc:
            entered = fields.as_entered()
            return self._preferences_page(request, sub, entered, 400, error=exc.problem, error_field=exc.where)
        sub = await run_in_threadpool(
            preferences_app.update_preferences, self.engine, self.settings, self.clock, token, prefs
        )
        return self._preferences_page(request, sub, preferences_app.current_preferences(sub), notice="saved")

    # -------------------------------------------------------------- GDPR self-service

    async def download_data(self, request: Request) -> Response:
        """Everything stored about the link's owner, as a JSON attachment (a GET: it changes nothing)."""
        token = request.path_params["token"]
        try:
            data = await run_in_threadpool(
                preferences_app.export_by_token, self.engine, self.settings, self.clock, token
            )
        except TokenError:
            return await self._gone_or_bad_link(token)
        response = JSONResponse(
            data, headers={"Content-Disposition": 'attachment; filename="my-data.json"', "Cache-Control": "no-store"}
        )
        secure(response, DEFAULT_CSP)
        return response

    def _delete_page(self, request: Request, sub: Subscriber) -> HTMLResponse:
        nonce, new = self.csrf.nonce(request)
        return self.page(
            "delete.html",
            reader=sub,
            csrf_nonce=nonce,
            new_cookie=new,
            csrf=self.csrf.field(nonce, f"erase:{sub.id}"),
            email=mask_email(sub.email),
            preferences_url=lifecycle.make_link(self.settings, "preferences", sub, self.clock.now()),
        )

    async def delete_page(self, request: Request) -> Response:
        """The confirmation step of "delete me": one button that POSTs back here."""
        sub = await self._preferences_subscriber(request.path_params["token"])
        if sub is None:
            return await self._gone_or_bad_link(request.path_params["token"])
        return self._delete_page(request, sub)

    async def delete(self, request: Request) -> Response:
        """Erase the link's owner once they confirmed on the page (CSRF-checked)."""
        token = request.path_params["token"]
        sub = await self._preferences_subscriber(token)
        if sub is None:
            return await self._gone_or_bad_link(token)
        form = await request.form(max_files=0, max_fields=10)
        if not self.csrf.valid(request, form, f"erase:{sub.id}"):
            return self.page("error.html", 403, title=N_("This form has expired"), kind="csrf")
        if form.get("confirm") != "erase":
            return self._delete_page(request, sub)
        try:
            await run_in_threadpool(preferences_app.erase_by_token, self.engine, self.settings, self.clock, token)
        except TokenError:
            return await self._gone_or_bad_link(token)
        return self.page("erased.html")

    # -------------------------------------------------------------- archive and articles

    def _archive_response(self, html: str | None) -> Response:
        if html is None:
            return self.page("error.html", 404, title=N_("No such edition"), kind="missing")
        response = HTMLResponse(html)
        secure(response, ARCHIVE_CSP)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    async def archive_list(self, request: Request) -> Response:
        """The editions that went out, newest first, each linking to its copy (/archive/ID)."""
        editions = await run_in_threadpool(past_editions, self.engine, self.settings)
        return self.page("archive.html", editions=editions, feeds=digest_feeds(self.settings))

    async def _feed(self, request: Request) -> Feed | None:
        digest = request.path_params["digest"]
        return await run_in_threadpool(archive_feed, self.engine, self.settings, digest, self.clock.now())

    def _feed_response(self, body: bytes, media_type: str) -> Response:
        response = Response(body, media_type=media_type)
        secure(response, DEFAULT_CSP)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    async def archive_atom(self, request: Request) -> Response:
        """The digest's archive as an Atom feed (one entry per edition that went out)."""
        feed = await self._feed(request)
        if feed is None:
            return self.page("error.html", 404, title=N_("No such digest"), kind="missing")
        return self._feed_response(feed.atom(), "application/atom+xml; charset=utf-8")

    async def archive_json(self, request: Request) -> Response:
        """The digest's archive as a JSON Feed 1.1."""
        feed = await self._feed(request)
        if feed is None:
            return self.page("error.html", 404, title=N_("No such digest"), kind="missing")
        body = json.dumps(feed.json_feed(), ensure_ascii=False, indent=1).encode("utf-8")
        return self._feed_response(body, "application/feed+json; charset=utf-8")

    async def archive_by_id(self, request: Request) -> Response:
        edition_id = request.path_params["edition_id"]
        if edition_id > MAX_ID:  # the database would refuse the number itself (500)
            return self._archive_response(None)
        return self._archive_response(await run_in_threadpool(self.archive_copies.by_id, edition_id))

    async def archive(self, request: Request) -> Response:
        p = request.path_params
        html = await run_in_threadpool(self.archive_copies.by_slot, p["digest"], p["slot"])
        return self._archive_response(html)

    async def article(self, request: Request) -> Response:
        article_id = request.path_params["article_id"]
        article = None if article_id > MAX_ID else await run_in_threadpool(find_article, self.engine, article_id)
        if article is None:
            return self.page("error.html", 404, title=N_("No such story"), kind="missing")
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
        # Starlette hands every handler a plain Exception; this one is registered for HTTPException.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kinds = {
            404: (N_("Page not found"), "missing"),
            405: (N_("Not allowed"), "request"),
            413: (N_("Too large"), "request"),
        }
        title, kind = kinds.get(status, (N_("Something went wrong"), "server"))
        return self.page("error.html", status, title=title, kind=kind)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("web: %s on %s: %s", type(exc).__name__, request.url.path.split("/")[1], exc)
        try:
            return self.page("error.html", 500, title=N_("Something went wrong"), kind="server")
        except TemplateError:
            # Outside the middleware (Starlette answers a crash last): secure it here.
            response = PlainTextResponse("Something went wrong.", status_code=500)
            secure(response, DEFAULT_CSP)
            return response
