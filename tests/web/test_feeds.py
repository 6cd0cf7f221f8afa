"""Feeds out over real HTTP: each digest's archive as Atom and JSON Feed 1.1, parsed back."""

from __future__ import annotations

import json
from datetime import timedelta

import feedparser
import httpx
import lxml.html
import pytest
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.ingest.jsonfeed import read_json_feed
from digest.ingest.save import upsert_articles
from digest.store.db import session_scope
from digest.store.models import Edition, EditionStatus
from tests.conftest import NOW, STANDARD_DRAFTS, draft

TRICKY = "Faith & Joy <b>win</b> the “prize”"


@pytest.fixture
def editions(engine: Engine, web_settings: Settings) -> list[int]:
    """Two editions: the first went out, the second is built but not sent (never in a feed)."""
    with session_scope(engine) as s:
        upsert_articles(s, [*STANDARD_DRAFTS, draft(TRICKY, 30, category="World")], NOW)
    ids = [get_or_build_edition(engine, web_settings, "daily", NOW + timedelta(days=d))[0].id for d in range(2)]
    with session_scope(engine) as s:
        s.get(Edition, ids[0]).status = EditionStatus.SENT  # type: ignore[union-attr]
    return [i for i in ids if i is not None]


def test_atom_feed_parses_back_with_one_entry_per_sent_edition(client: httpx.Client, editions: list[int]) -> None:
    response = client.get("/archive/daily.atom")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "The Briefing"
    assert {(link.rel, link.href) for link in feed.feed.links} >= {
        ("self", f"{client.base_url}/archive/daily.atom"),
        ("alternate", f"{client.base_url}/archive"),
    }
    [entry] = feed.entries
    assert entry.title == "The Briefing, Wednesday, 25 November 2026"
    assert entry.link == f"{client.base_url}/archive/daily/2026-11-25"
    assert client.get(entry.link).status_code == 200
    assert TRICKY in entry.summary  # escaped on the way out, intact on the way back
    assert "Harbour cities agree storm warning pact" in entry.summary
    assert entry.updated_parsed is not None


def test_json_feed_has_the_required_fields_of_version_1_1(client: httpx.Client, editions: list[int]) -> None:
    response = client.get("/archive/daily.json")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/feed+json")
    doc = json.loads(response.content)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] == "The Briefing" and doc["feed_url"] == f"{client.base_url}/archive/daily.json"
    [item] = doc["items"]
    assert isinstance(item["id"], str) and item["id"]
    assert item["url"] == f"{client.base_url}/archive/daily/2026-11-25"
    assert item["date_published"].startswith("2026-11-25")
    assert TRICKY in item["summary"]
    # content_html is HTML: the story title escaped, linked.
    links = lxml.html.fromstring(item["content_html"]).iter("a")
    assert TRICKY in [a.text_content() for a in links]
    # Our own JSON Feed 1.1 reader (the importer's) takes it without a problem.
    read = read_json_feed(response.text, "daily.json")
    assert not read.problems and not read.warnings
    assert [(d.title, d.url) for d in read.drafts] == [(item["title"], item["url"])]


def test_feeds_of_an_unknown_digest_are_404(client: httpx.Client) -> None:
    assert client.get("/archive/nope.atom").status_code == 404
    assert client.get("/archive/nope.json").status_code == 404


def test_archive_pages_link_the_feeds(client: httpx.Client, editions: list[int]) -> None:
    for path in ("/archive", "/archive/daily/2026-11-25"):
        doc = lxml.html.fromstring(client.get(path).content)
        alternates = {el.get("type"): el.get("href") for el in doc.iter("link") if el.get("rel") == "alternate"}
        assert alternates == {
            "application/atom+xml": f"{client.base_url}/archive/daily.atom",
            "application/feed+json": f"{client.base_url}/archive/daily.json",
        }, path
