"""``digest send`` and ``digest preview``: an edition to every subscriber, one test address, or a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from digest.cli.base import ProgressOnDemand, State, app, err, out, parse_at, setup_logging, state
from digest.core.clock import Clock
from digest.core.errors import InputError

if TYPE_CHECKING:
    from digest.compose.dkim import DkimSigner


@app.command()
def send(
    ctx: typer.Context,
    digest: Annotated[str | None, typer.Argument(help="Digest name (default: the first configured).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render everything, send and record nothing.")] = False,
    to: Annotated[str | None, typer.Option("--to", help="Send one test copy to this address; record nothing.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Pretend it is this time (ISO 8601).")] = None,
) -> None:
    """Build (or find) the current edition and deliver it to every active subscriber."""
    from digest.app.send import send_digest
    from digest.compose.dkim import signer_from_settings

    st = state(ctx)
    setup_logging(st)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    signer = signer_from_settings(st.settings)
    if dry_run or to:
        _send_copies(st, name, clock, signer, to, dry_run)
        return
    # None: the delivery engine's pool ([delivery] servers, connections, processes).
    with ProgressOnDemand("sending") as bar:  # no bar (never "0/0") when there is nothing to send
        report = send_digest(
            st.engine,
            st.settings,
            name,
            None,
            clock,
            progress=bar.advance,
            on_total=bar.total,
            signer=signer,
        )
    if report.empty:
        out.print(f"{name} {report.slot}: no new articles; nothing sent (set send_empty to send anyway)")
        return
    if report.queued == 0 and report.already_sent:
        out.print(f"{name} {report.slot}: already sent to all {report.already_sent} subscriber(s); nothing to send")
        return
    out.print(
        f"{name} {report.slot}: sent {report.sent}, failed {report.failed} "
        f"({report.failed_temporary} will be retried), skipped {report.skipped + report.already_sent} "
        f"({report.already_sent} already sent)"
    )
    if report.pending_after:
        out.print(
            f"{report.pending_after} still pending (retries not yet due, or held by another sender): "
            "digest deliveries --status pending"
        )
    if report.failed_permanent:
        raise typer.Exit(1)


def _send_copies(st: State, name: str, clock: Clock, signer: DkimSigner | None, to: str | None, dry_run: bool) -> None:
    """``--dry-run`` (everyone, into memory) or ``--to`` (one test copy over SMTP): nothing is recorded."""
    from digest.app.send import send_test
    from digest.store.db import session_scope
    from digest.store.subscribers import normalise_email
    from digest.transport.smtp import MemoryTransport, smtp_from_settings

    transport: Any = MemoryTransport()
    if to and not dry_run:
        normalise_email(to, "--to")
        transport = smtp_from_settings(st.settings)
    with session_scope(st.engine) as session:
        emails = [to] if to else [s.email for s in _active(session)]
        res = send_test(session, st.settings, name, emails, transport, clock, signer=signer)
    transport.close()
    verb = "would send" if dry_run else "sent test copy to"
    out.print(f"{name} {res.slot}: {verb} {res.sent} message(s) ({res.variants} variant(s), {res.skipped} skipped)")
    for w in res.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)


def _active(session: Any) -> list[Any]:
    from digest.store.models import SubscriberStatus
    from digest.store.subscribers import list_subscribers

    return list(list_subscribers(session, SubscriberStatus.ACTIVE))


@app.command()
def preview(
    ctx: typer.Context,
    digest: Annotated[str | None, typer.Argument(help="Digest name (default: the first configured).")] = None,
    subscriber: Annotated[str | None, typer.Option("--subscriber", help="Preview this subscriber's copy.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, text or eml.")] = "html",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Preview the edition due at this time (ISO 8601).")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the result in a browser.")] = False,
) -> None:
    """Show exactly what a subscriber would receive; records nothing."""
    from digest.app.send import preview_message
    from digest.store.db import session_scope

    if fmt not in ("html", "text", "eml"):
        raise InputError("--format", f"must be html, text or eml, not {fmt!r}")
    st = state(ctx)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    with session_scope(st.engine) as session:
        result = preview_message(session, st.settings, name, clock, subscriber)
    payload = {"eml": result.data, "html": result.html.encode(), "text": result.text.encode()}[fmt]
    for w in result.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)
    if output is None and open_:
        output = Path("var") / f"preview-{name}.{'txt' if fmt == 'text' else fmt}"
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(payload)
        err.print(f"wrote {output}")
        if open_:
            import webbrowser

            webbrowser.open(output.resolve().as_uri())
    else:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
