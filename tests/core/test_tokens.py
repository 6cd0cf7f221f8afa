"""Signed subscriber tokens: purpose-scoped, subscriber-bound, unforgeable."""

from __future__ import annotations

import pytest

from digest.core.errors import TokenError
from digest.core.tokens import address_hash, make_token, read_token

KEY = "k" * 32


def test_token_round_trips_subscriber_and_address() -> None:
    token = make_token(KEY, "unsubscribe", 7, "ana@example.org")
    assert read_token(KEY, "unsubscribe", token) == (7, address_hash("ana@example.org"))


def test_token_for_one_purpose_is_rejected_for_another() -> None:
    token = make_token(KEY, "preferences", 7, "ana@example.org")
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", token)


def test_token_signed_with_another_key_is_rejected() -> None:
    token = make_token("other-key", "unsubscribe", 7, "ana@example.org")
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", token)


def test_tampered_token_is_rejected() -> None:
    token = make_token(KEY, "unsubscribe", 7, "ana@example.org")
    forged = token.replace(token[2], "A" if token[2] != "A" else "B", 1)
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", forged)


def test_expired_token_is_rejected() -> None:
    token = make_token(KEY, "confirm", 7, "ana@example.org")
    with pytest.raises(TokenError, match="expired"):
        read_token(KEY, "confirm", token, max_age=-1)


def test_tokens_of_two_subscribers_differ() -> None:
    assert make_token(KEY, "unsubscribe", 7, "a@x.org") != make_token(KEY, "unsubscribe", 8, "b@x.org")


def test_error_message_leaks_nothing() -> None:
    with pytest.raises(TokenError) as info:
        read_token(KEY, "unsubscribe", "garbage.token")
    assert KEY not in str(info.value) and "garbage" not in str(info.value)
