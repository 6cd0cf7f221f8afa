"""Leader election: one scheduler per database; a dead holder's role is taken over."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from digest.service.leader import FileLeader, PostgresLeader, lock_key, make_leader
from digest.store.db import make_engine


def test_file_lock_admits_one_leader_at_a_time(tmp_path: Path) -> None:
    a, b = FileLeader(tmp_path / "d.db.leader"), FileLeader(tmp_path / "d.db.leader")

    assert a.try_acquire() and a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire() and not a.try_acquire()
    b.release()


def test_in_memory_sqlite_is_always_led_by_its_only_process() -> None:
    leader = make_leader(make_engine("sqlite:///:memory:"))

    assert leader.try_acquire() and leader.holding


def test_lock_key_differs_per_schema() -> None:
    assert lock_key("test", "t_one") != lock_key("test", "t_two")
    assert lock_key("test", "t_one") == lock_key("test", "t_one")


@pytest.fixture
def pg(db_url: str, engine: Engine) -> str:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    return db_url


def test_advisory_lock_admits_one_leader_and_frees_when_the_holder_dies(pg: str) -> None:
    e1, e2 = make_engine(pg), make_engine(pg)
    a, b = PostgresLeader(e1), PostgresLeader(e2)
    try:
        assert a.try_acquire()
        assert not b.try_acquire()
        assert a.key == b.key
        # The holder's session dies (as when its process is killed): the server frees the lock.
        pid = a._conn.execute(text("SELECT pg_backend_pid()")).scalar()  # type: ignore[union-attr]
        admin = create_engine(pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()

        assert not a.try_acquire()  # it notices it lost the role
        assert b.try_acquire()
    finally:
        a.release()
        b.release()
        e1.dispose()
        e2.dispose()


def test_released_advisory_lock_is_taken_by_the_next(pg: str) -> None:
    e1, e2 = make_engine(pg), make_engine(pg)
    a, b = PostgresLeader(e1), PostgresLeader(e2)
    try:
        assert a.try_acquire()
        a.release()
        assert not a.holding and b.try_acquire()
    finally:
        b.release()
        e1.dispose()
        e2.dispose()
