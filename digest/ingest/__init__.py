"""Ingest: read articles from files, URLs or stdin into :class:`ArticleDraft` records.

One reader per source kind (``records`` for JSON/NDJSON, ``feed`` for RSS/Atom via
feedparser, ``jsonfeed`` for JSON Feed, ``page`` for HTML pages, ``text`` for scraped
plain-text pages); ``reader`` tells them apart by content. Readers never touch the store:
they return drafts and per-record problems; ``digest.store.articles.upsert_articles`` writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from digest.core.errors import InputError


@dataclass
class ArticleDraft:
    """An article as read from a source, sanitised, not yet stored."""

    title: str
    url: str | None = None
    guid: str | None = None
    source: str = ""
    summary: str = ""
    body: str = ""  # sanitised HTML (nh3)
    category: str = ""
    tags: list[str] = field(default_factory=list)
    author: str = ""
    image_url: str | None = None
    image_alt: str = ""
    image_width: int | None = None  # declared size, when the source gives it
    image_height: int | None = None
    language: str = ""  # BCP 47 tag (xml:lang, <language>); "" = unknown
    published_at: datetime | None = None  # aware; None = undated: "now" at first upsert
    breaking: bool = False
    priority: int = 0
    # The editor's lead-in; None: the source says nothing of it, the stored one stays.
    lead: str | None = None
    origin: str = ""  # "file:line" or "file[index]", for error messages


@dataclass
class RecordProblem:
    """One malformed record: where it is and what is wrong with it."""

    where: str  # e.g. "feeds/a.ndjson:7" or "a.json[3]"
    problem: str
    # Nothing in the source could be read (missing, too large, not UTF-8, not JSON...),
    # as opposed to one bad record among good ones.
    whole_source: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class ReadResult:
    """What reading one or more sources produced: good drafts and problems."""

    drafts: list[ArticleDraft] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    # Worth telling, but nothing was lost (e.g. whitespace before ``<?xml``, an
    # encoding guessed): reported, never counted as rejected.
    warnings: list[RecordProblem] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        self.drafts.extend(other.drafts)
        self.problems.extend(other.problems)
        self.warnings.extend(other.warnings)


def read_one(build: Callable[..., ArticleDraft], text: str, path: str, *, default_category: str = "") -> ReadResult:
    """A page source is one article: its draft, or the one problem ``build`` raised (an InputError)."""
    result = ReadResult()
    try:
        result.drafts.append(build(text, path, default_category=default_category))
    except InputError as exc:
        result.problems.append(RecordProblem(exc.where, exc.problem))
    return result
