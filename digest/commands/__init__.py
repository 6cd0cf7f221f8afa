"""Command groups beyond the pipeline's own (service, delivery engine, web).

Every module in this package registers its commands on ``digest.cli.app`` when
imported; ``digest.cli`` imports them all, so adding a module adds its commands.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every command module of this package."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
