"""``digest webhooks add|list|remove|enable|deliver``: signed event POSTs to other systems."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from digest.cli.base import JSON_HELP, app, err, out, print_json_line, setup_logging, state

webhooks_app = typer.Typer(help="Webhooks out: events POSTed, signed, to other systems.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

EVENTS_HELP = (
    "Comma-separated events: delivery.sent, delivery.failed, subscriber.unsubscribed, subscriber.bounced, "
    "subscriber.complained, edition.sent."
)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}" if at is not None else "-"


@webhooks_app.command("add")
def webhooks_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The endpoint (http:// or https://) that receives the POSTs.")],
    events: Annotated[str, typer.Option("--events", help=EVENTS_HELP)],
) -> None:
    """Add an endpoint; its signing secret is printed once (store it with the receiver)."""
    from digest.app.webhooks import add_webhook, parse_events

    wanted = parse_events(events)
    st = state(ctx)
    added = add_webhook(st.engine, st.clock, url, wanted)
    out.print(f"webhook {added.id} added for {', '.join(wanted)}", highlight=False)
    out.print(f"secret: {added.secret}", markup=False, highlight=False)
    err.print("the secret is shown only now: the receiver needs it to verify the webhook-signature header")


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List endpoints with their health: last success, failures in a row, disabled, events queued."""
    from digest.app.webhooks import list_webhooks

    rows = list_webhooks(state(ctx, reads_only=True).engine)
    if as_json:
        for r in rows:
            print_json_line(asdict(r))
        return
    table = Table("id", "url", "events", "last success", "failures", "disabled", "pending", "last error", box=None)
    for r in rows:
        table.add_row(
            str(r.id),
            escape(r.url),
            ",".join(r.events),
            _when(r.last_success_at),
            str(r.consecutive_failures),
            _when(r.disabled_at) if r.disabled_at else "no",
            str(r.pending),
            escape((r.last_error or "")[:80]),
        )
    out.print(table)
    out.print(f"{len(rows)} webhook(s)")


@webhooks_app.command("remove")
def webhooks_remove(ctx: typer.Context, hook_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Delete an endpoint and the events queued for it."""
    from digest.app.webhooks import remove_webhook

    remove_webhook(state(ctx).engine, hook_id)
    out.print(f"webhook {hook_id} removed")


@webhooks_app.command("enable")
def webhooks_enable(ctx: typer.Context, hook_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Turn a disabled endpoint back on: failure count reset, its queued events due now."""
    from digest.app.webhooks import enable_webhook

    st = state(ctx)
    enable_webhook(st.engine, st.clock, hook_id)
    out.print(f"webhook {hook_id} enabled")


@webhooks_app.command("deliver")
def webhooks_deliver(ctx: typer.Context) -> None:
    """POST every event due now, once (the service does this every [webhooks] interval)."""
    from digest.app.webhooks import deliver_due
    from digest.outbox.journal import worker_id

    st = state(ctx)
    setup_logging(st)
    report = deliver_due(st.engine, st.settings, st.clock, worker_id())
    line = f"{report.delivered} delivered, {report.failed} failed"
    if report.dropped:
        line += f", {report.dropped} dropped after [webhooks] max_attempts"
    if report.disabled:
        line += f"; disabled: {', '.join(map(str, report.disabled))}"
    out.print(line, highlight=False)
