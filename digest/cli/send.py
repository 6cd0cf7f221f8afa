"""``digest send`` and ``digest preview``: an edition to every subscriber, one test address, or a file."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from digest.cli.base import ProgressOnDemand, State, app, err, out, parse_at, setup_logging, state
from digest.core.clock import Clock
from digest.core.errors import DeliveryError, InputError, SmtpUnavailableError, TemporaryFailure

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
    from digest.edition.build import get_or_build_edition
    from digest.store.models import saved_id

    st = state(ctx)
    setup_logging(st)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    signer = signer_from_settings(st.settings)
    if dry_run or to:
        _send_copies(st, name, clock, signer, to, dry_run)
        return
    engine = st.engine  # before the bar: a store that cannot be opened is one line, not a bar and a line
    # None: the delivery engine's pool ([delivery] servers, connections, processes).
    stopped: DeliveryError | None = None
    with ProgressOnDemand("sending") as bar:  # no bar (never "0/0") when there is nothing to send
        try:
            report = send_digest(
                engine,
                st.settings,
                name,
                None,
                clock,
                progress=bar.advance,
                on_total=bar.total,
                signer=signer,
            )
        except DeliveryError as exc:
            stopped = exc
    if stopped is not None:
        # Every server paused: what was sent is recorded, the rest waits for a retry.
        edition, _, _ = get_or_build_edition(engine, st.settings, name, clock.now())  # built already: found
        stop_for_retry(st, str(stopped), saved_id(edition), f"{name}:{edition.slot}")
    _print_left_out(report.drops, report.over_limit)
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
    if report.server_error and report.edition_id is not None:
        stop_for_retry(st, report.server_error, report.edition_id, f"{name}:{report.slot}")
    if report.failed_permanent:
        raise typer.Exit(1)


def stop_for_retry(st: State, problem: str, edition_id: int, ref: str) -> NoReturn:
    """The SMTP server failed: one line naming its setting, what waits for a retry and what to do; exit 75."""
    from digest.core.logs import mask_url
    from digest.outbox.ledger import next_retry

    key = "delivery.servers" if st.settings.delivery.servers else "smtp_url"
    waiting, first = next_retry(st.engine, edition_id)
    when = ""
    if first is not None:
        when = f"the service retries at {first:%Y-%m-%d %H:%M} UTC, or "
    step = f"{waiting} queued for retry: {when}run digest resend {ref}" if waiting else f"run digest resend {ref}"
    raise SmtpUnavailableError(f"{key} (in {st.source(key)}): {mask_url(problem)}; {step}")


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
        try:
            res = send_test(session, st.settings, name, emails, transport, clock, signer=signer)
        except TemporaryFailure as exc:
            if not exc.connection_level:
                raise
            # Not the recipient's fault: the server of smtp_url could not be used.
            source = st.source("smtp_url")
            raise SmtpUnavailableError(f"smtp_url (in {source}): {exc}; test copy not sent, try again later") from exc
    transport.close()
    verb = "would send" if dry_run else "sent test copy to"
    out.print(f"{name} {res.slot}: {verb} {res.sent} message(s) ({res.variants} variant(s), {res.skipped} skipped)")
    _print_left_out(res.drops, res.over_limit)
    for w in res.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)


def _print_left_out(drops: Sequence[Any], over_limit: int) -> None:
    """Stories the edition left out, each with its reason: none is dropped silently."""
    if drops:
        out.print(f"{len(drops)} duplicate(s) left out:", highlight=False)
        for drop in drops:
            out.print(f"  {escape(drop.describe())}", highlight=False, soft_wrap=True)
    if over_limit:
        out.print(f"{over_limit} more article(s) left out: the edition is full (max_articles)", highlight=False)


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
    st = state(ctx, reads_only=True)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    with session_scope(st.engine) as session:
        result = preview_message(session, st.settings, name, clock, subscriber)
    payload = {"eml": result.data, "html": result.html.encode(), "text": result.text.encode()}[fmt]
    for drop in result.drops:
        err.print(f"left out: {escape(drop.describe())}", highlight=False, soft_wrap=True)
    if result.over_limit:
        err.print(f"left out: {result.over_limit} more article(s), the edition is full (max_articles)", highlight=False)
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
