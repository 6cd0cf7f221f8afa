"""Per recipient: the personal values of a copy (address, name, signed links)."""

from __future__ import annotations

import functools
from typing import Protocol

from digest.compose.message import Recipient, address_domain
from digest.core.settings import Settings
from digest.core.tokens import token_maker, verp_tag


class SubscriberLike(Protocol):
    """What a copy needs of a subscriber row (compose reads no tables itself)."""

    id: int | None
    email: str
    email_key: str
    name: str


def recipient_for(settings: Settings, sub: SubscriberLike) -> Recipient:
    """The personal values of ``sub``'s copy: address, name and signed links."""
    if sub.id is None:
        raise ValueError("a subscriber that is not stored has no links")
    return recipient_values(settings, sub.id, sub.email, sub.email_key, sub.name)


def recipient_values(settings: Settings, subscriber_id: int, email: str, email_key: str, name: str) -> Recipient:
    """:func:`recipient_for` from the bare columns (the send loop reads no ORM objects)."""
    key = settings.secret_key.get_secret_value()
    tokens = token_maker(key)
    return _recipient(
        settings,
        email,
        name,
        subscriber_id,
        unsubscribe=tokens.make("unsubscribe", subscriber_id, email_key),
        preferences=tokens.make("preferences", subscriber_id, email_key),
        bounce_tag=verp_tag(key, subscriber_id, email_key) if settings.verp else "",
    )


def test_recipient(settings: Settings, email: str, name: str = "") -> Recipient:
    """A recipient that is not a subscriber (``send --to``, previews): inert links."""
    return _recipient(settings, email, name, None, unsubscribe="preview", preferences="preview", bounce_tag="")


def _recipient(
    settings: Settings,
    email: str,
    name: str,
    subscriber_id: int | None,
    *,
    unsubscribe: str,
    preferences: str,
    bounce_tag: str,
) -> Recipient:
    mailbox = settings.unsubscribe_address or _unsubscribe_mailbox(settings.from_addr)
    # A subscriber's mailto carries the token (URL-safe already: only the space is
    # quoted, as quote() would); a preview's asks to unsubscribe no one in particular.
    subject = "unsubscribe" if subscriber_id is None else f"unsubscribe%20{unsubscribe}"
    return Recipient(
        email=email,
        name=name,
        subscriber_id=subscriber_id,
        unsubscribe_url=f"{settings.base_url}/unsubscribe/{unsubscribe}",
        preferences_url=f"{settings.base_url}/preferences/{preferences}",
        unsubscribe_mailto=f"mailto:{mailbox}?subject={subject}",
        bounce_tag=bounce_tag,
    )


@functools.lru_cache(maxsize=16)
def _unsubscribe_mailbox(from_addr: str) -> str:
    return f"unsubscribe@{address_domain(from_addr)}"
