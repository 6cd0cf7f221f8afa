"""The guarded fetch: no request reaches a non-public address, and every fetch ends by its deadline.

Real local servers only: the feed server of tests/feedserver.py (on 127.0.0.1 and on
127.0.0.2, both loopback) and a raw socket server that trickles its headers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.core.clock import FixedClock
from digest.core.errors import BlockedAddress, FetchTimeout, InputError
from digest.core.settings import ServiceSettings
from digest.ingest.feeds import add_feed, poll_due
from digest.ingest.fetch import FetchLimits, http_get, is_public_address
from digest.ingest.reader import read_source
from digest.store.db import make_engine, session_scope
from digest.store.models import Article, FeedStatus
from tests.conftest import NOW
from tests.feedserver import FeedServer, Route, feed_server, item, rss, trickle_server


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        s.routes["/secret.json"] = Route(body=b'{"title": "Internal admin page"}')
        yield s


def limits(**kw: object) -> FetchLimits:
    values: dict[str, object] = {"timeout": 2.0, "max_bytes": 100_000, "max_redirects": 3}
    values.update(kw)
    return FetchLimits(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "fc00::1",
        "fe80::1",
        "224.0.0.1",
        "255.255.255.255",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
    ],
)
def test_non_public_address_is_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111"])
def test_public_address_is_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]", "2130706433"], ids=lambda h: h
)
def test_loopback_url_is_refused_before_any_request(server: FeedServer, host: str) -> None:
    url = f"http://{host}:{server.port}/secret.json"

    with pytest.raises(BlockedAddress, match="non-public address"):
        http_get(url, limits())

    assert server.requests == []


def test_metadata_address_is_refused() -> None:
    with pytest.raises(BlockedAddress, match="169.254.169.254"):
        http_get("http://169.254.169.254/latest/meta-data/", limits())


def test_redirect_to_a_non_public_address_is_refused() -> None:
    # 127.0.0.2 plays the public site; 127.0.0.1 the internal one it redirects to.
    with feed_server("127.0.0.2") as outside, feed_server() as inside:
        inside.routes["/secret.json"] = Route(body=b'{"title": "Internal admin page"}')
        outside.routes["/feed.json"] = Route(302, headers={"Location": inside.url("/secret.json")})
        only_outside = limits(address_allowed=lambda a: a == "127.0.0.2")

        with pytest.raises(BlockedAddress, match="127.0.0.1"):
            http_get(outside.url("/feed.json"), only_outside)

        assert len(outside.requests) == 1 and inside.requests == []


def test_url_credentials_follow_a_redirect_on_the_same_origin_only() -> None:
    def private(handler: object) -> Route:
        authorised = "Authorization" in handler.headers  # type: ignore[attr-defined]
        return Route(200, b"members only") if authorised else Route(401, b"who are you")

    with feed_server() as site, feed_server("127.0.0.2") as elsewhere:
        site.routes["/private.xml"] = private
        site.routes["/old.xml"] = Route(301, headers={"Location": site.url("/private.xml")})
        site.routes["/away.xml"] = Route(302, headers={"Location": elsewhere.url("/x.xml")})
        creds = f"http://reader:pw@127.0.0.1:{site.port}"

        same = http_get(f"{creds}/old.xml", limits(allow_private=True))
        http_get(f"{creds}/away.xml", limits(allow_private=True))

    assert (same.status_code, same.body) == (200, b"members only")
    assert "authorization" not in elsewhere.hits("/x.xml")[0]


def test_allow_private_reaches_loopback(server: FeedServer) -> None:
    got = http_get(server.url("/secret.json"), limits(allow_private=True))

    assert got.status_code == 200 and b"Internal admin page" in got.body


def test_articles_import_url_refuses_loopback(server: FeedServer) -> None:
    with pytest.raises(InputError, match="non-public address"):
        read_source(server.url("/secret.json"))
    assert server.requests == []


def test_articles_import_of_a_loopback_url_through_the_cli(server: FeedServer, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_CONFIG="/dev/null", DIGEST_DATABASE_URL=f"sqlite:///{db}")
    digest = [str(Path(sys.executable).parent / "digest"), "articles", "import", server.url("/secret.json")]

    refused = subprocess.run(digest, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 7  # a whole source not read
    assert "127.0.0.1, a non-public address" in refused.stderr and "Traceback" not in refused.stderr
    assert server.requests == []

    env["DIGEST_SERVICE__FEED_ALLOW_PRIVATE"] = "true"
    allowed = subprocess.run(digest, env=env, capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    engine = make_engine(f"sqlite:///{db}")
    with session_scope(engine) as s:
        assert s.exec(select(Article.title)).all() == ["Internal admin page"]
    engine.dispose()


def test_feed_on_loopback_is_an_error_and_never_requested(
    engine: Engine, server: FeedServer, clock: FixedClock
) -> None:
    server.routes["/a.xml"] = Route(body=rss(item(1)))
    with session_scope(engine) as s:
        add_feed(s, server.url("/a.xml"), NOW, every=timedelta(minutes=15))

    [result] = poll_due(engine, ServiceSettings(), clock)

    assert result.status == FeedStatus.ERROR and "non-public address" in (result.error or "")
    assert server.requests == []


# ---------------------------------------------------------------- the overall deadline


def test_trickled_headers_end_at_the_deadline() -> None:
    with trickle_server() as base:
        started = time.monotonic()
        with pytest.raises(FetchTimeout, match="timed out after 1s"):
            http_get(f"{base}/feed.xml", limits(timeout=1.0, allow_private=True))
        elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.0, elapsed  # the server would keep trickling for 15 s


def test_articles_import_url_with_trickled_headers_ends_at_the_deadline() -> None:
    with trickle_server() as base:
        started = time.monotonic()
        with pytest.raises(InputError, match="timed out after 1s"):
            read_source(f"{base}/feed.xml", fetch_timeout=1.0, allow_private=True)
        assert time.monotonic() - started < 2.0


def test_trickling_feeds_do_not_stop_the_others(engine: Engine, server: FeedServer, clock: FixedClock) -> None:
    server.routes["/good.xml"] = Route(body=rss(item(1, "The good feed still arrives")))
    cfg = ServiceSettings(feed_timeout=1.0, feed_allow_private=True)
    with trickle_server() as base:
        with session_scope(engine) as s:
            # Three slow feeds due first: one after another they would take 3 x feed_timeout.
            slow = [
                add_feed(s, f"{base}/slow{n}.xml", NOW - timedelta(minutes=5 - n), every=timedelta(minutes=15)).id
                for n in range(3)
            ]
            good = add_feed(s, server.url("/good.xml"), NOW, every=timedelta(minutes=15)).id
        started = time.monotonic()

        results = {r.feed_id: r for r in poll_due(engine, cfg, clock)}
        elapsed = time.monotonic() - started

    assert list(results) == [*slow, good]  # in due order
    assert all(results[f].status == FeedStatus.ERROR and results[f].error == "timed out after 1s" for f in slow)
    assert results[good].status == FeedStatus.OK and results[good].new == 1
    assert elapsed < 2.5, elapsed  # side by side: about one feed_timeout, not three


def test_feeds_polled_side_by_side_with_the_same_stories_store_each_once(
    engine: Engine, server: FeedServer, clock: FixedClock
) -> None:
    shared = rss("".join(item(n) for n in range(30)))
    for n in range(4):
        server.routes[f"/copy{n}.xml"] = Route(body=shared)
    with session_scope(engine) as s:
        for n in range(4):
            add_feed(s, server.url(f"/copy{n}.xml"), NOW, every=timedelta(minutes=15))

    results = poll_due(engine, ServiceSettings(feed_allow_private=True), clock)

    assert [r.status for r in results] == [FeedStatus.OK] * 4
    assert sum(r.new for r in results) == 30 and sum(r.updated for r in results) == 90
    with session_scope(engine) as s:
        assert len(s.exec(select(Article.id)).all()) == 30
