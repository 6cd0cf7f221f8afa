"""Log lines: one per event, human or JSON, without secrets or full addresses at INFO."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from digest.core.logs import event, mask_emails, setup_logging


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def test_human_line_has_time_level_logger_event_and_fields(capture: io.StringIO) -> None:
    setup_logging("INFO", "human", stream=capture)

    event(
        logging.getLogger("digest.app.planner"),
        "edition.queued",
        digest="daily",
        slot="2026-11-25 07:00 Europe/Berlin",
        queued=3,
    )

    (line,) = lines(capture)
    assert line.endswith(
        ' INFO  digest.app.planner edition.queued digest=daily slot="2026-11-25 07:00 Europe/Berlin" queued=3'
    )
    assert line[:4].isdigit() and line[23] == "Z"


def test_json_line_is_one_object_with_the_fields(capture: io.StringIO) -> None:
    setup_logging("INFO", "json", stream=capture)

    log = logging.getLogger("digest.ingest.feeds")
    event(log, "feed.polled", logging.WARNING, status="error", new=0, error="HTTP 503")

    obj = json.loads(lines(capture)[0])
    assert {k: obj[k] for k in ("level", "logger", "event", "status", "new", "error")} == {
        "level": "WARNING",
        "logger": "digest.ingest.feeds",
        "event": "feed.polled",
        "status": "error",
        "new": 0,
        "error": "HTTP 503",
    }


def test_plain_log_records_are_one_line_too(capture: io.StringIO) -> None:
    setup_logging("INFO", "json", stream=capture)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("digest.x").exception("job %s failed", "outbox")

    (line,) = lines(capture)
    obj = json.loads(line)
    assert obj["message"] == "job outbox failed" and "ValueError: bad" in obj["error"]


def test_addresses_are_masked_at_info_and_shown_at_debug(capture: io.StringIO) -> None:
    setup_logging("DEBUG", "human", stream=capture)
    log = logging.getLogger("digest.app.send")

    log.warning("delivery 7 failed: 550 5.1.1 <ana.lima@example.org>: no such user")
    log.debug("claimed delivery 7 for ana.lima@example.org")

    warn, debug = lines(capture)
    assert "a***@example.org" in warn and "ana.lima" not in warn
    assert "ana.lima@example.org" in debug


def test_secrets_and_url_passwords_never_appear(capture: io.StringIO) -> None:
    setup_logging("INFO", "human", secrets=["hunter2-Sup3rSecret"], stream=capture)
    log = logging.getLogger("digest.service.runner")

    event(log, "smtp.connect", url="smtp://mailer:hunter2-Sup3rSecret@smtp.example.com:587")
    log.info("database postgresql+psycopg://app:pgpass123@db.internal/digest is up")

    text = capture.getvalue()
    assert "hunter2" not in text and "pgpass123" not in text
    assert "smtp://mailer:***@smtp.example.com" in text and "postgresql+psycopg://app:***@db.internal" in text


def test_every_address_in_a_text_is_masked() -> None:
    assert mask_emails("to a@b.co and Ben.O+x@mail.example.org") == "to a***@b.co and B***@mail.example.org"
