"""Loads what the sender needs per edition: its variants, built from the store on first use."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from digest.compose.inline import inline_css
from digest.compose.render import make_environment
from digest.compose.variants import Variants
from digest.core.settings import Settings
from digest.edition.build import edition_content
from digest.store.models import EditionKind

log = logging.getLogger(__name__)


def edition_variants(
    engine: Engine,
    settings: Settings,
    inline: Callable[[str], str] = inline_css,
    known: dict[int, Variants] | None = None,
) -> Callable[[int], Variants | None]:
    """``variants_for(edition_id)``: each edition's Variants, built from the store on first use.

    Each edition is rendered with its series' configuration, as when it was first
    sent (a local-time edition's date is in the series' zone). None for an edition
    whose digest is no longer configured (its deliveries stay queued).
    """
    cache: dict[int, Variants | None] = dict(known or {})
    env = make_environment(settings.templates_dir)

    def variants_for(edition_id: int) -> Variants | None:
        if edition_id not in cache:
            found = edition_content(engine, settings, edition_id)
            if found is None:
                log.error("edition %s: its digest is not configured; its deliveries wait", edition_id)
                cache[edition_id] = None
                return None
            edition, cfg, content = found
            # An alert has no archive page: its "view in browser" is the story.
            browser = content.ranked[0].link if edition.kind == EditionKind.ALERT and content.ranked else None
            cache[edition_id] = Variants(
                settings, edition.digest, cfg, edition.slot, edition.built_at, content, env, inline, browser
            )
        return cache[edition_id]

    return variants_for
