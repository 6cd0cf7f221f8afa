"""``digest suppressions`` (the addresses that get no mail) and ``digest resume`` (a paused digest)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import app, out, print_rows, state
from digest.core.errors import InputError

suppressions_app = typer.Typer(help="The suppression list: addresses never mailed.", no_args_is_help=True)
app.add_typer(suppressions_app, name="suppressions")

EXPORT_COLUMNS = ("email", "email_hash", "reason", "source", "created_at")


@suppressions_app.command("list")
def suppressions_list(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="Only this reason (unsubscribed, complained, ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List suppressed addresses."""
    from digest.store.suppressions import list_suppressions

    with state(ctx).engine.connect() as conn:
        rows = list_suppressions(conn, reason)
    print_rows(
        rows,
        as_json,
        {"id"},
        ("email", "reason", "source", "since"),
        lambda r: (escape(r.email or f"(erased) {r.email_hash[:12]}"), r.reason, r.source, f"{r.created_at:%Y-%m-%d}"),
        "suppression",
    )


@suppressions_app.command("add")
def suppressions_add(ctx: typer.Context, email: str) -> None:
    """Suppress an address by hand (reason ``manual``): it gets no mail, whatever its status."""
    from digest.store.models import SuppressionReason
    from digest.store.subscriber_check import normalise_email
    from digest.store.suppressions import suppress

    st = state(ctx)
    addr, _ = normalise_email(email)
    with st.engine.begin() as conn:
        added = suppress(conn, addr, SuppressionReason.MANUAL, "cli", st.clock.now())
    out.print(f"suppressed {escape(addr)}" if added else f"{escape(addr)} was already suppressed")


@suppressions_app.command("remove")
def suppressions_remove(ctx: typer.Context, email: str) -> None:
    """Take an address off the list (only with the owner's fresh consent)."""
    from digest.core.errors import NotFoundError
    from digest.store.suppressions import unsuppress

    with state(ctx).engine.begin() as conn:
        removed = unsuppress(conn, email)
    if not removed:
        raise NotFoundError(f"{email} is not suppressed")
    out.print(f"removed {escape(email)} from the suppression list")


@suppressions_app.command("export")
def suppressions_export(ctx: typer.Context, path: Path) -> None:
    """Write the list to a CSV file (columns: email, email_hash, reason, source, created_at)."""
    from digest.store.suppressions import list_suppressions

    with state(ctx).engine.connect() as conn:
        rows = list_suppressions(conn)
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(EXPORT_COLUMNS)
            for r in rows:
                writer.writerow((r.email, r.email_hash, r.reason, r.source, r.created_at.isoformat()))
    except OSError as exc:
        raise InputError(str(path), f"cannot write: {exc.strerror}") from None
    out.print(f"exported {len(rows)} suppressed address(es) to {escape(str(path))}")


@app.command()
def resume(ctx: typer.Context, digest: str) -> None:
    """Send a digest again after it was paused for its complaint rate (see `digest status`)."""
    from digest.core.errors import NotFoundError
    from digest.store.pauses import resume_digest

    st = state(ctx)
    name, _ = st.settings.digest(digest)
    with st.engine.begin() as conn:
        resumed = resume_digest(conn, name)
    if not resumed:
        raise NotFoundError(f"digest {name} is not paused")
    out.print(f"resumed {escape(name)}: its editions are sent again")
