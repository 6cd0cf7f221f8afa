"""Dispatcher: choosing a reader, stdin, unreadable files, and fetching from a local server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from digest.core.errors import InputError
from digest.ingest.reader import read_capped, read_source, read_sources
from digest.ingest.sniff import detect_kind, sniff_kind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"

RSS = (FIXTURES / "rss20.xml").read_bytes()
ATOM = (FIXTURES / "atom.xml").read_bytes()
TEXT_PAGE = "Council votes to keep the night bus\n\nThe route will run for another year.\n"
LIMIT = 1_000_000  # max_bytes of the size tests: the default (50 MB) would make them slow


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _titles(path_or_url: str, **kwargs: object) -> list[str]:
    result = read_source(path_or_url, **kwargs)  # type: ignore[arg-type]
    assert result.problems == []
    return [d.title for d in result.drafts]


# --- choosing the reader ----------------------------------------------------------------


def test_json_extension_reads_records(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.json", json.dumps([{"title": "J1"}, {"title": "J2"}]))
    assert _titles(str(path)) == ["J1", "J2"]


@pytest.mark.parametrize("name", ["a.ndjson", "a.jsonl"])
def test_ndjson_extensions_read_lines(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, '{"title": "N1"}\n{"title": "N2"}\n')
    assert _titles(str(path)) == ["N1", "N2"]


@pytest.mark.parametrize("name", ["feed.xml", "feed.rss", "feed.atom"])
def test_feed_extensions_read_feeds(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, ATOM)
    assert len(_titles(str(path))) == 2


def test_txt_extension_reads_a_text_page(tmp_path: Path) -> None:
    path = _write(tmp_path, "page.txt", TEXT_PAGE)
    assert _titles(str(path)) == ["Council votes to keep the night bus"]


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = _write(tmp_path, "A.JSON", json.dumps({"title": "Upper"}))
    assert _titles(str(path)) == ["Upper"]


def test_unknown_extension_sniffs_a_json_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "export.dat", '\n  [{"title": "Sniffed"}]')
    assert _titles(str(path)) == ["Sniffed"]


def test_unknown_extension_sniffs_ndjson(tmp_path: Path) -> None:
    path = _write(tmp_path, "export", '{"title": "L1"}\n\n{"title": "L3"}\n')
    result = read_source(str(path))
    assert [(d.title, d.origin) for d in result.drafts] == [("L1", f"{path}:1"), ("L3", f"{path}:3")]


@pytest.mark.parametrize(
    "content",
    [
        RSS,
        RSS.split(b"\n", 1)[1],  # no XML declaration: starts with <rss
        ATOM.split(b"\n", 1)[1],  # starts with <feed
        (FIXTURES / "rss10.rdf").read_bytes().split(b"\n", 1)[1],  # starts with <rdf:RDF
    ],
)
def test_unknown_extension_sniffs_feeds(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path, "download.bin", content)
    assert _titles(str(path))


def test_unknown_extension_falls_back_to_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "page.html-dump", TEXT_PAGE)
    assert _titles(str(path)) == ["Council votes to keep the night bus"]


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps({"title": "Bom"}).encode())
    assert _titles(str(path)) == ["Bom"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"  {", "json"),
        (b"\xef\xbb\xbf[", "json"),
        (b'<?xml version="1.0"?>\n<rss version="2.0">', "feed"),
        (b"<RSS", "feed"),
        (b"Hi", "text"),
        (b'\n\n<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">', "feed"),
        (b'<!-- generator="FeedCreator" -->\n<rss version="">', "feed"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE rss PUBLIC "-//Netscape//DTD RSS 0.91//EN" "x.dtd">\n<rss>', "feed"),
        (b'<?xml version="1.0"?><?xml-stylesheet href="a.xsl"?><!-- c --><rdf:RDF xmlns:rdf="x">', "feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "jsonfeed"),
        (b"<!DOCTYPE html>\n<html lang=en><title>x</title>", "html"),
        (b"<div><p>Scraped fragment</p></div>", "html"),
        ("<rss>".encode("utf-16"), "feed"),
    ],
)
def test_sniff_kind(data: bytes, kind: str) -> None:
    assert sniff_kind(data) == kind


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"email,name,timezone\nann@example.com,Ann,Europe/Berlin\nbob@example.com,Bob,UTC\n", "CSV"),
        (b"id;city;temp\n1;Oslo;-3\n2;Rome;14\n3;Lima;19\n", "CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "root element <svg>"),
    ],
)
def test_content_that_is_no_article_source_is_refused(data: bytes, looks_like: str) -> None:
    detected = detect_kind(data)
    assert detected.kind is None
    assert looks_like in detected.looks_like


def test_ndjson_in_a_txt_file_is_told_by_its_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "export.txt", b'{"title": "One"}\n{"title": "Two"}\n')
    assert _titles(str(path)) == ["One", "Two"]


def test_a_text_page_with_commas_is_not_csv() -> None:
    page = b"Council votes, again, on the night bus\n\nThe council voted, 31 to 12, to keep it.\nMore later, they said."
    assert sniff_kind(page) == "text"


def test_csv_content_is_one_whole_source_problem_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "people", b"email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    result = read_source(str(path))
    assert result.drafts == []
    assert [(p.where, p.whole_source) for p in result.problems] == [(str(path), True)]
    assert result.problems[0].problem == "looks like CSV (e.g. a subscriber list); use digest subscribers import"


def test_a_csv_file_is_never_read_as_articles(tmp_path: Path) -> None:
    path = _write(tmp_path, "subscribers.csv", TEXT_PAGE)
    result = read_source(str(path))
    assert result.drafts == []
    assert "use digest subscribers import" in result.problems[0].problem


def test_feed_from_stdin_starting_with_a_comment_is_read_as_a_feed() -> None:
    result = read_source("-", data=b"<!-- cached -->\n" + RSS)
    assert result.problems == []
    assert len(result.drafts) == 3


def test_html_error_page_where_a_feed_was_promised_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "feed.rss", b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
    )
    result = read_source(str(path))
    assert result.drafts == []
    assert "expected an RSS/Atom feed (by its .rss extension) but it looks like an HTML page" in str(result.problems[0])


def test_html_page_becomes_one_article_with_its_metadata(tmp_path: Path) -> None:
    page = (
        '<!DOCTYPE html><html lang="ur"><head><title>Site | ignored</title>'
        '<meta property="og:title" content="بارش کے بعد شہر"><meta property="og:url" content="https://news.example/1">'
        '<meta property="og:image" content="https://news.example/1.jpg"><meta property="og:image:width" content="1200">'
        '<meta property="og:image:height" content="630"></head><body><nav><p>Home | World</p></nav>'
        "<article><h1>بارش کے بعد شہر</h1><p>پہلا پیراگراف۔</p><p>دوسرا پیراگراف۔</p></article>"
        "<footer><p>© Site</p></footer></body></html>"
    ).encode()
    result = read_source(str(_write(tmp_path, "page.html", page)))
    assert result.problems == []
    (draft,) = result.drafts
    assert (draft.title, draft.url, draft.language) == ("بارش کے بعد شہر", "https://news.example/1", "ur")
    assert draft.body == "<p>پہلا پیراگراف۔</p>\n<p>دوسرا پیراگراف۔</p>"
    assert (draft.image_url, draft.image_width, draft.image_height) == ("https://news.example/1.jpg", 1200, 630)


def test_default_category_reaches_the_reader(tmp_path: Path) -> None:
    path = _write(tmp_path, "page.txt", TEXT_PAGE)
    assert read_source(str(path), default_category="Transport").drafts[0].category == "Transport"


# --- stdin ------------------------------------------------------------------------------


def test_dash_reads_the_given_stdin_data() -> None:
    result = read_source("-", data=b'{"title": "From stdin"}\n{"title": "Second"}\n')
    assert [(d.title, d.origin) for d in result.drafts] == [("From stdin", "<stdin>:1"), ("Second", "<stdin>:2")]


def test_stdin_text_page_origin_is_stdin() -> None:
    result = read_source("-", data=TEXT_PAGE.encode())
    assert [d.origin for d in result.drafts] == ["<stdin>"]


# --- unreadable input -------------------------------------------------------------------


def test_missing_file_is_a_problem_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    result = read_source(str(path))
    assert result.drafts == []
    assert [p.where for p in result.problems] == [str(path)]
    assert "cannot read file" in result.problems[0].problem


def test_directory_is_a_problem_naming_it(tmp_path: Path) -> None:
    result = read_source(str(tmp_path))
    assert [p.where for p in result.problems] == [str(tmp_path)]


@pytest.mark.parametrize("name", ["latin1.json", "latin1.txt", "latin1"])
def test_non_utf8_file_is_a_problem_naming_it(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, '{"title": "Caf\u00e9"}\n'.encode("latin-1"))
    result = read_source(str(path))
    assert result.drafts == []
    assert [p.where for p in result.problems] == [str(path)]
    assert "not UTF-8" in result.problems[0].problem and "line 1" in result.problems[0].problem


def test_latin1_feed_with_declaration_is_decoded(tmp_path: Path) -> None:
    feed = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>Caf\u00e9 reopens</title><link>https://t.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    path = _write(tmp_path, "latin1.xml", feed)
    assert _titles(str(path)) == ["Caf\u00e9 reopens"]


# --- several sources --------------------------------------------------------------------


def test_read_sources_combines_results_in_order(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.json", json.dumps({"title": "A"}))
    b = _write(tmp_path, "b.txt", TEXT_PAGE)
    missing = tmp_path / "missing.ndjson"
    result = read_sources([str(a), str(missing), "-", str(b)], stdin=b'{"title": "S"}')
    assert [d.title for d in result.drafts] == ["A", "S", "Council votes to keep the night bus"]
    assert [d.origin for d in result.drafts] == [str(a), "<stdin>", str(b)]
    assert [p.where for p in result.problems] == [str(missing)]


def test_every_draft_has_an_origin(tmp_path: Path) -> None:
    paths = [
        _write(tmp_path, "a.json", json.dumps([{"title": "A"}])),
        _write(tmp_path, "b.xml", RSS),
        _write(tmp_path, "c.txt", TEXT_PAGE),
    ]
    result = read_sources([str(p) for p in paths])
    assert result.drafts and all(d.origin for d in result.drafts)


# --- fetching URLs from a local server --------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(urlsplit(self.path).path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        # HTTP/1.0: without a Content-Length the body simply ends when the server closes.
        if "X-Unannounced" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The client hangs up on an oversized body, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Requests to 127.0.0.1 must not be routed through a proxy from the environment.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    big = b"x" * (LIMIT + 1)
    _Handler.routes = {
        "/feed": (200, {"Content-Type": "application/rss+xml; charset=utf-8"}, RSS),
        "/data/articles.json": (200, {"Content-Type": "application/json"}, json.dumps([{"title": "U"}]).encode()),
        "/raw": (200, {"Content-Type": "text/plain"}, b'{"title": "Raw JSON"}'),
        "/page.txt": (200, {"Content-Type": "text/plain"}, TEXT_PAGE.encode()),
        "/hop1": (302, {"Location": "/hop2"}, b""),
        "/hop2": (301, {"Location": "/feed"}, b""),
        "/gone": (410, {}, b"gone"),
        "/huge": (200, {"Content-Type": "text/plain"}, big),
        "/huge-unannounced": (200, {"Content-Type": "text/plain", "X-Unannounced": "1"}, big),
    }
    for i in range(7):
        _Handler.routes[f"/loop{i}"] = (302, {"Location": f"/loop{i + 1}"}, b"")
    _Handler.routes["/loop7"] = (200, {}, b'{"title": "end"}')
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_url_feed_is_fetched_and_read_by_content_type(server: str) -> None:
    result = read_source(f"{server}/feed", allow_private=True)
    assert result.problems == []
    assert [d.title for d in result.drafts][:1] == ["Bridge reopens & traffic returns to normal"]
    assert result.drafts[0].origin == f"{server}/feed[entry 0]"


def test_url_extension_chooses_the_reader(server: str) -> None:
    url = f"{server}/data/articles.json?page=1"
    result = read_source(url, allow_private=True)
    assert [(d.title, d.origin) for d in result.drafts] == [("U", f"{url}[0]")]


def test_url_text_plain_is_sniffed(server: str) -> None:
    assert _titles(f"{server}/raw", allow_private=True) == ["Raw JSON"]


def test_url_text_page(server: str) -> None:
    assert _titles(f"{server}/page.txt", allow_private=True) == ["Council votes to keep the night bus"]


def test_url_redirects_are_followed(server: str) -> None:
    assert _titles(f"{server}/hop1", allow_private=True)[0] == "Bridge reopens & traffic returns to normal"


def test_url_more_than_five_redirects_is_an_input_error(server: str) -> None:
    with pytest.raises(InputError, match="more than 5 redirects") as info:
        read_source(f"{server}/loop0", allow_private=True)
    assert info.value.where == f"{server}/loop0"


def test_url_http_error_status_is_an_input_error(server: str) -> None:
    with pytest.raises(InputError, match="HTTP 410"):
        read_source(f"{server}/gone", allow_private=True)


def test_url_announced_oversized_body_is_refused(server: str) -> None:
    with pytest.raises(InputError, match=r"larger than 1 MB \(import_max_bytes\)"):
        read_source(f"{server}/huge", max_bytes=LIMIT, allow_private=True)


def test_url_unannounced_oversized_body_is_refused(server: str) -> None:
    with pytest.raises(InputError, match=r"larger than 1 MB \(import_max_bytes\)"):
        read_source(f"{server}/huge-unannounced", max_bytes=LIMIT, allow_private=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_connection_refused_is_an_input_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/feed"
    with pytest.raises(InputError) as info:
        read_source(url, allow_private=True)
    assert info.value.where == url
    assert "fetch failed" in info.value.problem


def test_read_sources_turns_a_failed_fetch_into_a_problem(server: str, tmp_path: Path) -> None:
    good = _write(tmp_path, "a.json", json.dumps({"title": "Local"}))
    result = read_sources([f"{server}/gone", str(good)], allow_private=True)
    assert [d.title for d in result.drafts] == ["Local"]
    assert [p.where for p in result.problems] == [f"{server}/gone"]


def test_url_with_data_given_is_not_fetched() -> None:
    # Port 9 (discard) on localhost: a fetch attempt would fail, so success proves none.
    result = read_source("http://127.0.0.1:9/x.json", data=b'{"title": "Prefetched"}')
    assert [d.title for d in result.drafts] == ["Prefetched"]


# --- size limit of local files and stdin ------------------------------------------------


def test_file_over_the_limit_is_one_problem_naming_file_and_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.json", json.dumps([{"title": "x" * 100}] * 20))
    result = read_source(str(path), max_bytes=1000)
    assert result.drafts == []
    assert [str(p) for p in result.problems] == [f"{path}: larger than 1000 bytes (import_max_bytes); not read"]
    assert result.problems[0].whole_source


def test_file_at_the_limit_is_read(tmp_path: Path) -> None:
    content = json.dumps({"title": "Exactly at the limit"})
    path = _write(tmp_path, "a.json", content)
    assert _titles(str(path), max_bytes=len(content)) == ["Exactly at the limit"]


def test_endless_file_is_refused_after_reading_one_byte_over_the_limit() -> None:
    # /dev/zero never ends and reports no size: only a bounded read can return at all.
    with pytest.raises(InputError, match="larger than 1 MB") as info:
        read_capped("/dev/zero", LIMIT)
    assert info.value.where == "/dev/zero"


def test_content_given_over_the_limit_is_one_problem() -> None:
    result = read_source("-", data=b'{"title": "' + b"x" * 1000 + b'"}', max_bytes=1000)
    assert [str(p) for p in result.problems] == ["<stdin>: larger than 1000 bytes (import_max_bytes); not read"]


def test_html_page_with_unclosed_paragraphs_keeps_them_apart(tmp_path: Path) -> None:
    page = b"<html><head><title>Night bus kept</title></head><body><p>The council voted.<p>It runs all year.</body>"
    (draft,) = read_source(str(_write(tmp_path, "page.html", page))).drafts
    assert draft.body == "<p>The council voted.</p>\n<p>It runs all year.</p>"


def test_html_page_without_text_is_a_problem_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.html", b"<html><head><title>Nothing here</title></head><body></body></html>")
    (problem,) = read_source(str(path)).problems
    assert str(problem) == f"{path}: HTML page without article text (no paragraphs)"
