"""``digest alerts send``: breaking alerts due now, through the outbox like every email."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import app, out, parse_at, setup_logging, state

alerts_app = typer.Typer(help="Breaking news alerts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("send")
def alerts_send(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="Pretend it is this time (ISO 8601).")] = None,
) -> None:
    """Send the alert of every breaking article with priority >= alert_priority to the subscribers who
    opted in and may get it now (quiet hours, alerts_per_day); never twice. The service does this every
    alerts_interval."""
    from digest.app.alerts import send_alerts
    from digest.compose.dkim import signer_from_settings

    st = state(ctx)
    setup_logging(st)
    _, cfg = st.settings.digest(st.settings.alerts_digest)
    clock = parse_at(at, cfg.timezone) if at is not None else st.clock
    run = send_alerts(st.engine, st.settings, clock, signer=signer_from_settings(st.settings))
    if not run.articles:
        out.print(f"alerts: no breaking article with priority >= {st.settings.alert_priority} to alert about")
        return
    for article_id, title in run.articles:
        out.print(f"alert for article {article_id}: {escape(title)}")
    report = run.send
    sent, failed = (report.sent, report.failed) if report else (0, 0)
    out.print(f"alerts: {run.built} new, queued {run.queued}, sent {sent}, failed {failed}")
    if report is not None and report.failed_permanent:
        raise typer.Exit(1)
