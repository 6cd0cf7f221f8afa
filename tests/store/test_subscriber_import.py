"""CSV import, set by set: the outcome is that of adding the rows one by one, whatever the chunk size."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from digest.store.db import session_scope
from digest.store.models import SubscriberStatus, SuppressionReason
from digest.store.subscriber_check import known_topics
from digest.store.subscriber_import import CsvReport, import_csv
from digest.store.subscribers import add_subscriber, find_subscriber
from digest.store.suppressions import list_suppressions, suppress
from tests.conftest import NOW


def run(engine: Engine, text: str, chunk_rows: int = 2, **kw: object) -> CsvReport:
    with session_scope(engine) as s:
        known = known_topics(s, [["World", "Science"]])
        return import_csv(s, text, "people.csv", NOW, known, chunk_rows=chunk_rows, **kw)  # type: ignore[arg-type]


def listed(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.email: r.reason for r in list_suppressions(conn)}


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_rows_of_one_address_apply_in_file_order_across_chunks(engine: Engine, chunk_rows: int) -> None:
    text = (
        "email,name,timezone,topics,status,breaking\n"
        "Ana@example.org,Ana,Europe/Berlin,world,,\n"
        "bob@example.org,Bob,,,,\n"
        "ana@EXAMPLE.org,Ana Lima,,,,false\n"
        "ana@example.org,,,,unsubscribed,\n"
    )

    report = run(engine, text, chunk_rows)

    assert (report.added, report.updated, report.problems) == (2, 2, [])
    with session_scope(engine) as s:
        ana = find_subscriber(s, "ana@example.org")
        assert ana is not None
        assert (ana.email, ana.name, ana.timezone, ana.topics) == (
            "Ana@example.org",
            "Ana Lima",
            "Europe/Berlin",
            ["World"],
        )
        assert (ana.breaking, ana.status) == (False, SubscriberStatus.UNSUBSCRIBED)
    assert listed(engine) == {"ana@example.org": SuppressionReason.UNSUBSCRIBED}


def test_an_existing_subscriber_keeps_what_the_row_leaves_empty(engine: Engine) -> None:
    with session_scope(engine) as s:
        add_subscriber(
            s, "ana@example.org", NOW, timezone="Asia/Tokyo", topics="Science", send_time="7:30", breaking=False
        )

    report = run(engine, "email,name,timezone,topics,send_time,breaking\nana@example.org,Ana Lima,,,,\n")

    assert (report.added, report.updated) == (0, 1)
    with session_scope(engine) as s:
        ana = find_subscriber(s, "ana@example.org")
        assert ana is not None
        assert (ana.name, ana.timezone, ana.topics, ana.send_time) == ("Ana Lima", "Asia/Tokyo", ["Science"], "07:30")
        assert (ana.breaking, ana.status) == (False, SubscriberStatus.ACTIVE)


def test_a_row_that_resubscribes_an_address_suppressed_earlier_in_the_file_needs_allow_suppressed(
    engine: Engine,
) -> None:
    text = "email,status\nana@example.org,unsubscribed\nbob@example.org,\nana@example.org,active\n"

    refused = run(engine, text)
    assert [p.where for p in refused.problems] == ["people.csv:4"]
    assert listed(engine) == {"ana@example.org": SuppressionReason.UNSUBSCRIBED}

    allowed = run(engine, text, allow_suppressed=True)
    assert allowed.problems == []
    with session_scope(engine) as s:
        assert find_subscriber(s, "ana@example.org").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert listed(engine) == {}  # the last row's consent took the address off the list


def test_problems_found_while_writing_are_reported_in_line_order(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, "cy@example.org", SuppressionReason.COMPLAINED, "arf", NOW)
    text = "email,timezone\ncy@example.org,\nana@example.org,\nnot-an-email,\ndee@example.org,Mars/Base\n"
    seen: list[int] = []

    report = run(engine, text, 2, progress=seen.append)

    assert [p.where for p in report.problems] == ["people.csv:2", "people.csv:4", "people.csv:5"]
    assert report.added == 1
    assert sum(seen) == 4  # every row read counts, good or bad


@pytest.mark.parametrize("chunk_rows", [1, 100])
def test_a_later_row_for_a_new_address_sets_every_column_it_gives(engine: Engine, chunk_rows: int) -> None:
    text = (
        "email,name,timezone,topics,status,send_time,breaking,locale,alerts,quiet_start,quiet_end\n"
        "ana@example.org,Ana,Europe/Berlin,World,pending,,,,,,\n"
        "ANA@example.org,,Asia/Tokyo,Science,active,7:30,false,pt_br,yes,22:00,6:00\n"
        "ana@example.org,Ána Lima,,,,,,,,,\n"
    )

    report = run(engine, text, chunk_rows)

    assert (report.added, report.updated, report.problems) == (1, 2, [])
    with session_scope(engine) as s:
        ana = find_subscriber(s, "ana@example.org")
        assert ana is not None
        assert (ana.email, ana.name, ana.timezone, ana.topics, ana.status, ana.send_time) == (
            "ana@example.org",
            "Ána Lima",
            "Asia/Tokyo",
            ["Science"],
            SubscriberStatus.ACTIVE,
            "07:30",
        )
        assert (ana.breaking, ana.locale, ana.alerts, ana.quiet_start, ana.quiet_end) == (
            False,
            "pt-BR",
            True,
            "22:00",
            "06:00",
        )


def test_a_suppressed_internationalised_address_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, "cy@bücher.example", SuppressionReason.COMPLAINED, "arf", NOW)
        suppress(conn, "dee@straße.example", SuppressionReason.BOUNCED, "bounce", NOW)

    report = run(engine, "email\ncy@BÜCHER.example\ndee@bücher.example\nDee@Straße.example\n", 100)

    assert [p.where for p in report.problems] == ["people.csv:2", "people.csv:4"]
    assert ["complained" in p.problem for p in report.problems] == [True, False]
    assert report.added == 1
