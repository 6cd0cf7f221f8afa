"""The ``digest`` command: a thin shell over the library.

Each command parses its input, wires dependencies (settings, engine, transport,
clock) and calls one library function. Errors derived from DigestError become a
one-line message and an exit code here, in ``main``, and nowhere else.
"""

from __future__ import annotations

import sys
import traceback

import typer
from rich.markup import escape

from digest.cli.base import app, current_state, debug_requested, err
from digest.core.errors import DigestError

# Each command module registers its commands and groups on ``app`` when imported:
# listed here, not discovered, so what the CLI offers is read in one place. The
# import order is the order of ``digest --help``.
# isort: off
from digest.cli import (  # noqa: F401
    articles,
    subscribers,
    db,
    send,
    alerts,
    tools,
    delivery,
    service,
    web,
    suppressions,
    doctor,
    apikeys,
    webhooks,
)
# isort: on

# EX_SOFTWARE of sysexits.h: a fault of digest itself, not of its input or settings.
EX_SOFTWARE = 70


def main() -> None:
    """Console entry point: DigestError becomes a one-line message and its exit code."""
    try:
        # Outside standalone mode click returns (not raises) the code of typer.Exit.
        rc = app(standalone_mode=False)
    except DigestError as exc:
        _fail(exc)
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
        _fail(_translate(exc))
    sys.exit(rc if isinstance(rc, int) else 0)


def _translate(exc: Exception) -> DigestError | Exception:
    """A database failure becomes the DigestError naming ``database_url``; anything else stays as it is."""
    from sqlalchemy.exc import SQLAlchemyError

    st = current_state()
    # Settings not loaded (not in the cached_property's slot): no database was opened either.
    if isinstance(exc, SQLAlchemyError) and st is not None and "settings" in st.__dict__:
        from digest.store.db import database_error

        return database_error(exc, st.settings.database_url, st.source("database_url"))
    return exc


def _fail(exc: BaseException) -> None:
    """Report ``exc`` in one line (its traceback first with --debug) and exit with its code."""
    from digest.core.logs import mask_emails, mask_url

    if debug_requested():
        traceback.print_exception(exc)
    if isinstance(exc, DigestError):
        line, code = str(exc), exc.exit_code
    else:
        # A fault of digest itself: its message may quote data, so secrets and addresses are masked.
        first = (str(exc).strip().splitlines() or [""])[0]
        hint = "" if debug_requested() else "; rerun with --debug for the traceback"
        line, code = f"unexpected {type(exc).__name__}: {mask_emails(mask_url(first))}{hint}", EX_SOFTWARE
    err.print(f"[red]error[/red]: {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
