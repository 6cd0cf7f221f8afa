"""Provider pauses in the store: the later pause wins, expired ones are not active, addresses never stored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from digest.store.provider_pauses import active_provider_pauses, record_provider_pause
from tests.conftest import NOW


def _record(engine: Engine, provider: str, minutes: float, reason: str) -> None:
    with engine.begin() as conn:
        record_provider_pause(conn, provider, NOW + timedelta(minutes=minutes), reason, NOW)


def _active(engine: Engine, minutes: float = 0) -> list[tuple[str, object, str]]:
    with engine.connect() as conn:
        return [
            (p.provider, p.paused_until, p.reason)
            for p in active_provider_pauses(conn, NOW + timedelta(minutes=minutes))
        ]


def test_the_later_pause_is_kept_with_its_reason(engine: Engine) -> None:
    _record(engine, "google", 10, "first")
    _record(engine, "google", 5, "shorter")
    _record(engine, "microsoft", 60, "policy")

    assert _active(engine) == [
        ("google", NOW + timedelta(minutes=10), "first"),
        ("microsoft", NOW + timedelta(minutes=60), "policy"),
    ]
    _record(engine, "google", 20, "longer")
    assert _active(engine)[0] == ("google", NOW + timedelta(minutes=20), "longer")


def test_an_expired_pause_is_not_active_and_a_new_one_replaces_it(engine: Engine) -> None:
    _record(engine, "google", 10, "old")

    assert _active(engine, minutes=10) == []
    with engine.begin() as conn:
        record_provider_pause(conn, "google", NOW + timedelta(minutes=25), "new", NOW + timedelta(minutes=15))
    assert _active(engine, minutes=15) == [("google", NOW + timedelta(minutes=25), "new")]


def test_an_address_in_the_reason_is_masked(engine: Engine) -> None:
    _record(engine, "google", 10, "google gmail rate limit: 421 4.7.28 to\r\ngina.rossi@gmail.com")

    assert _active(engine)[0][2] == "google gmail rate limit: 421 4.7.28 to g***@gmail.com"
