"""Leader election: which ``digest serve`` process holds the scheduler role.

On PostgreSQL the role is a session-level advisory lock held on a connection of
its own (in autocommit, so it never sits idle in a transaction). When the holder
dies, even by ``kill -9``, the server ends its session and frees the lock; another
process's next :meth:`try_acquire` (every ``leader_interval``) takes it over.

On SQLite one machine runs one service; an exclusive ``flock`` on a file beside
the database makes a second process on the same file a follower instead of a
second scheduler. An in-memory database is always led by its only process.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """The scheduler role: try to take (or keep) it, and give it up."""

    @property
    def holding(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def describe(self) -> str: ...


def lock_key(database: str, schema: str) -> int:
    """A stable signed 64-bit advisory lock key for one database and schema."""
    digest = hashlib.blake2b(f"digest-scheduler:{database}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLeader:
    """The scheduler role as a PostgreSQL advisory lock."""

    def __init__(self, engine: Engine, key: int | None = None) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    @property
    def holding(self) -> bool:
        return self._conn is not None

    def _connect(self) -> Connection:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self.key is None:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
            self.key = lock_key(db, schema)
        return conn

    def try_acquire(self) -> bool:
        if self._conn is not None:
            try:
                # The lock lives as long as this session: a live session still holds it.
                self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                self._drop()
                return False
        try:
            conn = self._connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except DBAPIError as exc:
            log.warning("leader lock: database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
            return False
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except DBAPIError:
                pass

    def release(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.close()
        except DBAPIError:
            pass
        self._conn = None

    def describe(self) -> str:
        return f"postgresql advisory lock {self.key}"


class FileLeader:
    """The scheduler role as an exclusive flock on ``<database>.leader`` (SQLite)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._memory = path is None

    @property
    def holding(self) -> bool:
        return self._memory or self._fh is not None

    def try_acquire(self) -> bool:
        path = self.path
        if self.holding or path is None:
            return True
        import fcntl

        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held open while leading)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def describe(self) -> str:
        return f"file lock {self.path}" if self.path else "single in-memory process"


def make_leader(engine: Engine, key: int | None = None) -> Leadership:
    """The leadership for the engine's backend."""
    if engine.dialect.name == "postgresql":
        return PostgresLeader(engine, key)
    db = engine.url.database
    if not db or db == ":memory:":
        return FileLeader(None)
    return FileLeader(Path(f"{db}.leader"))
