"""Feeds: the RSS/Atom sources the service polls, each on its own interval.

A poll is a conditional GET (``If-None-Match`` from the last ETag,
``If-Modified-Since`` from the last ``Last-Modified``) through the one guarded fetch
of :mod:`digest.ingest.fetch`: ``feed_timeout`` for the whole exchange, a cap on the
response size, a limit on redirects, and no non-public address (unless
``feed_allow_private``). The body goes through ``digest.ingest.feed.read_feed`` (feedparser) and
the good entries through ``digest.store.articles.upsert_articles``; a partly broken feed keeps
its good entries and records what was wrong. A failing feed is retried later and
later (the wait doubles with every consecutive failure, up to ``feed_backoff_max``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digest.core.clock import Clock
from digest.core.errors import FeedFetchError, FetchError, InputError, NotFoundError, TooLarge
from digest.core.logs import event, mask_url
from digest.core.settings import ServiceSettings
from digest.ingest.feed import read_feed
from digest.ingest.fetch import FetchLimits, http_get
from digest.ingest.records import check_http_url
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Feed, FeedStatus

log = logging.getLogger(__name__)

MIN_EVERY = timedelta(seconds=10)
# Feeds fetched at the same time: slow feeds hold a slot each, the rest go on.
POLL_CONCURRENCY = 4
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"


# ---------------------------------------------------------------- the feed list


def add_feed(session: Session, url: str, now: datetime, *, category: str = "", every: timedelta) -> Feed:
    """Add a feed, polled first right away; InputError for a bad or already known URL."""
    url = url.strip()
    problem = check_http_url(url)
    if problem:
        raise InputError("URL", f"{mask_url(url)!r} {problem}")
    if every < MIN_EVERY:
        raise InputError("--every", f"must be at least {int(MIN_EVERY.total_seconds())}s")
    if session.exec(select(Feed).where(Feed.url == url)).first() is not None:
        raise InputError("URL", f"feed {mask_url(url)} is already added")
    feed = Feed(
        url=url,
        category=category.strip()[:200],
        every_seconds=int(every.total_seconds()),
        next_poll_at=now,
        created_at=now,
    )
    session.add(feed)
    try:
        session.flush()
    except IntegrityError:  # added by someone else in between
        raise InputError("URL", f"feed {mask_url(url)} is already added") from None
    return feed


def list_feeds(session: Session) -> Sequence[Feed]:
    return session.exec(select(Feed).order_by(col(Feed.id))).all()


def find_feed(session: Session, ref: str) -> Feed | None:
    """A feed by URL or by id."""
    if ref.isdigit():
        return session.get(Feed, int(ref))
    return session.exec(select(Feed).where(Feed.url == ref.strip())).first()


def remove_feed(session: Session, ref: str) -> Feed:
    """Remove a feed (its articles stay); NotFoundError if there is no such feed."""
    feed = find_feed(session, ref)
    if feed is None:
        raise NotFoundError(f"no feed {ref}")
    session.delete(feed)
    session.flush()
    return feed


def due_feeds(session: Session, now: datetime) -> list[int]:
    rows = session.exec(select(Feed.id).where(Feed.next_poll_at <= now).order_by(col(Feed.next_poll_at))).all()
    return [r for r in rows if r is not None]


# ---------------------------------------------------------------- fetching


@dataclass
class Fetched:
    status_code: int
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


def fetch_limits(cfg: ServiceSettings) -> FetchLimits:
    """The limits of every fetch the service makes: feed_timeout in all, size, redirects, addresses."""
    return FetchLimits(
        timeout=cfg.feed_timeout,
        max_bytes=cfg.feed_max_bytes,
        max_redirects=cfg.feed_max_redirects,
        allow_private=cfg.feed_allow_private,
        headers={"User-Agent": cfg.feed_user_agent, "Accept": _ACCEPT},
    )


def fetch(feed: Feed, cfg: ServiceSettings) -> Fetched:
    """GET the feed conditionally; raise FeedFetchError with a one-line reason on failure."""
    headers = {}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    try:
        resp = http_get(feed.url, fetch_limits(cfg), headers)
    except TooLarge:
        raise FeedFetchError(f"response is larger than feed_max_bytes {cfg.feed_max_bytes}") from None
    except FetchError as exc:
        raise FeedFetchError(str(exc)) from None
    if resp.status_code == 304:
        return Fetched(304, etag=feed.etag, last_modified=feed.last_modified)
    if resp.status_code >= 300:
        raise FeedFetchError(f"HTTP {resp.status_code} {resp.reason}".strip())
    return Fetched(
        resp.status_code, resp.body, etag=resp.headers.get("etag"), last_modified=resp.headers.get("last-modified")
    )


# ---------------------------------------------------------------- polling


@dataclass
class PollResult:
    """What one poll of one feed did."""

    feed_id: int
    url: str
    status: str
    new: int = 0
    updated: int = 0
    problems: int = 0
    error: str | None = None
    next_poll_at: datetime | None = None


def backoff(feed: Feed, failures: int, cfg: ServiceSettings) -> timedelta:
    """The wait after ``failures`` consecutive failures: the interval, doubled each time, capped."""
    every = timedelta(seconds=feed.every_seconds)
    wait = every * (2 ** min(failures, 30))
    return max(every, min(wait, cfg.feed_backoff_max))


def _summary(problems: list[str], limit: int = 3) -> str:
    text = "; ".join(problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more"
    return text[:2000]


def poll_feed(
    engine: Engine,
    cfg: ServiceSettings,
    feed_id: int,
    clock: Clock,
    store_lock: AbstractContextManager[object] | None = None,
) -> PollResult:
    """Fetch, parse and store one feed; record its status, validators and next poll time.

    ``store_lock``, when given, is held while the articles are written (feeds polled
    side by side may carry the same story).
    """
    with session_scope(engine) as session:
        feed = session.get(Feed, feed_id)
        if feed is None:
            raise NotFoundError(f"no feed {feed_id}")
    result = PollResult(feed_id, feed.url, FeedStatus.OK)
    now = clock.now()
    try:
        got = fetch(feed, cfg)
    except FeedFetchError as exc:
        got = None
        result.status, result.error = FeedStatus.ERROR, str(exc)
    if got is not None and got.not_modified:
        result.status = FeedStatus.NOT_MODIFIED
    elif got is not None:
        parsed = read_feed(got.body, feed.url, default_category=feed.category)
        problems = [str(p) for p in parsed.problems]
        result.problems = len(problems)
        if parsed.drafts:
            with store_lock or nullcontext(), session_scope(engine) as session:
                report = upsert_articles(session, parsed.drafts, now)
            result.new, result.updated = report.inserted, report.updated
            if problems:
                result.status, result.error = FeedStatus.PARTIAL, _summary(problems)
        elif problems:
            result.status, result.error = FeedStatus.ERROR, _summary(problems)
    with session_scope(engine) as session:
        feed = session.get(Feed, feed_id)
        if feed is None:  # removed while we polled
            return result
        feed.last_polled_at = now
        feed.status = result.status
        feed.last_error = result.error
        if result.status == FeedStatus.ERROR:
            feed.failures += 1
            feed.next_poll_at = now + backoff(feed, feed.failures, cfg)
        else:
            feed.failures = 0
            feed.last_ok_at = now
            feed.last_new = result.new
            feed.next_poll_at = now + timedelta(seconds=feed.every_seconds)
            if got is not None and not got.not_modified:
                feed.etag, feed.last_modified = got.etag, got.last_modified
        session.add(feed)
        result.next_poll_at = feed.next_poll_at
    level = logging.WARNING if result.status in (FeedStatus.ERROR, FeedStatus.PARTIAL) else logging.INFO
    event(
        log,
        "feed.polled",
        level,
        feed=feed_id,
        url=mask_url(feed.url),
        status=result.status,
        new=result.new,
        updated=result.updated,
        error=result.error,
        next_poll=result.next_poll_at,
    )
    return result


def poll_due(
    engine: Engine,
    cfg: ServiceSettings,
    clock: Clock,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[PollResult]:
    """Poll every feed whose time has come, ``POLL_CONCURRENCY`` at a time, until told to stop.

    Each fetch ends within ``feed_timeout``, and feeds are polled side by side, so a
    feed that answers slowly (or trickles its headers) holds one slot for at most
    that long while the others are polled. Results come in due order.
    """
    with session_scope(engine) as session:
        ids = due_feeds(session, clock.now())
    if not ids:
        return []

    # Fetch side by side, store one at a time: two feeds with the same story must not
    # race to insert it (a unique violation or a deadlock on PostgreSQL).
    store_lock = threading.Lock()

    def one(feed_id: int) -> PollResult | None:
        if should_stop():
            return None
        try:
            return poll_feed(engine, cfg, feed_id, clock, store_lock)
        except NotFoundError:  # removed meanwhile
            return None

    with ThreadPoolExecutor(min(POLL_CONCURRENCY, len(ids)), thread_name_prefix="digest-feed") as pool:
        return [r for r in pool.map(one, ids) if r is not None]
