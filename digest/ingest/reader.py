"""Pick the right reader for a file, URL or stdin and run it.

The content decides (:func:`detect_kind`): after a BOM, whitespace, comments,
processing instructions and a DOCTYPE, a root element ``<rss>``, ``<feed>`` or
``<rdf:RDF>`` is a feed; ``<html>`` (or HTML markup) a page; a leading ``{``/``[`` is
JSON, a JSON Feed when it declares a ``jsonfeed.org`` version, NDJSON when more values
follow the first; CSV-shaped text (a header row and rows of as many fields) is
refused; anything else is a scraped text page. Binary data and XML that is no feed
are refused too, each as one line naming the source and what it looked like. A
``.csv`` file is never read as articles.

The extension (``.json``; ``.ndjson``/``.jsonl``; ``.xml``/``.rss``/``.atom``/``.rdf``;
``.txt``) or a URL's ``Content-Type`` only settles JSON vs NDJSON; when it promises a
feed or JSON but the content is a page (an HTML error page served for a feed URL),
the source is refused rather than imported as an article.

Unreadable input (a missing file, bytes that are not UTF-8, a malformed record) is a
:class:`RecordProblem`, never an exception; only a failed URL fetch raises
:class:`digest.core.errors.InputError` from :func:`read_source`.

No source is read beyond ``max_bytes`` (the ``import_max_bytes`` setting): a file,
stdin or URL response larger than that is refused whole, after reading at most one
byte more than the limit.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from digest import __version__ as _digest_version
from digest.core.errors import BlockedAddress, FetchError, FetchTimeout, InputError, TooLarge, TooManyRedirects
from digest.core.logs import mask_url
from digest.core.settings import IMPORT_MAX_BYTES
from digest.ingest import ReadResult, RecordProblem
from digest.ingest.feed import read_feed
from digest.ingest.fetch import FetchLimits, http_get
from digest.ingest.jsonfeed import read_json_feed
from digest.ingest.page import read_page
from digest.ingest.records import read_records
from digest.ingest.sniff import CSV_LOOKS_LIKE, Kind, detect_kind
from digest.ingest.text import read_text

STDIN = "-"
STDIN_NAME = "<stdin>"
FETCH_TIMEOUT_SECONDS = 20.0
FETCH_MAX_REDIRECTS = 5

EXTENSION_KINDS: dict[str, Kind] = {
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".xml": "feed",
    ".rss": "feed",
    ".atom": "feed",
    ".rdf": "feed",
    ".txt": "text",
    ".text": "text",
}
_CONTENT_TYPE_KINDS: dict[str, Kind] = {
    "application/json": "json",
    "application/feed+json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/rss+xml": "feed",
    "application/atom+xml": "feed",
    "application/rdf+xml": "feed",
    "application/xml": "feed",
    "text/xml": "feed",
}  # not text/plain: servers label JSON and feeds with it too, so sniff those
CSV_PROBLEM = "looks like CSV (e.g. a subscriber list); use digest subscribers import"
_CSV_EXTENSIONS = (".csv", ".tsv")
DESCRIPTIONS: dict[str, str] = {
    "feed": "an RSS/Atom feed",
    "jsonfeed": "a JSON Feed",
    "json": "JSON",
    "ndjson": "NDJSON",
    "html": "an HTML page",
    "text": "plain text",
}


def read_source(
    path_or_url: str,
    *,
    data: bytes | None = None,
    default_category: str = "",
    max_bytes: int = IMPORT_MAX_BYTES,
    fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> ReadResult:
    """Read one source: a file path, an http(s) URL, or ``-`` for stdin.

    ``data``, when given, is the source's content (the caller already read stdin or
    fetched the URL) and nothing is read or fetched. ``default_category`` applies to
    articles that name no category. Each draft's ``origin`` is its location string.
    A source larger than ``max_bytes`` is one problem. A URL is fetched within
    ``fetch_timeout`` seconds in all, and only from a public address unless
    ``allow_private``. Raises :class:`InputError` only when fetching a URL fails.
    """
    content_type = ""
    if path_or_url == STDIN:
        name = STDIN_NAME
    elif _is_url(path_or_url):
        name = mask_url(path_or_url)
        if data is None:
            data, content_type = fetch_url(
                path_or_url, max_bytes=max_bytes, timeout=fetch_timeout, allow_private=allow_private
            )
    else:
        name = path_or_url
    if data is None:  # a file or stdin
        try:
            data = read_capped(path_or_url, max_bytes)
        except InputError as exc:
            return ReadResult(problems=[RecordProblem(exc.where, exc.problem, whole_source=True)])
    if len(data) > max_bytes:  # given by the caller
        return ReadResult(problems=[RecordProblem(name, too_large(max_bytes), whole_source=True)])

    ext_path = urlsplit(path_or_url).path if _is_url(path_or_url) else path_or_url
    suffix = PurePosixPath(ext_path).suffix.lower() if path_or_url != STDIN else ""
    result = read_data(data, name, default_category=default_category, suffix=suffix, content_type=content_type)
    for draft in result.drafts:
        draft.origin = draft.origin or name
    return result


def read_data(
    data: bytes,
    name: str,
    *,
    default_category: str = "",
    suffix: str = "",
    content_type: str = "",
    accept: Iterable[Kind] | None = None,
) -> ReadResult:
    """Read ``data`` (from ``name``) with the reader its content calls for.

    ``suffix`` (``.json``) and ``content_type`` only tell JSON from NDJSON and catch a
    page served where a feed or records were promised. ``accept`` limits the kinds
    read (a polled feed must be a feed); anything else is one whole-source problem.
    """

    def refuse(problem: str) -> ReadResult:
        return ReadResult(problems=[RecordProblem(name, problem, whole_source=True)])

    if suffix in _CSV_EXTENSIONS:
        return refuse(CSV_PROBLEM)  # whatever is inside: a .csv is never articles
    detected = detect_kind(data)
    if detected.kind is None:
        if detected.looks_like == CSV_LOOKS_LIKE:
            return refuse(CSV_PROBLEM)
        return refuse(f"not an article source: it looks like {detected.looks_like}")
    kind: Kind = detected.kind
    declared = EXTENSION_KINDS.get(suffix) or _CONTENT_TYPE_KINDS.get(content_type)
    if declared in ("json", "ndjson") and kind == "text":
        kind = declared  # broken JSON: the JSON reader says where
    if declared in ("feed", "json", "ndjson") and kind in ("html", "text"):
        by = f"its {suffix} extension" if EXTENSION_KINDS.get(suffix) else f"its Content-Type {content_type}"
        return refuse(f"expected {DESCRIPTIONS[declared]} (by {by}) but it looks like {DESCRIPTIONS[kind]}")
    if accept is not None and kind not in set(accept):
        return refuse(f"not an RSS, Atom or JSON feed: it looks like {DESCRIPTIONS[kind]}")
    if kind == "json" and declared in ("json", "ndjson"):
        kind = declared
    # Only an extension or Content-Type of JSON/NDJSON says which; otherwise the content does.
    return _read(data, name, kind, default_category, sniffed=declared not in ("json", "ndjson"))


def read_sources(
    paths: Iterable[str],
    *,
    stdin: bytes | None = None,
    default_category: str = "",
    max_bytes: int = IMPORT_MAX_BYTES,
    fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> ReadResult:
    """Read several sources into one result, in order.

    ``stdin`` is the content for a ``-`` entry (default: read from stdin). A URL that
    cannot be fetched becomes a problem here, so one unreachable feed does not stop the
    others from being read.
    """
    result = ReadResult()
    for path in paths:
        data = stdin if path == STDIN else None
        try:
            result.extend(
                read_source(
                    path,
                    data=data,
                    default_category=default_category,
                    max_bytes=max_bytes,
                    fetch_timeout=fetch_timeout,
                    allow_private=allow_private,
                )
            )
        except InputError as exc:
            result.problems.append(RecordProblem(exc.where, exc.problem, whole_source=True))
    return result


def read_capped(path: str, max_bytes: int) -> bytes:
    """The bytes of the file ``path`` (``-``: stdin), refused if larger than ``max_bytes``.

    Reads at most ``max_bytes + 1`` bytes, so a huge file (or an endless one, such as a
    device or a pipe) never fills memory. Raises :class:`InputError` (the file, why).
    """
    if path == STDIN:
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InputError(STDIN_NAME, too_large(max_bytes))
        return data
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            # A regular file says its size: refuse it without reading anything.
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                raise InputError(path, too_large(max_bytes))
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InputError(path, too_large(max_bytes))
    return data


def too_large(max_bytes: int) -> str:
    """The problem of a source over the limit, naming the setting."""
    size = f"{max_bytes // 1_000_000} MB" if max_bytes % 1_000_000 == 0 else f"{max_bytes} bytes"
    return f"larger than {size} (import_max_bytes); not read"


def fetch_url(
    url: str,
    *,
    max_bytes: int = IMPORT_MAX_BYTES,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> tuple[bytes, str]:
    """GET ``url`` and return its body and media type (e.g. ``application/rss+xml``).

    Goes through the guarded fetch of :mod:`digest.ingest.fetch`: at most 5 redirects,
    ``timeout`` seconds in all, bodies up to ``max_bytes``, and no loopback, private
    or other non-public address unless ``allow_private``. Raises :class:`InputError`
    (url, problem) on any failure.
    """
    limits = FetchLimits(
        timeout=timeout,
        max_bytes=max_bytes,
        max_redirects=FETCH_MAX_REDIRECTS,
        allow_private=allow_private,
        headers={
            "User-Agent": f"digest/{_digest_version} (newsletter ingest)",
            "Accept": "application/rss+xml, application/atom+xml, application/json, text/xml;q=0.9, */*;q=0.8",
        },
    )
    where = mask_url(url)
    try:
        response = http_get(url, limits)
    except TooLarge:
        raise InputError(where, f"response {too_large(max_bytes)}") from None
    except (FetchTimeout, TooManyRedirects, BlockedAddress) as exc:
        raise InputError(where, str(exc)) from None
    except FetchError as exc:
        raise InputError(where, f"fetch failed: {exc}") from None
    if response.status_code >= 300:
        raise InputError(where, f"HTTP {response.status_code} {response.reason}".strip())
    return response.body, response.media_type


def _read(data: bytes, name: str, kind: Kind, default_category: str, *, sniffed: bool) -> ReadResult:
    if kind == "feed":
        # Bytes, not text: feedparser honours the XML encoding declaration itself.
        return read_feed(data, name, default_category=default_category)
    if kind == "html":
        return read_page(_html_text(data), name, default_category=default_category)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} on line {line})"
        return ReadResult(problems=[RecordProblem(name, problem, whole_source=True)])
    if kind == "text":
        return read_text(text, name, default_category=default_category)
    if kind == "jsonfeed":
        return read_json_feed(text, name, default_category=default_category)
    # A sniffed "{" may start JSON or NDJSON; an extension says which.
    return read_records(text, name, kind=None if sniffed else kind, default_category=default_category)  # type: ignore[arg-type]


_CHARSET_RE = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)


def _html_text(data: bytes) -> str:
    """An HTML page's text: UTF-8, else the charset its ``<meta>`` names, else windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    match = _CHARSET_RE.search(data[:4096])
    try:
        return data.decode(match.group(1).decode() if match else "windows-1252", errors="replace")
    except LookupError:
        return data.decode("windows-1252", errors="replace")


def _is_url(path_or_url: str) -> bool:
    return path_or_url.lower().startswith(("http://", "https://"))
