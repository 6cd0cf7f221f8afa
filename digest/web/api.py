"""The REST API under ``/api/v1`` (FastAPI, mounted in the web app): parse, authorise, call one app function.

FastAPI builds the OpenAPI schema (``/api/v1/openapi.json``) from the typed
handlers below, so the schema and the routes cannot drift apart. Handlers are plain
functions: FastAPI runs them in its thread pool, where the store may block.

Every request needs ``Authorization: Bearer <key>`` (``digest apikeys create``) with
the scope of its route; errors answer JSON: 401 (with ``WWW-Authenticate``) for a
missing, unknown or revoked key, 403 naming the scope needed, 404 for an unknown id,
422 listing each invalid field (``loc``: where in the body, e.g. ``["body", 3, "url"]``
for the url of the fourth article of a batch), 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from digest.app import api as use
from digest.app import apikeys
from digest.app.subscriptions import NoticeSender
from digest.core.clock import Clock
from digest.core.errors import ApiKeyError, InputError, InvalidFields, NotFoundError, RateLimited, ScopeError
from digest.core.logs import mask_emails
from digest.core.settings import Settings
from digest.ingest.records import LEAD_MAX_CHARS, MAX_PIXELS, MAX_PRIORITY

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
REALM = 'Bearer realm="digest"'


# ---------------------------------------------------------------- schema models


class Problem(BaseModel):
    """What went wrong (401, 403, 404, 429)."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description='Where: e.g. ["body", 3, "url"] (the url of the fourth article).')
    msg: str
    type: str


class Invalid(BaseModel):
    """Every invalid field of the request (422)."""

    detail: list[FieldProblem]


class ArticleIn(BaseModel):
    """An article as the JSON importer reads it (docs/import-formats.md); only ``title`` is required.

    Used for the schema only: the body is validated by the importer itself.
    """

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="Headline, reduced to one line of plain text.")
    url: str | None = Field(None, description="Absolute http(s) link; with guid, what makes a repeat an update.")
    guid: str | int | None = Field(None, description="Stable identity when there is no url.")
    source: str | None = None
    summary: str | None = Field(None, description="Plain text; default: the first paragraph of body.")
    body: str | None = Field(None, description="HTML, sanitised to a safe allow-list.")
    category: str | None = None
    section: str | None = Field(None, description="Another name of category.")
    tags: list[str] | str | None = Field(None, description="A list, or one comma-separated string.")
    author: str | None = None
    image_url: str | None = None
    image_alt: str | None = None
    image_width: int | None = Field(None, ge=1, le=MAX_PIXELS)
    image_height: int | None = Field(None, ge=1, le=MAX_PIXELS)
    language: str | None = Field(None, description="BCP 47 tag, e.g. en, pt-BR.")
    published_at: str | None = Field(None, description="ISO 8601 with a timezone, e.g. 2026-03-14T08:30:00Z.")
    published: str | None = Field(None, description="Another name of published_at.")
    breaking: bool | None = None
    priority: int | None = Field(None, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    lead: str | None = Field(
        None,
        max_length=LEAD_MAX_CHARS,
        description="The editor's lead-in (plain text): the bold opening line of a top story. "
        '"" clears it; absent keeps the stored one.',
    )


ARTICLE_SCHEMA = ArticleIn.model_json_schema()
ARTICLES_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    ARTICLE_SCHEMA,
                    {"type": "array", "items": ARTICLE_SCHEMA, "minItems": 1, "maxItems": use.MAX_BATCH},
                ]
            }
        }
    },
}


class StoredArticle(BaseModel):
    id: int | None
    url: str | None
    guid: str


class PostedArticles(BaseModel):
    inserted: int
    updated: int
    merged: int = Field(description="Repeats of a story already in the batch or stored under another guid.")
    articles: list[StoredArticle] = Field(description="Each article of the request, in its order.")


class ArticleOut(BaseModel):
    id: int
    guid: str
    url: str | None
    title: str
    summary: str
    source: str
    category: str
    tags: list[str]
    author: str
    image_url: str | None
    language: str
    published_at: datetime
    dated: bool = Field(description="False: the source gave no date; published_at is when it was first seen.")
    breaking: bool
    priority: int
    hidden: bool
    lead: str = Field(description="The editor's lead-in; empty: the summary's first sentence stands in.")
    updated_at: datetime


class ArticleList(BaseModel):
    since: datetime
    articles: list[ArticleOut]


class SubscriberPrefs(BaseModel):
    """Preferences; in an update, only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    topics: list[str] = Field(default_factory=list, description="Sections; empty: every section.")
    timezone: str | None = Field(None, description="IANA timezone, e.g. Europe/Berlin.")
    send_time: str | None = Field(None, description="Local time HH:MM (default: the digest's schedule).")
    frequency: Literal["daily", "weekly"] | None = None
    weekday: int | None = Field(None, ge=0, le=6, description="Day of a weekly digest, 0 = Monday.")
    breaking: bool | None = Field(None, description="Breaking stories outside the topics too.")
    locale: str | None = Field(
        None, description="Their language, a BCP 47 tag such as de, fr or pt-BR; null: the digest's language."
    )
    alerts: bool | None = Field(None, description="Breaking news alerts by email (off for a new subscriber).")
    quiet_start: str | None = Field(None, description="Local HH:MM from which no alert is sent (with quiet_end).")
    quiet_end: str | None = Field(None, description="Local HH:MM until which no alert is sent (with quiet_start).")


class SubscriberIn(SubscriberPrefs):
    """A new subscriber: pending with a confirmation mail, or active with ``consent``."""

    email: str
    consent: dict[str, Any] | None = Field(
        None,
        description="Your proof of consent (e.g. source, time, wording); kept as the subscriber's confirmation "
        "event. Without it the subscriber is pending until they confirm by mail, and only email, name, "
        "topics and timezone may be given.",
    )


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    status: str
    topics: list[str]
    timezone: str | None
    send_time: str | None
    frequency: str
    weekday: int | None
    breaking: bool
    locale: str | None
    alerts: bool
    quiet_start: str | None
    quiet_end: str | None
    created_at: datetime
    updated_at: datetime


class SubscriberList(BaseModel):
    subscribers: list[SubscriberOut]


class EditionOut(BaseModel):
    id: int
    digest: str
    slot: str
    status: str
    built_at: datetime
    sent_at: datetime | None
    article_count: int
    deliveries: dict[str, int] = Field(description="How many deliveries are in each status (queued, sent...).")


class EditionList(BaseModel):
    editions: list[EditionOut]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: ("No usable API key.", Problem),
        403: ("The key lacks the scope this needs.", Problem),
        404: ("No such object.", Problem),
        422: ("Invalid request: each problem with its location.", Invalid),
        429: ("Too many requests with this key this minute; see Retry-After.", Problem),
    }
    return {c: {"description": described[c][0], "model": described[c][1]} for c in (401, 403, 429, *codes)}


Id = Annotated[int, Path(ge=1, le=use.MAX_ID)]


# ---------------------------------------------------------------- the app


def make_api(settings: Settings, engine: Engine, clock: Clock, mailer: NoticeSender) -> FastAPI:
    """The API app, to mount at :data:`PREFIX`."""
    api = FastAPI(
        title="digest API",
        version="1",
        description="Push articles, manage subscribers, read editions. See docs/api.md.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": PREFIX}],
        root_path_in_servers=False,
    )
    bearer = HTTPBearer(auto_error=False, description="A key from `digest apikeys create`.")

    def scope(needed: str) -> Any:
        def authorised(request: Request, _: Any = Depends(bearer)) -> apikeys.Caller:
            return apikeys.authorise(
                engine, clock, request.headers.get("authorization"), needed, settings.api.rate_per_minute
            )

        return Depends(authorised)

    READ, ARTICLES, SUBSCRIBERS = scope("read"), scope("articles:write"), scope("subscribers:write")
    _errors(api)

    @api.post(
        "/articles",
        dependencies=[ARTICLES],
        response_model=PostedArticles,
        responses=_responses(422),
        openapi_extra={"requestBody": ARTICLES_BODY},
        summary="Add or update articles (one, or a batch of up to 500)",
    )
    def post_articles(body: Annotated[Any, Body()]) -> Any:
        """Same fields and validation as the JSON importer; a url or guid already stored updates that article.

        All or nothing: one invalid article rejects the request (422 naming each).
        """
        return use.post_articles(engine, clock, body)

    @api.get("/articles", dependencies=[READ], response_model=ArticleList, responses=_responses(422))
    def list_articles(
        since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with timezone; default 24 h ago.")] = None,
        limit: Annotated[int, Query(ge=1, le=use.MAX_LIST)] = 100,
    ) -> Any:
        """The newest articles published after ``since`` (hidden ones too, marked)."""
        return use.list_articles(engine, clock, since, limit)

    @api.delete("/articles/{article_id}", dependencies=[ARTICLES], status_code=204, responses=_responses(404, 422))
    def hide_article(article_id: Id) -> Response:
        """Hide an article (as ``digest articles hide``): kept out of new editions and the archive pages."""
        use.hide_article(engine, clock, article_id)
        return Response(status_code=204)

    @api.post(
        "/subscribers",
        dependencies=[SUBSCRIBERS],
        status_code=201,
        response_model=SubscriberOut,
        responses={200: {"description": "Already there", "model": SubscriberOut}, **_responses(422)},
    )
    def create_subscriber(body: SubscriberIn) -> Any:
        """Add a subscriber: pending with a confirmation mail (double opt-in), or active with ``consent``."""
        sub, created = use.create_subscriber(engine, settings, clock, mailer, _fields(body))
        return JSONResponse(SubscriberOut(**sub).model_dump(mode="json"), status_code=201 if created else 200)

    @api.get("/subscribers", dependencies=[READ], response_model=SubscriberList, responses=_responses(422))
    def find_subscribers(email: Annotated[str, Query(max_length=320, description="The address, any case.")]) -> Any:
        """Look a subscriber up by address: a list of none or one."""
        return use.find_subscribers(engine, email)

    @api.get(
        "/subscribers/{subscriber_id}",
        dependencies=[READ],
        response_model=SubscriberOut,
        responses=_responses(404, 422),
    )
    def get_subscriber(subscriber_id: Id) -> Any:
        return use.get_subscriber(engine, subscriber_id)

    @api.patch(
        "/subscribers/{subscriber_id}",
        dependencies=[SUBSCRIBERS],
        response_model=SubscriberOut,
        responses=_responses(404, 422),
    )
    def update_subscriber(subscriber_id: Id, body: SubscriberPrefs) -> Any:
        """Change preferences: only the fields given."""
        return use.update_subscriber(engine, settings, clock, subscriber_id, _fields(body))

    @api.post(
        "/subscribers/{subscriber_id}/unsubscribe",
        dependencies=[SUBSCRIBERS],
        response_model=SubscriberOut,
        responses=_responses(404, 422),
    )
    def unsubscribe(subscriber_id: Id) -> Any:
        """Unsubscribe (the address is suppressed: only its owner's confirmation brings it back)."""
        return use.unsubscribe_subscriber(engine, clock, subscriber_id)

    @api.delete(
        "/subscribers/{subscriber_id}", dependencies=[SUBSCRIBERS], status_code=204, responses=_responses(404, 422)
    )
    def delete_subscriber(subscriber_id: Id) -> Response:
        """Erase a subscriber and their history (GDPR); only a hash of the address stays, suppressed."""
        use.delete_subscriber(engine, clock, subscriber_id)
        return Response(status_code=204)

    @api.get("/editions", dependencies=[READ], response_model=EditionList, responses=_responses(422))
    def list_editions(
        digest: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=use.MAX_LIST)] = 50,
    ) -> Any:
        """The newest editions, with their deliveries counted by status."""
        return use.list_editions(engine, digest, limit)

    @api.get("/editions/{edition_id}", dependencies=[READ], response_model=EditionOut, responses=_responses(404, 422))
    def get_edition(edition_id: Id) -> Any:
        return use.get_edition(engine, edition_id)

    return api


def _fields(body: SubscriberPrefs) -> use.SubscriberFields:
    given = frozenset(body.model_fields_set)
    values = body.model_dump()
    return use.SubscriberFields(given=given, **{**values, "topics": tuple(values.get("topics") or ())})


# ---------------------------------------------------------------- errors


def _errors(api: FastAPI) -> None:
    def handler(kind: type[Exception]) -> Callable[[Callable[[Request, Exception], Response]], Any]:
        def register(answer: Callable[[Request, Exception], Response]) -> Any:
            async def handle(request: Request, exc: Exception) -> Response:
                return answer(request, exc)

            api.add_exception_handler(kind, handle)
            return answer

        return register

    @handler(ApiKeyError)
    def unauthorised(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ScopeError):
            challenge = f'{REALM}, error="insufficient_scope", scope="{exc.needed}"'
            return JSONResponse({"detail": str(exc)}, 403, headers={"WWW-Authenticate": challenge})
        # RFC 6750: a request that sent no credentials gets the bare challenge.
        challenge = f'{REALM}, error="invalid_token"' if request.headers.get("authorization") else REALM
        return JSONResponse({"detail": str(exc)}, 401, headers={"WWW-Authenticate": challenge})

    @handler(RateLimited)
    def limited(request: Request, exc: Exception) -> Response:
        retry = str(exc.retry_after) if isinstance(exc, RateLimited) else "60"
        return JSONResponse({"detail": str(exc)}, 429, headers={"Retry-After": retry})

    @handler(NotFoundError)
    def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, 404)

    @handler(InputError)
    def invalid(request: Request, exc: Exception) -> Response:
        if isinstance(exc, InvalidFields):
            problems = exc.errors
        elif isinstance(exc, InputError):
            problems = [(("body", exc.where), exc.problem)]
        else:  # pragma: no cover - registered for InputError only
            problems = [(("body",), str(exc))]
        detail = [{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in problems]
        return JSONResponse({"detail": detail}, 422)

    @handler(Exception)
    def crashed(request: Request, exc: Exception) -> Response:
        log.error("api: %s: %s", type(exc).__name__, mask_emails(str(exc)))
        return JSONResponse({"detail": "internal error"}, 500)
