"""Engine and session factory, SQLite pragmas, and schema migrations (Alembic)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session, create_engine

from digest.core.errors import ConfigError, DigestError, StoreUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"
SUPPORTED = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
# Driver messages (lower case) that mean the URL or the server's set-up is wrong: waiting will not help.
_CONFIG_FAULTS = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "unable to open database file",
    "readonly database",
    "read-only file system",
    "permission denied",
)


def redact(url: str) -> str:
    """Return ``url`` with any password replaced, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def make_engine(url: str, *, make_dirs: bool = True, source: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    ``make_dirs`` False refuses a SQLite file whose directory does not exist (a typo
    in the path would otherwise start a new, empty store). ``source`` (where the URL
    was set) goes into the :class:`ConfigError` of a bad URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database_url", f"not a database URL: {redact(url)}; {SUPPORTED}", source) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError("database_url", f"unsupported database {backend}:// ({redact(url)}); {SUPPORTED}", source)
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            directory = Path(db).parent
            if make_dirs:
                directory.mkdir(parents=True, exist_ok=True)
            elif not directory.is_dir():
                raise ConfigError("database_url", f"directory {directory} does not exist (a typo?)", source)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers (preview, status) run while a send writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(url, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        # e.g. postgresql:// without +psycopg asks for a driver digest does not install.
        problem = f"no driver for {parsed.drivername}:// ({exc}); {SUPPORTED}"
        raise ConfigError("database_url", problem, source) from None


def open_store(url: str, *, create: bool = True, make_dirs: bool = True, source: str | None = None) -> Engine:
    """An engine on the store at ``url``, its schema brought up to date (see :func:`ensure_schema`).

    ``create`` False (commands that only read) refuses a store that does not exist yet
    instead of creating an empty one. Every failure is a :class:`DigestError` naming
    ``database_url``: :class:`ConfigError` when the URL or the server's set-up is
    wrong, :class:`StoreUnavailableError` when trying again later may work.
    """
    engine = make_engine(url, make_dirs=make_dirs, source=source)
    try:
        if not create:
            db = engine.url.database
            missing = engine.dialect.name == "sqlite" and bool(db) and db != ":memory:" and not Path(str(db)).exists()
            if missing or is_new(engine):
                engine.dispose()
                raise ConfigError(
                    "database_url",
                    f"no digest store at {redact(url)}: check the URL, or create it with `digest db upgrade`",
                    source,
                )
        ensure_schema(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise database_error(exc, url, source) from exc
    return engine


def database_error(exc: BaseException, url: str, source: str | None = None) -> DigestError:
    """The one-line :class:`DigestError` for a database failure, naming ``database_url`` and the cause.

    The driver's first line says why; the URL is shown with its password masked.
    """
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    cause = (lines[0] if lines else type(orig).__name__).removeprefix("connection failed: ")
    cause = cause.removeprefix("FATAL:").strip()
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:  # drivers do not quote it today; a future one must not leak it either
        cause = cause.replace(str(password), "***")
    if "unable to open database file" in cause or "readonly database" in cause:
        # SQLite says one or the other for a read-only disk, depending on whether it had to create its WAL files.
        cause += " (is its directory writable, the disk not read-only?)"
    if any(fault in cause.lower() for fault in _CONFIG_FAULTS):
        return ConfigError("database_url", f"{redact(url)}: {cause}", source)
    where = f" (in {source})" if source else ""
    return StoreUnavailableError(f"database_url{where}: {redact(url)}: {cause}; try again later")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The schema revision this version of digest needs (the newest migration)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def is_new(engine: Engine) -> bool:
    """True when the database has none of digest's tables yet."""
    return not inspect(engine).has_table("alembic_version")


def ensure_schema(engine: Engine) -> None:
    """Upgrade a new or outdated SQLite database automatically.

    PostgreSQL is shared by several processes, so its upgrades stay an explicit ops
    step (``digest db upgrade``), except for a database with no tables at all.
    """
    if engine.dialect.name == "sqlite" or is_new(engine):
        upgrade(engine)
