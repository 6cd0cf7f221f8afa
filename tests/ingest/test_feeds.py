"""Feed polling against a local HTTP server: conditional GET, size cap, redirects, back-off, broken feeds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.core.clock import FixedClock
from digest.core.errors import InputError, NotFoundError
from digest.core.settings import ServiceSettings
from digest.ingest.feeds import add_feed, list_feeds, poll_due, poll_feed, remove_feed
from digest.store.db import session_scope
from digest.store.models import Article, Feed, FeedStatus
from tests.conftest import NOW
from tests.feedserver import FeedServer, Route, feed_server, item, rss

# The feeds here are served from loopback, which a real installation refuses.
CFG = ServiceSettings(
    feed_timeout=2.0,
    feed_max_bytes=64_000,
    feed_max_redirects=3,
    feed_backoff_max="1h",  # type: ignore[arg-type]
    feed_allow_private=True,
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def add(engine: Engine, url: str, every: timedelta = timedelta(minutes=15), category: str = "") -> int:
    with session_scope(engine) as s:
        feed = add_feed(s, url, NOW, every=every, category=category)
        assert feed.id is not None
        return feed.id


def feed_row(engine: Engine, feed_id: int) -> Feed:
    with session_scope(engine) as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None
        return feed


def titles(engine: Engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(s.exec(select(Article.title)).all())


def poll(engine: Engine, feed_id: int, clock: FixedClock) -> object:
    return poll_feed(engine, CFG, feed_id, clock)


def test_new_feed_is_polled_and_its_entries_stored(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/a.xml"] = Route(body=rss(item(1) + item(2, "Another headline entirely")))
    feed_id = add(engine, server.url("/a.xml"), category="Wire")

    results = poll_due(engine, CFG, clock)

    assert [(r.status, r.new) for r in results] == [(FeedStatus.OK, 2)]
    assert titles(engine) == ["Another headline entirely", "Story number 1"]
    row = feed_row(engine, feed_id)
    assert row.status == FeedStatus.OK and row.next_poll_at == NOW + timedelta(minutes=15)
    assert server.hits("/a.xml")[0]["user-agent"].startswith("digest/")


def test_feed_is_not_polled_again_before_its_interval(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/a.xml"] = Route(body=rss(item(1)))
    add(engine, server.url("/a.xml"), every=timedelta(minutes=5))
    poll_due(engine, CFG, clock)
    clock.advance(timedelta(minutes=4))
    assert poll_due(engine, CFG, clock) == []
    clock.advance(timedelta(minutes=1))
    assert len(poll_due(engine, CFG, clock)) == 1
    assert len(server.hits("/a.xml")) == 2


def test_etag_is_sent_back_and_304_changes_nothing(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/a.xml"] = Route(body=rss(item(1)), etag='"v1"')
    feed_id = add(engine, server.url("/a.xml"))
    poll(engine, feed_id, clock)
    clock.advance(timedelta(minutes=15))

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.NOT_MODIFIED  # type: ignore[attr-defined]
    assert server.hits("/a.xml")[1]["if-none-match"] == '"v1"'
    assert feed_row(engine, feed_id).etag == '"v1"'
    assert titles(engine) == ["Story number 1"]


def test_last_modified_is_sent_back_as_if_modified_since(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    stamp = "Wed, 25 Nov 2026 05:00:00 GMT"
    server.routes["/a.xml"] = Route(body=rss(item(1)), last_modified=stamp)
    feed_id = add(engine, server.url("/a.xml"))
    poll(engine, feed_id, clock)

    result = poll(engine, feed_id, clock)

    assert server.hits("/a.xml")[1]["if-modified-since"] == stamp
    assert result.status == FeedStatus.NOT_MODIFIED  # type: ignore[attr-defined]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_response_is_an_error_and_nothing_is_stored(
    engine: Engine, server: FeedServer, clock: FixedClock, chunked: bool
) -> None:
    big = rss("".join(item(n, f"Padding story {n} " + "x" * 200) for n in range(400)))
    assert len(big) > CFG.feed_max_bytes
    server.routes["/big.xml"] = Route(body=big, chunked=chunked)
    feed_id = add(engine, server.url("/big.xml"))

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.ERROR  # type: ignore[attr-defined]
    assert "larger than feed_max_bytes 64000" in (result.error or "")  # type: ignore[attr-defined]
    assert titles(engine) == []


def test_redirect_loop_is_an_error(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/loop1"] = Route(302, headers={"Location": "/loop2"})
    server.routes["/loop2"] = Route(302, headers={"Location": "/loop1"})
    feed_id = add(engine, server.url("/loop1"))

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.ERROR and result.error == "more than 3 redirects"  # type: ignore[attr-defined]
    assert len(server.requests) == 4  # the first request and three redirects, then it stops


def test_a_redirect_within_the_limit_is_followed(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/old.xml"] = Route(301, headers={"Location": "/new.xml"})
    server.routes["/new.xml"] = Route(body=rss(item(1)))
    feed_id = add(engine, server.url("/old.xml"))

    assert poll(engine, feed_id, clock).status == FeedStatus.OK  # type: ignore[attr-defined]


def test_broken_feed_keeps_its_good_entries_and_records_the_error(
    engine: Engine, server: FeedServer, clock: FixedClock
) -> None:
    broken = rss(item(1) + "<item><title>Second & unescaped</title><link>https://wire.example.com/2</link></item>")
    server.routes["/broken.xml"] = Route(body=broken)
    feed_id = add(engine, server.url("/broken.xml"))

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.PARTIAL and result.new == 2  # type: ignore[attr-defined]
    row = feed_row(engine, feed_id)
    assert row.status == FeedStatus.PARTIAL and "malformed" in (row.last_error or "")
    assert row.failures == 0  # it delivered: no back-off
    assert titles(engine) == ["Second & unescaped", "Story number 1"]


def test_failing_feed_backs_off_exponentially_and_recovers(
    engine: Engine, server: FeedServer, clock: FixedClock
) -> None:
    server.routes["/flaky.xml"] = Route(503, b"busy")
    feed_id = add(engine, server.url("/flaky.xml"), every=timedelta(minutes=5))
    waits = []
    for _ in range(5):
        poll(engine, feed_id, clock)
        row = feed_row(engine, feed_id)
        waits.append(row.next_poll_at - clock.now())
        clock.set(row.next_poll_at)
    assert waits == [timedelta(minutes=m) for m in (10, 20, 40, 60, 60)]  # doubling, capped at feed_backoff_max
    assert feed_row(engine, feed_id).last_error == "HTTP 503 Service Unavailable"

    server.routes["/flaky.xml"] = Route(body=rss(item(1)))
    poll(engine, feed_id, clock)

    row = feed_row(engine, feed_id)
    assert (row.status, row.failures, row.next_poll_at - clock.now()) == (FeedStatus.OK, 0, timedelta(minutes=5))


def test_not_a_feed_is_an_error(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/page.html"] = Route(body=b"<html><body>hello</body></html>")
    feed_id = add(engine, server.url("/page.html"))

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.ERROR and "not an RSS or Atom feed" in (result.error or "")  # type: ignore[attr-defined]


def test_slow_server_times_out(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/slow.xml"] = Route(body=rss(item(1)), delay=3.0)
    feed_id = add(engine, server.url("/slow.xml"))
    cfg = CFG.model_copy(update={"feed_timeout": 0.5})

    result = poll_feed(engine, cfg, feed_id, clock)

    assert result.status == FeedStatus.ERROR and result.error == "timed out after 0.5s"


def test_unreachable_feed_is_an_error(engine: Engine, clock: FixedClock) -> None:
    from digest.transport.sink import free_port

    feed_id = add(engine, f"http://127.0.0.1:{free_port()}/gone.xml")

    result = poll(engine, feed_id, clock)

    assert result.status == FeedStatus.ERROR and "ConnectError" in (result.error or "")  # type: ignore[attr-defined]


def test_feed_list_add_remove(engine: Engine) -> None:
    add(engine, "https://wire.example.com/a.xml")
    with pytest.raises(InputError, match="already added"):
        add(engine, "https://wire.example.com/a.xml")
    with pytest.raises(InputError, match="http"):
        add(engine, "ftp://wire.example.com/a.xml")
    with session_scope(engine) as s:
        assert [f.url for f in list_feeds(s)] == ["https://wire.example.com/a.xml"]
        remove_feed(s, "https://wire.example.com/a.xml")
        with pytest.raises(NotFoundError):
            remove_feed(s, "https://wire.example.com/a.xml")
        assert list_feeds(s) == []


def test_feed_password_is_masked_in_the_poll_log(
    engine: Engine, server: FeedServer, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/private.xml"] = Route(body=rss(item(1)))
    feed_id = add(engine, f"http://reader:hunter2-feed-pass@127.0.0.1:{server.port}/private.xml")

    with caplog.at_level("INFO", logger="digest.ingest.feeds"):
        poll(engine, feed_id, clock)

    [record] = [r for r in caplog.records if getattr(r, "event", None) == "feed.polled"]
    assert record.fields["url"] == f"http://reader:***@127.0.0.1:{server.port}/private.xml"  # type: ignore[attr-defined]
    assert server.hits("/private.xml")[0]["authorization"].startswith("Basic ")  # the password is still used
