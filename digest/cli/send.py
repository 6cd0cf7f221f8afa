"""``digest send`` and ``digest preview``: an edition to every subscriber, one test address, or a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from digest.cli.base import State, app, err, out, parse_at, progress_bar, setup_logging, state
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
    force_future: Annotated[
        bool, typer.Option("--force-future", help="Send even though --at is in the future (builds that edition now).")
    ] = False,
    also_served: Annotated[
        bool,
        typer.Option("--also-served", help="Also send to subscribers another edition already served today."),
    ] = False,
) -> None:
    """Build (or find) the current edition and deliver it to every active subscriber.

    Subscribers who already got an edition of this digest today (their local day,
    e.g. from the service's local-time editions) are skipped and counted, unless
    ``--also-served``. ``--at`` in the future only previews: use it with ``--dry-run``
    or ``--to`` (or ``--force-future`` to really send that edition now).
    """
    from digest.app.send import send_digest
    from digest.compose.dkim import signer_from_settings

    st = state(ctx)
    setup_logging(st)
    name, cfg = st.settings.digest(digest)
    if to is not None and not to.strip():
        # An unset shell variable ($TEST_ADDR) must not turn a test send into a real one.
        raise InputError("--to", "is empty; give the address for the test copy (nothing was sent)")
    clock = parse_at(at, cfg.timezone)
    if at is not None and not (dry_run or to or force_future) and clock.now() > st.clock.now():
        raise InputError(
            "--at",
            f"{at} is in the future; nothing was sent. See that edition with --dry-run, --to ADDRESS "
            "or digest preview --at; --force-future sends it now",
        )
    signer = signer_from_settings(st.settings)
    if dry_run or to is not None:
        _send_copies(st, name, clock, signer, to, dry_run, also_served)
        return
    # None: the delivery engine's pool ([delivery] servers, connections, processes).
    with progress_bar() as bar:
        task = bar.add_task("send", total=None)
        report = send_digest(
            st.engine,
            st.settings,
            name,
            None,
            clock,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n),
            signer=signer,
            also_served=also_served,
        )
    if report.empty:
        out.print(f"{name} {report.slot}: no new articles; nothing sent (set send_empty to send anyway)")
        return
    served = _served_note(report.served_today, also_served)
    if report.queued == 0 and report.already_sent and not report.served_today:
        out.print(f"{name} {report.slot}: already sent to all {report.already_sent} subscriber(s); nothing to send")
        return
    skipped = report.skipped + report.already_sent + (0 if also_served else report.served_today)
    out.print(
        f"{name} {report.slot}: sent {report.sent}, failed {report.failed} "
        f"({report.failed_temporary} will be retried), skipped {skipped} "
        f"({report.already_sent} already sent, {report.skipped} with nothing new in their topics{served})"
    )
    if report.pending_after:
        out.print(
            f"{report.pending_after} still pending (retries not yet due, or held by another sender): "
            "digest deliveries --status pending"
        )
    if report.failed_permanent:
        raise typer.Exit(1)


def _served_note(served: int, also_served: bool) -> str:
    """The part of a send's summary about subscribers another edition already served today."""
    if not served:
        return ""
    if also_served:
        return f"; sent to {served} already served today, as --also-served asks"
    return f", {served} already served today by another edition: --also-served sends to them too"


def _send_copies(
    st: State, name: str, clock: Clock, signer: DkimSigner | None, to: str | None, dry_run: bool, also_served: bool
) -> None:
    """``--dry-run`` (whom ``send`` would reach, into memory) or ``--to`` (one test copy over SMTP).

    Nothing is recorded either way.
    """
    from digest.app.send import send_plan, send_test
    from digest.store.db import session_scope
    from digest.store.subscribers import normalise_email
    from digest.transport.smtp import MemoryTransport, smtp_from_settings

    transport: Any = MemoryTransport()
    if to is not None and not dry_run:
        normalise_email(to, "--to")
        transport = smtp_from_settings(st.settings)
    _, cfg = st.settings.digest(name)
    with session_scope(st.engine) as session:
        plan = None if to is not None else send_plan(session, st.settings, name, clock.now(), also_served=also_served)
        emails = plan.emails if plan is not None else [to or ""]
        res = send_test(session, st.settings, name, emails, transport, clock, signer=signer)
    transport.close()
    for w in res.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False, soft_wrap=True)
    if plan is None:
        out.print(
            f"{name} {res.slot}: {'would send' if dry_run else 'sent'} test copy to {res.sent} message(s) "
            f"({res.variants} variant(s), {res.skipped} skipped)"
        )
        return
    if plan.empty or (not res.articles and not cfg.send_empty):
        out.print(f"{name} {res.slot}: no new articles; would send nothing (set send_empty to send anyway)")
        return
    skipped = res.skipped + plan.already_sent + (0 if also_served else plan.served_today)
    out.print(
        f"{name} {res.slot}: would send {res.sent} message(s) ({res.variants} variant(s)), skipped {skipped} "
        f"({plan.already_sent} already sent, {res.skipped} with nothing new in their topics"
        f"{_served_note(plan.served_today, also_served)})"
    )


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
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False, soft_wrap=True)
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
