"""The command-line shell: ``digest`` (typer). Commands live in the modules of this package."""

from __future__ import annotations


def main() -> None:
    """Console entry point (``digest``)."""
    from digest.cli.main import main as run

    run()
