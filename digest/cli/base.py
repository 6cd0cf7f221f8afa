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

# Plain help (no Rich markup): option help names settings as "[web] host", which Rich
# would take for a style tag and drop, and Rich help shows every flag as "<bool>".
# Sub-apps inherit the mode from this one.
app = typer.Typer(
    help="digest: scheduled breaking-news digests by email.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


# A width no row reaches: a table printed this wide keeps each row on one line.
WIDE = 100_000

out = Console()
if not out.is_terminal:
    # Piped to another program: no terminal width to fit, so a table row stays on one
    # line (rich would otherwise wrap every cell at 80 columns and `grep` miss the row).
    out.width = WIDE


err = Console(stderr=True)
if not err.is_terminal:
    # Captured (a log file, journald, a test): one message is one line, not cut at 80 columns.
    err.width = WIDE


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


JSON_HELP = "One JSON object per line (JSON Lines) instead of a table."


def progress_bar(label: str = "sending") -> Progress:
    """A bar on stderr (stdout stays for the result): ``label``, done/total and time left."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


# Fewer records than this take under a second: no bar for them.
MANY_RECORDS = 500


class ProgressOnDemand:
    """A progress bar that appears once there are at least ``minimum`` things to count.

    Never an empty ``0/0`` bar when there is nothing to do, and no bar at all for work
    too short to watch. ``total(n)`` (re)sets the count, ``advance(n)`` counts done.
    """

    def __init__(self, label: str, minimum: int = 1) -> None:
        self.label = label
        self.minimum = minimum
        self.bar: Progress | None = None
        self.task: Any = None

    def total(self, n: int) -> None:
        if self.bar is None and n >= self.minimum:
            self.bar = progress_bar(self.label)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=n)
        elif self.bar is not None:
            self.bar.update(self.task, total=n)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __enter__(self) -> ProgressOnDemand:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.bar is None:
            return
        if exc_type is not None:
            # A failure is reported in one line of its own: the bar goes away.
            self.bar.live.transient = True
        else:
            # A total that was an estimate (lines of a CSV) ends at what was done.
            self.bar.update(self.task, total=self.bar.tasks[0].completed)
        self.bar.stop()


def print_rows(
    rows: Sequence[Any],
    as_json: bool,
    exclude: set[str],
    header: Sequence[str],
    cells: Callable[[Any], Sequence[str]],
    noun: str,
    limit: int | None = None,
) -> None:
    """A ``list`` command's output: JSON lines (rows without ``exclude``) or a table of ``cells`` and a count.

    ``limit``: the ``--limit`` the rows were read with, reading one row more; that
    extra row is not shown, it only tells that there are more.
    """
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    if as_json:
        for row in rows:
            print_json_line(row.model_dump_json(exclude=exclude))
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*cells(row))
    out.print(table)
    out.print(f"{len(rows)} {noun}(s)" + (f" shown; more with a higher --limit than {limit}" if more else ""))


def _json_value(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def print_unwrapped(renderable: Any) -> None:
    """Print ``renderable`` (a table) with each row on one line, even in a narrow terminal."""
    width = out.width
    out.width = WIDE
    try:
        out.print(renderable)
    finally:
        out.width = width


def print_json_line(obj: object) -> None:
    """One JSON object on one line of stdout (JSON Lines); ``obj`` is a dict or already JSON text."""
    import json

    line = obj if isinstance(obj, str) else json.dumps(obj, default=_json_value)
    out.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


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
