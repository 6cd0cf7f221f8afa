"""``digest subscribers``: add, import, list, remove and unsubscribe subscribers."""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from digest.cli.base import (
    JSON_HELP,
    MANY_RECORDS,
    ProgressOnDemand,
    State,
    app,
    finish_import,
    out,
    print_rows,
    state,
)
from digest.core.errors import InputError

if TYPE_CHECKING:
    from sqlmodel import Session

    from digest.store.models import Subscriber
    from digest.store.subscriber_check import KnownTopics

subscribers_app = typer.Typer(help="Manage subscribers.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")

ALLOW_NEW_HELP = "Accept topics no section has yet (only when a digest takes every category)."


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    timezone: Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Berlin.")] = None,
    topics: Annotated[str | None, typer.Option(help="Comma-separated sections; empty = all.")] = None,
    allow_new_topics: Annotated[
        bool, typer.Option("--allow-new-topics", help=ALLOW_NEW_HELP, show_default=False)
    ] = False,
    send_time: Annotated[
        str | None, typer.Option("--send-time", help="Local time HH:MM to receive it (default: the schedule).")
    ] = None,
    frequency: Annotated[
        str | None, typer.Option("--frequency", help="daily or weekly (default daily; weekly with --day).")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--day", help="Day of the weekly digest: MON, TUE ... SUN (implies weekly).")
    ] = None,
    allow_suppressed: Annotated[
        bool, typer.Option("--allow-suppressed", help="Add a suppressed address (you hold its fresh consent).")
    ] = False,
    breaking: Annotated[
        bool,
        typer.Option(
            "--breaking/--no-breaking", help="Breaking stories outside --topics too (--no-breaking: only the topics)."
        ),
    ] = True,
    locale: Annotated[
        str | None,
        typer.Option("--locale", help="Their language, a BCP 47 tag such as de, fr or pt-BR (default: the digest's)."),
    ] = None,
    alerts: Annotated[
        bool,
        typer.Option("--alerts/--no-alerts", help="Breaking news alerts by email (alert_priority, alerts_per_day)."),
    ] = False,
    quiet_start: Annotated[
        str | None,
        typer.Option("--quiet-start", help="Local time HH:MM from which no alert is sent (with --quiet-end)."),
    ] = None,
    quiet_end: Annotated[
        str | None,
        typer.Option("--quiet-end", help="Local time HH:MM until which no alert is sent (22:00-07:00 works)."),
    ] = None,
) -> None:
    """Add an active subscriber (a suppressed address is refused without --allow-suppressed)."""
    from digest.app.preferences import parse_frequency
    from digest.store.db import session_scope
    from digest.store.subscriber_check import parse_topics, validate_locale, validate_send_time, validate_timezone
    from digest.store.subscribers import add_subscriber

    validate_timezone(timezone, "--timezone")  # named as the option, not as the address
    tag = validate_locale(locale, "--locale")
    st = state(ctx)
    at = validate_send_time(send_time, "--send-time")
    if day is not None and (frequency or "weekly").strip().lower() != "weekly":
        raise InputError("--day", "is the day of a weekly digest: leave it out, or use --frequency weekly")
    freq = frequency or ("weekly" if day else "daily")
    freq, weekday = parse_frequency(freq, _weekday(day), ("--frequency", "--day"))
    with session_scope(st.engine) as session:
        wanted = _known(st, session, allow_new_topics).check(parse_topics(topics), "--topics")
        sub, _ = add_subscriber(
            session,
            email,
            st.clock.now(),
            name=name,
            timezone=timezone,
            topics=wanted,
            send_time=at,
            frequency=freq,
            weekday=weekday,
            allow_suppressed=allow_suppressed,
            breaking=breaking,
            locale=tag,
            alerts=alerts,
            quiet_start=quiet_start,
            quiet_end=quiet_end,
        )
        out.print(f"added {escape(sub.email)}")


def _weekday(day: str | None) -> int | None:
    """``--day``: a day's name or its first three letters or more, any case (0 = Monday)."""
    from digest.app.subscriptions import WEEKDAYS

    if day is None:
        return None
    name = day.strip().lower()
    for i, full in enumerate(WEEKDAYS):
        if len(name) >= 3 and full.lower().startswith(name):
            return i
    raise InputError("--day", f"not a day of the week: {day!r} (use MON, TUE, WED, THU, FRI, SAT or SUN)")


def _schedule(s: Subscriber) -> str:
    """How often, for the list: "daily", or "weekly (Fri)"."""
    from digest.app.subscriptions import WEEKDAYS

    if s.frequency == "weekly" and s.weekday is not None:
        return f"weekly ({WEEKDAYS[s.weekday][:3]})"
    return s.frequency


def _known(st: State, session: Session, allow_new: bool) -> KnownTopics:
    """The sections topics may name: the digests' ``sections`` (and stored categories when they are open)."""
    from digest.store.subscriber_check import known_topics

    return known_topics(session, [cfg.sections for cfg in st.settings.digests.values()], allow_new)


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    path: Path,
    allow_new_topics: Annotated[
        bool, typer.Option("--allow-new-topics", help=ALLOW_NEW_HELP, show_default=False)
    ] = False,
    allow_suppressed: Annotated[
        bool, typer.Option("--allow-suppressed", help="Import suppressed addresses too (you hold fresh consent).")
    ] = False,
) -> None:
    """Import subscribers from CSV (columns: email, name, timezone, topics, status, send_time, breaking, locale,
    alerts, quiet_start, quiet_end).

    ``breaking`` (true/false, default true): breaking stories outside the topics too.
    ``locale``: their language (de, fr, pt-BR ...); empty = the digest's.
    ``alerts`` (true/false, default false): breaking news alerts by email; ``quiet_start``
    and ``quiet_end`` (local HH:MM, both or neither): no alerts in between.

    A suppressed address (unsubscribed, complained, bounced) is a rejected row unless
    --allow-suppressed.

    All or nothing per file: bad rows are reported and skipped, and the good ones are
    committed together; if the database refuses the write (disk full, a constraint)
    no row of the file is kept (exit 8).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from digest.core.errors import StoreError
    from digest.core.logs import mask_emails
    from digest.ingest.reader import read_capped
    from digest.store.db import session_scope
    from digest.store.subscriber_import import import_csv

    st = state(ctx)
    data = read_capped(str(path), st.settings.import_max_bytes)
    lines = _utf8_lines(data, str(path))
    try:
        with ProgressOnDemand("importing", MANY_RECORDS) as bar, session_scope(st.engine) as session:
            bar.total(data.count(b"\n"))  # about one row a line, less the header
            known = _known(st, session, allow_new_topics)
            report = import_csv(
                session,
                lines,
                str(path),
                st.clock.now(),
                known,
                progress=bar.advance,
                allow_suppressed=allow_suppressed,
            )
    except SQLAlchemyError as exc:
        # The driver's first line says why ("database or disk is full"); it may quote a
        # row's values, so addresses are masked.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreError(f"{path}: nothing imported, no row of the file kept: {mask_emails(reason)}") from None
    finish_import(report.problems, f"added {report.added}, updated {report.updated}")


def _utf8_lines(data: bytes, path: str) -> io.TextIOWrapper:
    """The lines of ``data`` (UTF-8, a leading BOM dropped), decoded as they are read.

    A million-row file is not held a second time as one string; it is checked whole
    first, so a file that is not UTF-8 is refused before any row is written.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    view = memoryview(data)
    try:
        for i in range(0, len(view), 1 << 20):
            decoder.decode(view[i : i + (1 << 20)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        try:
            data.decode("utf-8-sig")  # the same error, with its offset in the file
        except UnicodeDecodeError as exc:
            raise InputError(path, f"cannot read: {exc}") from None
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many (oldest first).")] = None,
) -> None:
    """List subscribers."""
    from digest.store.db import session_scope
    from digest.store.subscribers import list_subscribers

    st = state(ctx, reads_only=True)
    with session_scope(st.engine) as session:
        subs = list_subscribers(session, status, None if limit is None else limit + 1)
    header = ("email", "name", "status", "timezone", "send time", "frequency", "topics", "breaking")
    print_rows(
        subs,
        as_json,
        {"email_key"},
        header,
        lambda s: (
            escape(s.email),
            escape(s.name),
            s.status,
            s.timezone or "",
            s.send_time or "",
            _schedule(s),
            escape(", ".join(s.topics)),
            "yes" if s.breaking else "no",
        ),
        "subscriber",
        limit,
    )


@subscribers_app.command("remove")
def subscribers_remove(ctx: typer.Context, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    from digest.store.db import session_scope
    from digest.store.subscribers import remove_subscriber

    with session_scope(state(ctx).engine) as session:
        remove_subscriber(session, email)
    out.print(f"removed {escape(email)}")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(ctx: typer.Context, email: str) -> None:
    """Mark a subscriber unsubscribed (kept, so they are never re-added by an import by mistake)."""
    from digest.store.db import session_scope
    from digest.store.models import SubscriberStatus
    from digest.store.subscribers import set_status

    st = state(ctx)
    with session_scope(st.engine) as session:
        set_status(session, email, SubscriberStatus.UNSUBSCRIBED, st.clock.now())
    out.print(f"unsubscribed {escape(email)}")
