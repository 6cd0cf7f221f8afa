"""``digest doctor``: check the sending setup (SPF, DKIM, DMARC, rDNS, one-click unsubscribe, secret, TLS)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import app, out, state
from digest.core.errors import InputError

# Distinct from the error codes of digest.core.errors: the setup was checked and something failed.
EXIT_CHECK_FAILED = 9
_MARK = {"pass": "[green]pass[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}


@app.command()
def doctor(
    ctx: typer.Context,
    sending_ip: Annotated[
        str | None, typer.Option("--sending-ip", help="IP address receivers see (default: the SMTP relay host's).")
    ] = None,
    nameserver: Annotated[
        str | None, typer.Option("--nameserver", help="Ask this DNS server (IP address) instead of the system's.")
    ] = None,
    dns_port: Annotated[int, typer.Option("--dns-port", help="Port of --nameserver.")] = 53,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check line.")] = False,
) -> None:
    """Check the sending setup and print pass/warn/fail with the fix of each; exit 9 if any check fails."""
    import ipaddress

    from digest.app.doctor import failed, make_resolver, run_doctor

    for option, value in (("--sending-ip", sending_ip), ("--nameserver", nameserver)):
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise InputError(option, f"not an IP address: {value!r}") from None
    settings = state(ctx).settings
    checks = run_doctor(settings, make_resolver(nameserver, dns_port), sending_ip)
    for check in checks:
        if as_json:
            out.print(json.dumps(check.as_dict()), markup=False, highlight=False, soft_wrap=True)
            continue
        out.print(f"{_MARK[check.status]}  {check.name:<17} {escape(check.detail)}", highlight=False, soft_wrap=True)
        if check.status != "pass" and check.fix:
            out.print(f"      {'':<17} fix: {escape(check.fix)}", highlight=False, soft_wrap=True)
    if failed(checks):
        raise typer.Exit(EXIT_CHECK_FAILED)
