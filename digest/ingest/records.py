"""Read articles from JSON and NDJSON records.

Formats
-------
* **JSON**: one object, or a list of objects.
* **NDJSON** (``.ndjson``/``.jsonl``): one object per line; blank lines are skipped.

Fields (anything else is an error naming the field; ``null`` counts as absent)
-----------------------------------------------------------------------------
=================  ==========================================================================
``title``          required, string; reduced to one line of plain text
``url``            absolute ``http``/``https`` URL
``guid``           string (or integer); stable identity when there is no URL
``source``         string, e.g. the publication name
``summary``        plain text; when absent, the first paragraph of ``body`` (≤ ~300 chars)
``body``           HTML, sanitised to a safe allow-list of tags
``category``       string (alias ``section``)
``tags``           list of strings, or one comma-separated string
``author``         string
``image_url``      absolute ``http``/``https`` URL
``image_alt``      string
``image_width``    whole number of pixels, 1 to 100,000; also ``image_height``
``language``       BCP 47 tag (``pt_br`` is written ``pt-BR``); else told by the script
``published_at``   ISO 8601 with a timezone, e.g. ``2025-03-14T08:30:00+01:00`` or ``...Z``
                   (alias ``published``); a value without a timezone is an error
``breaking``       ``true``/``false``
``priority``       integer, -1,000,000 to 1,000,000 (higher comes first)
``lead``           plain text, at most 280 characters: the editor's lead-in, the bold opening
                   line of a top story (``""`` clears it; absent keeps the stored one)
=================  ==========================================================================

Problems are reported per record, and good records of the same file are kept. A
problem's location is ``path:LINE`` for NDJSON (1-based line), ``path[INDEX]`` for an
element of a JSON list (0-based), ``path`` for a single JSON object, and ``path:LINE``
for a JSON syntax error or JSON nested too deeply (the whole file is then unreadable). See also
``docs/import-formats.md``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from digest.core.errors import InputError
from digest.ingest import ArticleDraft, ReadResult, RecordProblem
from digest.ingest.media import language_from_text, language_tag
from digest.ingest.sanitize import clean_html, clean_text, summary_from_html
from digest.ingest.urls import check_http_url

FIELDS: frozenset[str] = frozenset(
    {
        "title", "url", "guid", "source", "summary", "body", "category", "tags", "author",
        "image_url", "image_alt", "image_width", "image_height", "language", "published_at",
        "breaking", "priority", "lead",
    }
)  # fmt: skip
ALIASES: dict[str, str] = {"section": "category", "published": "published_at"}
# An editor's lead-in is one line, not a second summary: about the length of a tweet.
LEAD_MAX_CHARS = 280
# Bounds the database columns can hold (32-bit integers on PostgreSQL) with room to spare.
MAX_PRIORITY = 1_000_000
MAX_PIXELS = 100_000
# The json module recurses once per level of [ and {; a hostile file (100,000 x "[")
# exhausts the interpreter's recursion limit (about 1,000 levels) instead.
TOO_DEEP = "invalid JSON: nested too deeply (more than about 1,000 levels of [ and {)"


def read_records(
    text: str,
    path: str,
    *,
    kind: Literal["json", "ndjson"] | None = None,
    default_category: str = "",
) -> ReadResult:
    """Read JSON or NDJSON ``text`` (from ``path``, used in locations) into drafts.

    With ``kind=None`` the format is guessed: a document that parses as one JSON value
    is JSON, one with further values after the first (``Extra data``) is NDJSON.
    """
    if kind == "ndjson":
        return read_ndjson(text, path, default_category=default_category)
    if kind is None:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":
                return read_ndjson(text, path, default_category=default_category)
        except RecursionError:
            pass  # read_json reports it
    return read_json(text, path, default_category=default_category)


def read_json(text: str, path: str, *, default_category: str = "") -> ReadResult:
    """Read a JSON document holding one article object or a list of them."""
    result = ReadResult()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        result.problems.append(RecordProblem(f"{path}:{exc.lineno}", _json_error(exc), whole_source=True))
        return result
    except RecursionError:
        result.problems.append(RecordProblem(path, TOO_DEEP, whole_source=True))
        return result
    if isinstance(doc, dict):
        _add(result, doc, path, default_category)
    elif isinstance(doc, list):
        for index, obj in enumerate(doc):
            _add(result, obj, f"{path}[{index}]", default_category)
    else:
        problem = f"expected a JSON object or a list of objects, got {_json_type(doc)}"
        result.problems.append(RecordProblem(path, problem, whole_source=True))
    return result


def read_ndjson(text: str, path: str, *, default_category: str = "") -> ReadResult:
    """Read NDJSON: one article object per line, blank lines skipped."""
    result = ReadResult()
    # Not str.splitlines(): JSON strings may legally hold raw U+2028/U+2029, which
    # splitlines() would treat as line breaks and so cut a record in two.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            result.problems.append(RecordProblem(where, _json_error(exc)))
            continue
        except RecursionError:
            result.problems.append(RecordProblem(where, TOO_DEEP))
            continue
        _add(result, obj, where, default_category)
    return result


def draft_from_record(obj: Any, where: str, *, default_category: str = "") -> ArticleDraft:
    """Validate one decoded record and turn it into a sanitised :class:`ArticleDraft`.

    Raises :class:`digest.core.errors.InputError` (``where``, problem) on the first problem.
    """
    if not isinstance(obj, dict):
        raise InputError(where, f"expected a JSON object, got {_json_type(obj)}")
    rec: dict[str, Any] = {}
    given_as: dict[str, str] = {}  # canonical name -> key used in the record
    unknown = []
    for key, value in obj.items():
        name = ALIASES.get(key, key)
        if name not in FIELDS:
            unknown.append(key)
            continue
        if value is None:
            continue
        if name in given_as:
            raise InputError(where, f"both {given_as[name]!r} and {key!r} given; they are the same field")
        rec[name] = value
        given_as[name] = key
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise InputError(where, f"unknown field{'s' if len(unknown) > 1 else ''} {names}")

    def text_field(name: str) -> str:
        value = rec.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InputError(where, f"{name} must be a string, got {_json_type(value)}")
        return clean_text(value)

    title = text_field("title")
    if not title:
        raise InputError(where, "missing title" if rec.get("title") is None else "title is empty")

    guid = rec.get("guid")
    if guid is not None:
        if isinstance(guid, bool) or not isinstance(guid, str | int):
            raise InputError(where, f"guid must be a string, got {_json_type(guid)}")
        guid = clean_text(str(guid)) or None

    body = rec.get("body")
    if body is not None and not isinstance(body, str):
        raise InputError(where, f"body must be a string of HTML, got {_json_type(body)}")
    body_html = clean_html(body or "")
    summary = text_field("summary") or summary_from_html(body_html)

    breaking = rec.get("breaking", False)
    if breaking is None:
        breaking = False
    if not isinstance(breaking, bool):
        raise InputError(where, f"breaking must be true or false, got {_json_type(breaking)}")

    priority = rec.get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InputError(where, f"priority must be an integer, got {_json_type(priority)}")
    if abs(priority) > MAX_PRIORITY:
        raise InputError(where, f"priority must be between -{MAX_PRIORITY:,} and {MAX_PRIORITY:,}, got {priority:,}")

    language = ""
    if rec.get("language") is not None:
        declared = rec["language"]
        language = language_tag(declared) if isinstance(declared, str) else ""
        if not language:
            raise InputError(where, f"language {declared!r} is not a BCP 47 tag such as 'en', 'fa' or 'pt-BR'")

    lead = None
    if "lead" in rec:
        if not isinstance(rec["lead"], str):
            raise InputError(where, f"lead must be a string, got {_json_type(rec['lead'])}")
        lead = clean_lead(rec["lead"], where)

    return ArticleDraft(
        title=title,
        language=language or language_from_text(title) or language_from_text(f"{title} {summary}"),
        image_width=_pixels(rec.get("image_width"), "image_width", where),
        image_height=_pixels(rec.get("image_height"), "image_height", where),
        url=_http_url(rec.get("url"), "url", where),
        guid=guid,
        source=text_field("source"),
        summary=summary,
        body=body_html,
        category=text_field("category") or default_category,
        tags=_tags(rec.get("tags"), where),
        author=text_field("author"),
        image_url=_http_url(rec.get("image_url"), "image_url", where),
        image_alt=text_field("image_alt"),
        published_at=parse_datetime(rec.get("published_at"), where),
        breaking=breaking,
        priority=priority,
        lead=lead,
        origin=where,
    )


def clean_lead(value: str, where: str) -> str:
    """An editor's lead-in as stored: one line of plain text (markup stripped), at most
    :data:`LEAD_MAX_CHARS`; InputError naming the field otherwise."""
    lead = clean_text(value)
    if len(lead) > LEAD_MAX_CHARS:
        raise InputError(where, f"lead is {len(lead)} characters; at most {LEAD_MAX_CHARS}")
    return lead


def parse_datetime(value: Any, where: str) -> datetime | None:
    """Parse an ISO 8601 timestamp with a timezone into an aware UTC datetime.

    ``None`` or an empty string gives ``None``; a naive timestamp is an
    :class:`InputError` because guessing its zone would silently shift it.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(where, f"published_at must be an ISO 8601 string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(where, f"published_at is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InputError(where, f"published_at {value!r} has no timezone; add one, e.g. 'Z' or '+01:00'")
    return parsed.astimezone(UTC)


def _http_url(value: Any, name: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(where, f"{name} must be a string, got {_json_type(value)}")
    value = value.strip()
    problem = check_http_url(value)
    if problem:
        raise InputError(where, f"{name} {value!r} {problem}")
    return value


def _pixels(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_PIXELS:
        raise InputError(where, f"{name} must be a whole number of pixels from 1 to {MAX_PIXELS:,}, got {value!r}")
    return value


def _tags(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise InputError(where, f"tags must be a list or a comma-separated string, got {_json_type(value)}")
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(where, f"each tag must be a string, got {_json_type(item)}")
        tag = clean_text(item)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _add(result: ReadResult, obj: Any, where: str, default_category: str) -> None:
    try:
        result.drafts.append(draft_from_record(obj, where, default_category=default_category))
    except InputError as exc:
        result.problems.append(RecordProblem(exc.where, exc.problem))


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
