"""The ``digest`` command: a thin shell over the library.

Each command parses its input, wires dependencies (settings, engine, transport,
clock) and calls one library function. Errors derived from DigestError become a
one-line message and an exit code here, in ``main``, and nowhere else.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from digest.cli.base import app, err
from digest.core.errors import DigestError

# Each command module registers its commands and groups on ``app`` when imported:
# listed here, not discovered, so what the CLI offers is read in one place. The
# import order is the order of ``digest --help``.
# isort: off
from digest.cli import articles, subscribers, db, send, tools, delivery, service, web, doctor  # noqa: F401
# isort: on


def main() -> None:
    """Console entry point: DigestError becomes a one-line message and its exit code."""
    try:
        # Outside standalone mode click returns (not raises) the code of typer.Exit.
        rc = app(standalone_mode=False)
    except DigestError as exc:
        err.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        # Newer typer vendors click: its usage errors derive from typer.TyperException.
        if isinstance(exc, click.ClickException | typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
