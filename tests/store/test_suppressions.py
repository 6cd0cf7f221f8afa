"""The suppression list: who lands on it, that it outlives the subscriber, and who may leave it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from digest.app.subscriptions import unsubscribe
from digest.core.errors import InputError
from digest.store.bounces import count_permanent_bounce
from digest.store.db import session_scope
from digest.store.models import SubscriberStatus, SuppressionReason
from digest.store.subscriber_import import import_csv
from digest.store.subscribers import add_subscriber, find_subscriber, remove_subscriber, set_status
from digest.store.suppressions import list_suppressions, suppress, suppression_of
from tests.conftest import NOW


def reasons(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.email: r.reason for r in list_suppressions(conn)}


def test_unsubscribe_suppresses_the_address(engine: Engine) -> None:
    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, "Ana@Example.org", NOW)
        unsubscribe(s, sub, NOW, source="web")
    assert reasons(engine) == {"Ana@example.org": SuppressionReason.UNSUBSCRIBED}


def test_hard_bounce_that_bounces_the_subscriber_suppresses_them(engine: Engine) -> None:
    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, "ana@example.org", NOW)
        first = count_permanent_bounce(s.connection(), sub.id or 0, NOW, 2, source="smtp")
        mid = reasons(engine)
        second = count_permanent_bounce(s.connection(), sub.id or 0, NOW, 2, source="smtp")
    assert (first, second) == (False, True)
    assert "ana@example.org" not in mid
    assert reasons(engine) == {"ana@example.org": SuppressionReason.BOUNCED}


def test_suppression_survives_deleting_the_subscriber_and_blocks_add(engine: Engine) -> None:
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW)
        set_status(s, "ana@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    with session_scope(engine) as s:
        remove_subscriber(s, "ana@example.org")
    refused = r"a\*\*\*@example.org is suppressed \(unsubscribed\)"
    with pytest.raises(InputError, match=refused), session_scope(engine) as s:
        add_subscriber(s, "ana@EXAMPLE.org", NOW)
    with session_scope(engine) as s:
        assert find_subscriber(s, "ana@example.org") is None


def test_allow_suppressed_adds_and_clears_the_suppression(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, "ana@example.org", SuppressionReason.COMPLAINED, "arf", NOW)
    with session_scope(engine) as s:
        sub, created = add_subscriber(s, "ana@example.org", NOW, allow_suppressed=True)
        assert created and sub.status == SubscriberStatus.ACTIVE
    with engine.connect() as conn:
        assert suppression_of(conn, "ana@example.org") is None


def test_import_rejects_suppressed_rows_and_keeps_the_others(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, "cy@example.org", SuppressionReason.BOUNCED, "smtp", NOW)
    with session_scope(engine) as s:
        report = import_csv(s, "email\nbob@example.org\ncy@example.org\n", "subs.csv", NOW)
    assert report.added == 1
    assert [str(p) for p in report.problems] == [
        "subs.csv:3: c***@example.org is suppressed (bounced): it needs a fresh confirmation (or --allow-suppressed)"
    ]


def test_the_first_reason_stays(engine: Engine) -> None:
    with engine.begin() as conn:
        assert suppress(conn, "ana@example.org", SuppressionReason.COMPLAINED, "arf", NOW)
        assert not suppress(conn, "Ana@Example.org", SuppressionReason.UNSUBSCRIBED, "web", NOW + timedelta(hours=1))
    assert reasons(engine) == {"ana@example.org": SuppressionReason.COMPLAINED}


def test_import_of_an_unsubscribed_row_suppresses_the_address(engine: Engine) -> None:
    with session_scope(engine) as s:
        import_csv(s, "email,status\ncy@example.org,unsubscribed\n", "subs.csv", NOW)
    assert reasons(engine) == {"cy@example.org": SuppressionReason.UNSUBSCRIBED}
