"""Retry policy: when a temporarily failed delivery is tried again."""

from __future__ import annotations

import random
from datetime import timedelta

from digest.core.settings import Settings


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Exponential back-off with jitter: ``retry_base * 2^(attempts-1)``, capped, times 0.5-1.0.

    The jitter spreads the retries of a whole failed batch instead of sending them
    back to a struggling server at the same second.
    """
    cap = settings.delivery.retry_max_delay.total_seconds()
    base = settings.retry_base.total_seconds() * (2 ** min(max(attempts - 1, 0), 30))
    return timedelta(seconds=min(base, cap) * (0.5 + random.random() / 2))
