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
    from digest.app.send import DigestSendReport
    from digest.compose.dkim import DkimSigner
    from digest.outbox.warmup import WarmupUse


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
    from digest.edition.build import get_or_build_edition
    from digest.store.models import saved_id

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
                also_served=also_served,
            )
        except DeliveryError as exc:
            stopped = exc
    if stopped is not None:
        # Every server paused: what was sent is recorded, the rest waits for a retry.
        edition, _, _ = get_or_build_edition(engine, st.settings, name, clock.now())  # built already: found
        stop_for_retry(st, str(stopped), saved_id(edition), f"{name}:{edition.slot}")
    _print_sent(st, name, report, also_served)


def _print_sent(st: State, name: str, report: DigestSendReport, also_served: bool) -> None:
    """What a real send did, in one summary; then the next step when something waits or failed."""
    _print_left_out(report.drops, report.cut)
    if report.empty:
        out.print(f"{name} {report.slot}: no new articles; nothing sent (set send_empty to send anyway)")
        return
    served = _served_note(report.served_today, also_served)
    waiting = report.warmup.waiting if report.warmup else 0
    if report.queued == 0 and report.already_sent and not report.served_today and not waiting:
        out.print(f"{name} {report.slot}: already sent to all {report.already_sent} subscriber(s); nothing to send")
        _print_warmup(report.warmup)
        return
    skipped = report.skipped + report.already_sent + (0 if also_served else report.served_today)
    out.print(
        f"{name} {report.slot}: sent {report.sent}, failed {report.failed} "
        f"({report.failed_temporary} will be retried), skipped {skipped} "
        f"({report.already_sent} already sent, {report.skipped} with nothing new in their topics{served})"
    )
    _print_warmup(report.warmup)
    if report.held:
        out.print(
            f"{report.held} held back while their mailbox provider rests (no attempt counted; "
            "they go out when its pause ends)"
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


def _print_warmup(use: WarmupUse | None, *, would: bool = False) -> None:
    """Where today stands in the warm-up schedule, and how many wait for a later day; nothing without a cap."""
    if use is None:
        return
    wait = "would wait" if would else "wait"
    rest = f"{use.waiting:,} {wait} for a later day" if use.waiting else "nobody waits"
    out.print(
        f"warm-up day {use.day} of {use.days}: {use.used:,} of today's cap of {use.cap:,} "
        f"{'would be ' if would else ''}used; {rest}",
        highlight=False,
    )


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
    from digest.store.subscriber_check import normalise_email
    from digest.transport.smtp import MemoryTransport, smtp_from_settings

    transport: Any = MemoryTransport()
    if to is not None and not dry_run:
        normalise_email(to, "--to")
        transport = smtp_from_settings(st.settings)
    _, cfg = st.settings.digest(name)
    with session_scope(st.engine) as session:
        plan = None if to is not None else send_plan(session, st.settings, name, clock.now(), also_served=also_served)
        emails = plan.emails if plan is not None else [to or ""]
        try:
            res = send_test(session, st.settings, name, emails, transport, clock, signer=signer)
        except TemporaryFailure as exc:
            if not exc.connection_level:
                raise
            # Not the recipient's fault: the server of smtp_url could not be used.
            source = st.source("smtp_url")
            raise SmtpUnavailableError(f"smtp_url (in {source}): {exc}; test copy not sent, try again later") from exc
    transport.close()
    for w in res.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False, soft_wrap=True)
    _print_left_out(res.drops, res.cut)
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
    _print_warmup(plan.warmup, would=True)


def _print_left_out(drops: Sequence[Any], cut: Sequence[Any]) -> None:
    """Stories the edition left out, each named with its reason: none is dropped silently."""
    if drops:
        out.print(f"{len(drops)} duplicate(s) left out:", highlight=False)
        for drop in drops:
            out.print(f"  {escape(drop.describe())}", highlight=False, soft_wrap=True)
    if cut:
        out.print(f"{len(cut)} more article(s) left out: the edition is full (max_articles)", highlight=False)
        for story in cut:
            out.print(f"  {escape(story.describe())}", highlight=False, soft_wrap=True)


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
    for story in result.cut:
        err.print(f"{escape(story.describe())}", highlight=False, soft_wrap=True)
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
