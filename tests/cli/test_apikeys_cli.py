"""``digest apikeys`` through the real entry point: the key is printed once, only its hash is stored."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.store.models import ApiKey
from tests.cli.test_cli import Run

pytestmark = pytest.mark.slow


def test_create_prints_the_key_once_and_stores_only_its_hash(run: Run, store: Engine) -> None:
    made = run("--log-level", "DEBUG", "apikeys", "create", "cms", "--scope", "articles:write,read")
    listed = run("apikeys", "list")
    listed_json = run("apikeys", "list", "--json")

    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("dg_") and len(key.splitlines()) == 1
    assert "not shown again" in made.stderr and key not in made.stderr
    with store.connect() as conn:
        row = conn.execute(select(ApiKey.__table__)).one()  # type: ignore[attr-defined]
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.split("_", 2)[2] not in repr(tuple(row))
    assert (row.name, row.scopes, row.prefix) == ("cms", "articles:write,read", "_".join(key.split("_", 2)[:2]))
    assert "cms" in listed.stdout and row.prefix in listed.stdout and key not in listed.stdout
    assert row.key_hash not in listed_json.stdout and key not in listed_json.stdout


def test_revoke_marks_the_key_and_list_shows_it(run: Run, store: Engine) -> None:
    run("apikeys", "create", "feed-bot", "--scope", "read")

    revoked = run("apikeys", "revoke", "feed-bot")
    unknown = run("apikeys", "revoke", "nobody")

    assert revoked.returncode == 0, revoked.stderr
    with store.connect() as conn:
        assert conn.execute(select(ApiKey.__table__.c.revoked_at)).scalar_one() is not None  # type: ignore[attr-defined]
    assert (unknown.returncode, unknown.stderr.count("\n")) == (4, 1)
    assert "no API key named 'nobody'" in unknown.stderr


def test_an_unknown_scope_is_one_line_naming_the_option(run: Run, store: Engine) -> None:
    done = run("apikeys", "create", "cms", "--scope", "articles:write,admin")

    assert done.returncode == 3
    assert "--scope: unknown scope admin" in done.stderr
    assert done.stdout == ""
