"""Tools to try digest locally: ``digest demo`` and ``digest sink``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import app, out, state


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo database and mail go.")] = Path("var"),
) -> None:
    """Run one real send on a fresh SQLite database into a local SMTP sink."""
    from digest.app.demo import run_demo

    summary = run_demo(directory, state(ctx).clock)
    out.print(summary.describe(), soft_wrap=True, highlight=False)


@app.command()
def sink(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 1025,
    directory: Annotated[Path, typer.Option("--dir", help="Save received mail here as .eml files.")] = Path("var/mail"),
) -> None:
    """Run a local SMTP server that saves what it receives (for previews and tests)."""
    import time

    from digest.transport.sink import SmtpSink

    with SmtpSink(port=port, directory=directory) as s:
        out.print(f"SMTP sink on {s.url}, saving to {directory}/ (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
