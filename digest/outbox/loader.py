"""Loads what the sender needs per edition: its variants, built from the store on first use."""

from __future__ import annotations

import logging
from collections.abc import Callable

import jinja2
from sqlalchemy.engine import Engine

from digest.compose.inline import inline_css
from digest.compose.render import make_environment
from digest.compose.variants import Variants
from digest.core.settings import Settings
from digest.edition.build import edition_content
from digest.store.models import EditionKind

log = logging.getLogger(__name__)


class EditionVariants:
    """``variants_for(edition_id)``: each edition's Variants, built from the store on first use.

    Each edition is rendered with its series' configuration, as when it was first
    sent (a local-time edition's date is in the series' zone). None for an edition
    whose digest is no longer configured (its deliveries stay queued). ``known``:
    variants the caller already holds; :attr:`prepared` is every edition's so far,
    with the content variants rendered for the subscribers met so far.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        inline: Callable[[str], str] = inline_css,
        known: dict[int, Variants] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.inline = inline
        self.prepared: dict[int, Variants | None] = dict(known or {})
        self._env: jinja2.Environment | None = None

    def __call__(self, edition_id: int) -> Variants | None:
        if edition_id not in self.prepared:
            self.prepared[edition_id] = self._load(edition_id)
        return self.prepared[edition_id]

    def _load(self, edition_id: int) -> Variants | None:
        found = edition_content(self.engine, self.settings, edition_id)
        if found is None:
            log.error("edition %s: its digest is not configured; its deliveries wait", edition_id)
            return None
        edition, cfg, content = found
        if self._env is None:
            self._env = make_environment(self.settings.templates_dir)
        # An alert has no archive page: its "view in browser" is the story.
        browser = content.ranked[0].link if edition.kind == EditionKind.ALERT and content.ranked else None
        return Variants(
            self.settings, edition.digest, cfg, edition.slot, edition.built_at, content, self._env, self.inline, browser
        )
