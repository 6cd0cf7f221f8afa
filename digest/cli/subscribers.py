"""``digest subscribers``: add, import, list, remove and unsubscribe subscribers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import app, finish_import, out, print_rows, state
from digest.core.errors import InputError

subscribers_app = typer.Typer(help="Manage subscribers.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    timezone: Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Berlin.")] = None,
    topics: Annotated[str | None, typer.Option(help="Comma-separated sections; empty = all.")] = None,
    allow_suppressed: Annotated[
        bool, typer.Option("--allow-suppressed", help="Add a suppressed address (you hold its fresh consent).")
    ] = False,
) -> None:
    """Add an active subscriber (a suppressed address is refused without --allow-suppressed)."""
    from digest.store.db import session_scope
    from digest.store.subscribers import add_subscriber

    st = state(ctx)
    with session_scope(st.engine) as session:
        sub, _ = add_subscriber(
            session,
            email,
            st.clock.now(),
            name=name,
            timezone=timezone,
            topics=topics,
            allow_suppressed=allow_suppressed,
        )
        out.print(f"added {escape(sub.email)}")


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    path: Path,
    allow_suppressed: Annotated[
        bool, typer.Option("--allow-suppressed", help="Import suppressed addresses too (you hold fresh consent).")
    ] = False,
) -> None:
    """Import subscribers from CSV (columns: email, name, timezone, topics, status, send_time).

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
    from digest.store.subscribers import import_csv

    st = state(ctx)
    data = read_capped(str(path), st.settings.import_max_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"cannot read: {exc}") from None
    try:
        with session_scope(st.engine) as session:
            report = import_csv(session, text, str(path), st.clock.now(), allow_suppressed=allow_suppressed)
    except SQLAlchemyError as exc:
        # The driver's first line says why ("database or disk is full"); it may quote a
        # row's values, so addresses are masked.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreError(f"{path}: nothing imported, no row of the file kept: {mask_emails(reason)}") from None
    finish_import(report.problems, f"added {report.added}, updated {report.updated}")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List subscribers."""
    from digest.store.db import session_scope
    from digest.store.subscribers import list_subscribers

    st = state(ctx)
    with session_scope(st.engine) as session:
        subs = list_subscribers(session, status)
    header = ("email", "name", "status", "timezone", "topics")
    print_rows(
        subs,
        as_json,
        {"email_key"},
        header,
        lambda s: (escape(s.email), escape(s.name), s.status, s.timezone or "", escape(", ".join(s.topics))),
        "subscriber",
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
