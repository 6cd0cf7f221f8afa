"""Subscriber tokens: the fast maker writes exactly what itsdangerous writes, and reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeSerializer

from digest.core.errors import TokenError
from digest.core.tokens import address_hash, make_token, read_token, timed_serializer

SUBSCRIBERS = [(1, "a@b.example"), (123456789, "zoë@example.org"), (7, "aaa@aaaaaaaa.aa")]
NOW = datetime(2026, 11, 25, 7, tzinfo=UTC)


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences"])
@pytest.mark.parametrize(("sub_id", "key"), SUBSCRIBERS)
def test_untimed_tokens_are_itsdangerous_tokens(purpose: str, sub_id: int, key: str) -> None:
    expected = URLSafeSerializer("k3y", salt=f"digest.{purpose}").dumps([sub_id, address_hash(key)])

    assert make_token("k3y", purpose, sub_id, key) == expected


@pytest.mark.parametrize(("sub_id", "key"), SUBSCRIBERS)
def test_timed_tokens_are_itsdangerous_tokens_stamped_with_the_given_now(sub_id: int, key: str) -> None:
    expected = timed_serializer("k3y", "digest.confirm", NOW).dumps([sub_id, address_hash(key)])

    assert make_token("k3y", "confirm", sub_id, key, now=NOW) == expected


def test_a_token_reads_back_for_its_own_purpose_only() -> None:
    token = make_token("k3y", "unsubscribe", 42, "ana@example.org")

    assert read_token("k3y", "unsubscribe", token) == (42, address_hash("ana@example.org"))
    with pytest.raises(TokenError):
        read_token("k3y", "preferences", token)


def test_an_unknown_purpose_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown token purpose"):
        make_token("k3y", "login", 1, "a@b.example")
