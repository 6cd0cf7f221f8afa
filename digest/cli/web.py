"""Commands of the subscriber lifecycle: ``digest web``, ``digest inbound``, ``digest dkim keygen``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import app, err, out, setup_logging, state
from digest.core.errors import InputError

dkim_app = typer.Typer(help="DKIM keys.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")

# sysexits.h EX_TEMPFAIL: an MTA keeps the message and retries the pipe later.
EX_TEMPFAIL = 75


@app.command()
def web(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default [web] host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default [web] port).")] = None,
) -> None:
    """Run the subscriber web app (subscribe, confirm, preferences, unsubscribe, archive)."""
    from digest.web import address_warning, check_secret_key, listen, make_app, serve_forever

    st = state(ctx)
    check_secret_key(st.settings)  # before the database is touched
    setup_logging(st)
    given = "the --port option" if port is not None else "the --host option" if host is not None else None
    # Bound before the app starts (its mailer thread) and is announced: a busy port is
    # one line, not "web app on" followed by uvicorn's log.
    sock = listen(st.settings, host, port, given or st.source("web.port"))
    application = make_app(st.settings, st.engine, st.clock)
    where = f"{host or st.settings.web.host}:{port or st.settings.web.port}"
    # base_url is the address to open: the one every link in every email uses.
    err.print(f"web app: open {st.settings.base_url} (listening on {where}); Ctrl-C to stop", markup=False)
    warning = address_warning(st.settings, host, port)
    if warning:
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}", highlight=False, soft_wrap=True)
    serve_forever(application, st.settings, host, port, sock)


@app.command()
def inbound(
    ctx: typer.Context,
    mbox: Annotated[Path | None, typer.Option("--mbox", help="Process every message of this mbox file.")] = None,
    maildir: Annotated[Path | None, typer.Option("--maildir", help="Process every message of this Maildir.")] = None,
    recipient: Annotated[
        str | None,
        typer.Option(
            "--recipient",
            envvar="ORIGINAL_RECIPIENT",
            help="Envelope recipient of the piped message (Postfix sets ORIGINAL_RECIPIENT); default: its headers.",
        ),
    ] = None,
) -> None:
    """Process inbound mail: unsubscribe replies, complaints (feedback reports) and bounces.

    Reads one message from stdin by default.

    Every message gets one result line; a malformed one is skipped (exit 0, so an
    MTA does not bounce it back to a possibly forged sender). Exit 75 (EX_TEMPFAIL)
    when the database is unreachable: the MTA keeps the message and retries.
    """
    from sqlalchemy.exc import InterfaceError, OperationalError

    from digest.app.inbound import InboundKind, process_message, read_mailbox
    from digest.core.errors import ConfigError, StoreUnavailable, StoreUnavailableError

    if mbox is not None and maildir is not None:
        raise InputError("--mbox/--maildir", "give one of them, not both")
    st = state(ctx)
    setup_logging(st)
    if mbox is None and maildir is None:
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise InputError("stdin", "no message")
        messages = iter([data])
    else:
        recipient = None  # one envelope recipient cannot stand for a whole mailbox
        messages = read_mailbox(mbox, maildir)
    counts = {k: 0 for k in InboundKind}
    try:
        try:
            engine = st.engine
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(type(exc.orig).__name__) from exc
        except (StoreUnavailableError, ConfigError) as exc:
            # Even a wrong database_url is worth a retry here: the MTA keeps the message until it is fixed.
            if isinstance(exc, ConfigError) and exc.key != "database_url":
                raise
            err.print(f"[red]error[/red]: database unavailable: {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EX_TEMPFAIL) from None
        for data in messages:
            result = process_message(engine, st.settings, st.clock, data, recipient)
            counts[result.kind] += 1
            out.print(f"{result.kind.value}: {escape(result.describe())}", highlight=False, soft_wrap=True)
    except StoreUnavailable as exc:
        # The store is unreachable: ask the MTA to keep the message and try again.
        err.print(
            f"[red]error[/red]: database unavailable ({escape(str(exc))}); try again later",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EX_TEMPFAIL) from None
    if mbox is not None or maildir is not None:
        out.print(
            f"processed {sum(counts.values())} message(s): {counts[InboundKind.UNSUBSCRIBE]} unsubscribe, "
            f"{counts[InboundKind.COMPLAINT]} complaint, {counts[InboundKind.BOUNCE]} bounce, "
            f"{counts[InboundKind.IGNORED]} ignored, {counts[InboundKind.MALFORMED]} malformed",
            soft_wrap=True,
        )


@dkim_app.command("keygen")
def dkim_keygen(
    ctx: typer.Context,
    selector: Annotated[
        str | None, typer.Option(help="Selector (default [dkim] selector); for ed25519 [dkim] ed25519_selector.")
    ] = None,
    domain: Annotated[
        str | None, typer.Option(help="Signing domain (default [dkim] domain, else the From domain).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Private key file (default [dkim] private_key_file); for ed25519 [dkim] ed25519_private_key_file.",
        ),
    ] = None,
    algorithm: Annotated[
        str, typer.Option(help="rsa, or ed25519 for the second key of dual signing (RFC 8463).")
    ] = "rsa",
    bits: Annotated[int, typer.Option(help="RSA key size (ignored for ed25519).")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")] = False,
) -> None:
    """Write a new DKIM key pair (PEM) and print the DNS TXT record to publish."""
    import os

    from digest.compose.dkim import dns_record, generate_key
    from digest.compose.message import address_domain

    st = state(ctx)
    cfg = st.settings.dkim
    if algorithm not in ("rsa", "ed25519"):
        raise InputError("--algorithm", "use rsa or ed25519")
    ed = algorithm == "ed25519"
    selector = selector or (cfg.ed25519_selector if ed else cfg.selector)
    domain = domain or cfg.domain or address_domain(st.settings.from_addr)
    key_setting = cfg.ed25519_private_key_file if ed else cfg.private_key_file
    path = output or (Path(key_setting) if key_setting else None)
    if not selector:
        setting, example = ("ed25519_selector", "digest2026e") if ed else ("selector", "digest2026")
        raise InputError("--selector", f"give a selector (or set [dkim] {setting}), e.g. {example}")
    if path is None:
        path = Path("config/dkim") / f"{selector}.private.pem"
    if not ed and bits not in (2048, 3072, 4096):
        raise InputError("--bits", "use 2048, 3072 or 4096")
    name = path.name
    public_path = path.with_name(
        name.replace(".private.pem", ".public.pem") if name.endswith(".private.pem") else name + ".pub"
    )
    if path.exists() and not force:
        raise InputError(str(path), "exists already (use --force to replace it; published keys then stop verifying)")
    key = generate_key(bits, algorithm)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created owner-only from the start: the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_pem)
    public_path.write_bytes(key.public_pem)
    err.print(f"wrote {path} (private, mode 600) and {public_path}")
    settings_named = "ed25519_selector and ed25519_private_key_file" if ed else "selector, domain and private_key_file"
    err.print(f"publish this DNS record, then set [dkim] {settings_named}:", markup=False)
    out.print(dns_record(selector, domain, key.txt_value()), highlight=False, soft_wrap=True)
