"""The OpenAPI schema of /api/v1 against the running app: schemathesis generates requests from it.

Time-boxed (a few examples an operation, one backend): it checks that the schema
tells the truth (statuses, content types and bodies as documented) and that no
request the schema allows makes the app fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.engine import Engine

from digest.app.apikeys import SCOPES, create_key
from digest.core.clock import FixedClock
from digest.core.settings import ApiSettings, DigestConfig, Settings
from digest.store.db import make_engine, upgrade
from digest.transport.sink import SmtpSink, free_port
from digest.web import WebServer, make_app
from tests.conftest import NOW

EXAMPLES = 8  # an operation: the whole run stays within seconds
# Not checked: that every body the schema allows is accepted. Part of the rules is
# more than JSON Schema says (an address that takes mail, a known timezone or topic,
# an absolute http(s) link, a BCP 47 tag): the schema gives them in descriptions.


@pytest.fixture
def api_engine(tmp_path: Path) -> Iterator[Engine]:
    """One backend is enough here: what the store does is tested in test_api.py on each."""
    eng = make_engine(f"sqlite:///{tmp_path / 'digest.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def api(api_engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app on loopback (its base URL) and a key with every scope."""
    port = free_port()
    with SmtpSink(directory=tmp_path / "mail") as sink:
        cfg = Settings(
            database_url="sqlite://",
            smtp_url=sink.url,  # type: ignore[arg-type]
            secret_key=secrets.token_urlsafe(32),  # type: ignore[arg-type]
            base_url=f"http://127.0.0.1:{port}",
            digests={"daily": DigestConfig(sections=["World", "Business"])},
            api=ApiSettings(rate_per_minute=100_000),
        )
        clock = FixedClock(NOW)
        key = create_key(api_engine, clock, "schemathesis", SCOPES).key
        with WebServer(make_app(cfg, api_engine, clock), cfg, "127.0.0.1", port) as server:
            yield server.url, key


def test_the_api_keeps_to_its_schema(api: tuple[str, str]) -> None:
    url, key = api
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11
    auth = {"Authorization": f"Bearer {key}"}

    for operation in operations:
        # Hypothesis directly, not schemathesis' pytest plugin (it reaches into pytest's private node ids).
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def keeps_to_it(case: Any) -> None:
            case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

        keeps_to_it()
