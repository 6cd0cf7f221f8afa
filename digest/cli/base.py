"""What every command shares: the typer app, the consoles, the per-invocation State."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from digest.core.clock import Clock, FixedClock, SystemClock
from digest.core.errors import InputError
from digest.core.settings import Settings, load_settings, setting_source

app = typer.Typer(help="digest: scheduled breaking-news digests by email.", no_args_is_help=True, add_completion=False)


out = Console()


err = Console(stderr=True)


@dataclass
class State:
    """Dependencies built lazily from the global options, once per invocation."""

    config: Path | None = None
    log_level: str | None = None
    log_format: str | None = None
    _clock: Clock = field(default_factory=SystemClock)
    # False for commands that only read: they refuse to create a store that does not exist.
    create_store: bool = True

    @cached_property
    def settings(self) -> Settings:
        """The settings, every digest's schedule checked too (a bad cron names its file or variable)."""
        from digest.core.errors import ConfigError
        from digest.edition.schedule import cron_trigger

        settings = load_settings(self.config)
        for name, cfg in settings.digests.items():
            key = f"digests.{name}.schedule"
            try:
                cron_trigger(cfg.schedule, cfg.timezone, key)
            except ConfigError as exc:
                raise ConfigError(key, exc.problem, self.source(key)) from None
        return settings

    @cached_property
    def engine(self) -> Engine:
        """The store, migrated; any failure is one DigestError naming ``database_url``."""
        from digest.store.db import open_store

        return open_store(self.settings.database_url, create=self.create_store, **self.store_options())

    def store_options(self) -> dict[str, Any]:
        """``make_dirs`` and ``source`` of :func:`digest.store.db.make_engine` for the configured URL."""
        url = self.settings.database_url
        # Only the default location (var/) is created; any other missing directory is a typo.
        default = url == Settings.model_fields["database_url"].default
        return {"make_dirs": default, "source": self.source("database_url")}

    def source(self, key: str) -> str:
        """Where setting ``key`` was given (its variable or the settings file), for messages."""
        return setting_source(key, self.config)

    @property
    def clock(self) -> Clock:
        return self._clock


def state(ctx: typer.Context, *, reads_only: bool = False) -> State:
    """The invocation's State; ``reads_only`` for commands that must not create a store."""
    st = ctx.ensure_object(State)
    if reads_only:
        st.create_store = False
    return st


def debug_requested() -> bool:
    """True when ``--debug`` was given or ``DIGEST_DEBUG`` is set: errors show their traceback."""
    return DEBUG[0] or os.environ.get("DIGEST_DEBUG", "") not in ("", "0")


def current_state() -> State | None:
    """The State of this invocation once the global options are parsed (for ``main``'s error report)."""
    return STATES[-1] if STATES else None


# Set by the global options; read by ``main`` after the command has returned or raised.
DEBUG = [False]
STATES: list[State] = []


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file (default config/digest.toml or $DIGEST_CONFIG)."),
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="Override the configured log level.")] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="Log lines as 'human' or 'json' (default: service.log_format).")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, show the full traceback (also DIGEST_DEBUG=1).")
    ] = False,
) -> None:
    DEBUG[0] = debug
    ctx.obj = State(config=config, log_level=log_level, log_format=log_format)
    STATES.append(ctx.obj)


def setup_logging(st: State) -> None:
    """Configure logging from the global options and the settings (secrets masked)."""
    from digest.core.logs import secret_values
    from digest.core.logs import setup_logging as configure

    level = (st.log_level or st.settings.log_level).upper()
    configure(level, (st.log_format or st.settings.service.log_format).lower(), secret_values(st.settings))


def parse_at(value: str | None, tz: str) -> Clock:
    """``--at``: an ISO 8601 time; without an offset it is read in the digest's timezone."""
    if value is None:
        return SystemClock()
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InputError("--at", f"not an ISO 8601 date-time: {value!r}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(tz))
    return FixedClock(at)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def print_rows(
    rows: Sequence[Any],
    as_json: bool,
    exclude: set[str],
    header: Sequence[str],
    cells: Callable[[Any], Sequence[str]],
    noun: str,
) -> None:
    """A ``list`` command's output: JSON lines (rows without ``exclude``) or a table of ``cells`` and a count."""
    if as_json:
        for row in rows:
            out.print_json(row.model_dump_json(exclude=exclude))
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*cells(row))
    out.print(table)
    out.print(f"{len(rows)} {noun}(s)")


def finish_import(problems: Sequence[object], summary: str, code: int = InputError.exit_code, unread: int = 0) -> None:
    """Report each rejected record on stderr, the summary on stdout; exit ``code`` if any was rejected.

    ``unread``: how many of the problems are whole sources that could not be read.
    """
    for problem in problems:
        err.print(f"[red]error[/red]: {escape(str(problem))}", highlight=False, soft_wrap=True)
    note = f" ({unread} of them whole source(s) not read)" if unread else ""
    out.print(f"{summary}, rejected {len(problems)}{note}")
    if problems:
        raise typer.Exit(code)
