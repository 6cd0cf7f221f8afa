"""Fixtures of the outbox tests: a scripted SMTP server and a pool pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from digest.core.settings import Settings
from tests.smtp_script import ScriptedSink


@pytest.fixture
def script() -> Iterator[ScriptedSink]:
    with ScriptedSink() as s:
        yield s


@pytest.fixture
def pool(settings: Settings, script: ScriptedSink) -> Settings:
    """Settings that send over a pool of two connections to the scripted server."""
    settings.smtp_url = SecretStr(script.url)
    settings.smtp_timeout = 2.0
    settings.delivery.connections = 2
    return settings
