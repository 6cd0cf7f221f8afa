"""Subscribers: validation, case-insensitive uniqueness, CSV import, status changes (every backend)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.core.errors import InputError, NotFoundError
from digest.store.bounces import count_permanent_bounce
from digest.store.db import session_scope
from digest.store.models import Delivery, Edition, SubscriberEvent, SubscriberEventKind, SubscriberStatus
from digest.store.subscriber_import import CsvReport, import_csv
from digest.store.subscribers import add_subscriber, find_subscriber, list_subscribers, remove_subscriber, set_status
from tests.conftest import NOW


def add(engine: Engine, email: str, **kw: object) -> None:
    with session_scope(engine) as session:
        add_subscriber(session, email, NOW, **kw)  # type: ignore[arg-type]


def import_text(engine: Engine, text: str, source: str = "people.csv") -> CsvReport:
    with session_scope(engine) as session:
        return import_csv(session, text, source, NOW)


def emails(engine: Engine, status: str | None = None) -> list[str]:
    with session_scope(engine) as session:
        return [s.email for s in list_subscribers(session, status)]


# ---------------------------------------------------------------- add


def test_add_stores_an_active_subscriber(engine: Engine) -> None:
    add(engine, "ana@example.org", name="Ana Lima", timezone="Europe/Lisbon")

    with session_scope(engine) as session:
        sub = find_subscriber(session, "ana@example.org")
        assert sub is not None
        assert (sub.name, sub.timezone, sub.status) == ("Ana Lima", "Europe/Lisbon", SubscriberStatus.ACTIVE)


def test_add_rejects_invalid_email_naming_it(engine: Engine) -> None:
    with pytest.raises(InputError) as info:
        add(engine, "ana.example.org")

    assert "invalid email address 'ana.example.org'" in str(info.value)
    assert emails(engine) == []


def test_uniqueness_is_case_insensitive(engine: Engine) -> None:
    add(engine, "Ana@Example.org")

    with pytest.raises(InputError, match="already subscribed"):
        add(engine, "ana@example.org")

    assert len(emails(engine)) == 1


def test_find_is_case_insensitive(engine: Engine) -> None:
    add(engine, "Ana@Example.org")

    with session_scope(engine) as session:
        sub = find_subscriber(session, "  ANA@EXAMPLE.ORG ")
        assert sub is not None and sub.email == "Ana@example.org"


def test_invalid_timezone_is_rejected(engine: Engine) -> None:
    with pytest.raises(InputError, match="Mars/Base"):
        add(engine, "ana@example.org", timezone="Mars/Base")

    assert emails(engine) == []


def test_topics_are_parsed_from_a_comma_separated_string(engine: Engine) -> None:
    add(engine, "ana@example.org", topics="World,  Science , ,Business")

    with session_scope(engine) as session:
        sub = find_subscriber(session, "ana@example.org")
        assert sub is not None and sub.topics == ["World", "Science", "Business"]


# ---------------------------------------------------------------- CSV import


def test_csv_import_keeps_valid_rows_and_reports_each_bad_row_by_file_line(engine: Engine) -> None:
    text = (
        "email,name,timezone\n"  # line 1
        "ana@example.org,Ana,Europe/Lisbon\n"  # 2
        "not-an-email,Broken,\n"  # 3
        "\n"  # 4 (blank, skipped)
        "bob@example.org,Bob,\n"  # 5
        "cy@example.org,Cy,Mars/Base\n"  # 6
        "dee@example.org,Dee,UTC\n"  # 7
    )

    report = import_text(engine, text, "people.csv")

    assert (report.added, report.updated) == (3, 0)
    assert [p.where for p in report.problems] == ["people.csv:3", "people.csv:6"]
    assert "people.csv:6: unknown IANA timezone 'Mars/Base'" in str(report.problems[1])
    assert emails(engine) == ["ana@example.org", "bob@example.org", "dee@example.org"]


def test_csv_bad_row_after_multiline_field_is_reported_at_its_first_line(engine: Engine) -> None:
    text = 'email,name\n"not-an-email","Ana\nLima"\n'

    report = import_text(engine, text, "people.csv")

    assert [p.where for p in report.problems] == ["people.csv:2"]


def test_csv_unknown_column_is_rejected(engine: Engine) -> None:
    with pytest.raises(InputError) as info:
        import_text(engine, "email,name,favourite_colour\nana@example.org,Ana,blue\n", "people.csv")

    assert info.value.where == "people.csv:1"
    assert "favourite_colour" in str(info.value)
    assert emails(engine) == []


def test_csv_without_email_column_is_rejected(engine: Engine) -> None:
    with pytest.raises(InputError, match="'email' column"):
        import_text(engine, "name\nAna\n")


def test_csv_header_is_case_and_space_insensitive(engine: Engine) -> None:
    report = import_text(engine, " Email , NAME \nana@example.org,Ana\n")

    assert report.added == 1 and not report.problems


def test_csv_updates_existing_subscribers(engine: Engine) -> None:
    add(engine, "Ana@Example.org", name="Ana", topics="World")

    report = import_text(engine, 'email,name,topics\nana@example.org,Ana Lima,"Science, Business"\n')

    assert (report.added, report.updated) == (0, 1)
    with session_scope(engine) as session:
        sub = find_subscriber(session, "ana@example.org")
        assert sub is not None
        assert (sub.name, sub.topics) == ("Ana Lima", ["Science", "Business"])
    assert len(emails(engine)) == 1


def test_csv_import_does_not_resubscribe_an_unsubscribed_address(engine: Engine) -> None:
    add(engine, "ana@example.org")
    with session_scope(engine) as session:
        set_status(session, "ana@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)

    import_text(engine, "email,name\nana@example.org,Ana\n")

    assert emails(engine, SubscriberStatus.UNSUBSCRIBED) == ["ana@example.org"]


def test_csv_explicit_status_column_is_applied(engine: Engine) -> None:
    add(engine, "ana@example.org")

    report = import_text(engine, "email,status\nana@example.org,Unsubscribed\nbob@example.org,bogus\n")

    assert [p.where for p in report.problems] == ["people.csv:3"]
    assert emails(engine, SubscriberStatus.UNSUBSCRIBED) == ["ana@example.org"]


# ---------------------------------------------------------------- status and removal


def test_unsubscribe_keeps_the_row_with_status_unsubscribed(engine: Engine) -> None:
    add(engine, "ana@example.org")
    add(engine, "bob@example.org")

    with session_scope(engine) as session:
        set_status(session, "ANA@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)

    assert emails(engine, SubscriberStatus.ACTIVE) == ["bob@example.org"]
    assert emails(engine, SubscriberStatus.UNSUBSCRIBED) == ["ana@example.org"]


def test_unsubscribe_unknown_address_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError), session_scope(engine) as session:
        set_status(session, "nobody@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)


def test_remove_deletes_subscriber_and_their_deliveries(engine: Engine) -> None:
    add(engine, "ana@example.org")
    add(engine, "bob@example.org")
    with session_scope(engine) as session:
        edition = Edition(digest="daily", slot="2026-11-25", built_at=NOW, article_count=0, status="ready")
        session.add(edition)
        session.flush()
        for email in ("ana@example.org", "bob@example.org"):
            sub = find_subscriber(session, email)
            assert sub is not None
            session.add(Delivery(edition_id=edition.id, subscriber_id=sub.id, status="sent", created_at=NOW))

    with session_scope(engine) as session:
        remove_subscriber(session, "Ana@Example.org")

    assert emails(engine) == ["bob@example.org"]
    with session_scope(engine) as session:
        assert len(session.exec(select(Delivery)).all()) == 1


def test_remove_unknown_address_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="nobody@example.org"), session_scope(engine) as session:
        remove_subscriber(session, "nobody@example.org")


# ---------------------------------------------------------------- the bounce rule


def test_a_permanent_bounce_at_the_limit_bounces_an_active_subscriber_once(engine: Engine) -> None:
    add(engine, "ana@example.org")
    with session_scope(engine) as session:
        sub_id = find_subscriber(session, "ana@example.org").id  # type: ignore[union-attr]
    with engine.begin() as conn:
        counted = [count_permanent_bounce(conn, sub_id, NOW, 2, source="smtp") for _ in range(3)]  # type: ignore[arg-type]
    assert counted == [False, True, False]
    with session_scope(engine) as session:
        sub = find_subscriber(session, "ana@example.org")
        kinds = session.exec(select(SubscriberEvent.kind).where(SubscriberEvent.subscriber_id == sub_id)).all()
    assert (sub.bounce_count, sub.status) == (3, SubscriberStatus.BOUNCED)  # type: ignore[union-attr]
    assert kinds == [SubscriberEventKind.BOUNCE_PERMANENT] * 3


def test_a_bounce_for_a_subscriber_removed_meanwhile_writes_nothing(engine: Engine) -> None:
    """The sender records a batch after its sends: the subscriber may be erased in between."""
    add(engine, "ana@example.org")
    with session_scope(engine) as session:
        sub_id = find_subscriber(session, "ana@example.org").id  # type: ignore[union-attr]
        remove_subscriber(session, "ana@example.org")
    with engine.begin() as conn:
        assert count_permanent_bounce(conn, sub_id, NOW, 1, source="smtp") is False  # type: ignore[arg-type]
    with session_scope(engine) as session:
        assert session.exec(select(SubscriberEvent)).all() == []


# Addresses on both sides of email-validator's rules: the fast path must agree with it on each.
TRICKY = [
    "ana@example.org", "Ana.Lima+news@Example.ORG", "Postmaster@Example.org", "ABUSE@example.org",
    "a@bücher.de", "a@xn--bcher-kva.de", "ünï@example.org", "a@localhost", "a@example.invalid", "a@test",
    "a@example.org.", ".a@example.org", "a.@example.org", "a..b@example.org", "a@-example.org",
    "a@exa_mple.org", "a@b@example.org", '"a b"@example.org', "Ana <ana@example.org>", "a@[127.0.0.1]",
    "@example.org", "ana@", "a" * 64 + "@example.org", "a" * 65 + "@example.org",
    "a" * 240 + "@example.org", "a" * 241 + "@example.org", "a@" + "b" * 63 + ".org", "a@" + "b" * 64 + ".org",
    "a@" + ".".join(["b" * 60] * 4) + ".org", "x" * 60 + "@" + ".".join(["b" * 60] * 3) + ".de",
    "a@\u0338example.org", "a!#$%&'*+/=?^_`{|}~-@example.org", "a@example.org\u00a0", "a@EXAMPLE.co.uk",
]  # fmt: skip


@pytest.mark.parametrize("address", TRICKY)
def test_normalise_email_gives_email_validators_verdict(address: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from digest.store.subscriber_check import normalise_email

    stripped = address.strip()  # as normalise_email does first
    try:
        expected: str | None = validate_email(stripped, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        expected, problem = None, f"invalid email address {stripped!r}: {exc}"
    if expected is None:
        with pytest.raises(InputError) as info:
            normalise_email(address, "people.csv:2")
        assert info.value.problem == problem
    else:
        assert normalise_email(address) == (expected, expected.casefold())


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [("22:00", None, "need both a start and an end"), ("25:00", "07:00", "quiet_start must be a local time HH:MM"),
     ("07:00", "7:00", "must not start and end at the same time")],
)  # fmt: skip
def test_quiet_hours_are_both_valid_times_or_none(start: str, end: str | None, problem: str) -> None:
    from digest.store.subscriber_check import validate_quiet_hours

    with pytest.raises(InputError, match=problem):
        validate_quiet_hours(start, end, "--quiet-start")


def test_quiet_hours_are_stored_zero_padded() -> None:
    from digest.store.subscriber_check import validate_quiet_hours

    assert validate_quiet_hours("22:00", "7:05", "x") == ("22:00", "07:05")
    assert validate_quiet_hours(" ", None, "x") == (None, None)
