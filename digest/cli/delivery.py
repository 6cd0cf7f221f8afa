"""Delivery commands: ``digest deliveries`` lists the outbox, ``digest resend`` retries failures."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from digest.cli.base import JSON_HELP, app, err, out, print_json_line, progress_bar, setup_logging, state
from digest.cli.send import stop_for_retry
from digest.core.errors import DeliveryError, InputError


@app.command()
def deliveries(
    ctx: typer.Context,
    edition: Annotated[
        str | None, typer.Option("--edition", help="Only this edition: its id, DIGEST:SLOT, or SLOT.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only this status: queued, claimed, sent, failed (= failed_temporary + failed_permanent), "
            "failed_temporary, failed_permanent, skipped, pending.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List deliveries (the outbox) with their status, attempts and last SMTP answer."""
    from digest.app.send import find_edition_ref
    from digest.outbox.ledger import STATUS_FILTERS, list_deliveries

    st = state(ctx, reads_only=True)
    if status is not None and status not in STATUS_FILTERS:
        raise InputError("--status", f"unknown status {status!r} (one of: {', '.join(STATUS_FILTERS)})")
    edition_id = find_edition_ref(st.engine, st.settings, edition).id if edition else None
    found, counts = list_deliveries(st.engine, edition_id, STATUS_FILTERS[status] if status else None, limit)
    if as_json:
        for d in found:
            print_json_line(dataclasses.asdict(d))
        return
    header = ("id", "edition", "subscriber", "status", "attempts", "next attempt", "last answer")
    lines = [
        (
            str(d.id),
            f"{d.digest}:{d.slot}",
            d.email,
            d.status,
            str(d.attempts),
            d.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S") if d.next_attempt_at else "",
            (d.last_response or "").replace("\n", " ")[:80],
        )
        for d in found
    ]
    if out.is_terminal:
        table = Table(*header, box=None)
        for line in lines:
            table.add_row(*(escape(v) for v in line))
        out.print(table)
    else:
        # Piped: one tab-separated line per delivery, nothing cut to a terminal's width.
        for line in [header, *lines]:
            out.print("\t".join(line), markup=False, highlight=False, soft_wrap=True)
    total = sum(counts.values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    more = f" (showing {len(found)})" if total > len(found) else ""
    out.print(f"{total} deliveries: {summary}{more}")


@app.command()
def resend(
    ctx: typer.Context,
    edition: Annotated[str, typer.Argument(help="The edition: its id, DIGEST:SLOT, or SLOT.")],
    failed: Annotated[
        bool, typer.Option("--failed", help="Accepted for older scripts: resend only ever retries failed deliveries.")
    ] = False,
) -> None:
    """Retry now the failed deliveries of an edition; those who got it are never sent it again."""
    from digest.app.send import find_edition_ref, resend_failed
    from digest.store.models import saved_id

    st = state(ctx)
    setup_logging(st)
    found = find_edition_ref(st.engine, st.settings, edition)
    edition_id = saved_id(found)
    label = f"{found.digest}:{found.slot}"
    stopped: DeliveryError | None = None
    with progress_bar() as bar:
        task = bar.add_task("resend", total=None)
        try:
            report = resend_failed(
                st.engine, st.settings, edition_id, st.clock, progress=lambda n: bar.advance(task, n)
            )
        except DeliveryError as exc:
            stopped = exc
    if stopped is not None:
        stop_for_retry(st, str(stopped), edition_id, label)
    if not report.queued:
        out.print(f"{label}: no failed deliveries")
        return
    out.print(
        f"{label}: retried {report.queued}: sent {report.sent}, failed {report.failed} "
        f"({report.failed_temporary} will be retried), skipped {report.skipped}"
    )
    if report.server_error:
        stop_for_retry(st, report.server_error, edition_id, label)
    if report.failed:
        err.print(f"see: digest deliveries --edition {edition_id} --status failed")
        raise typer.Exit(1)
