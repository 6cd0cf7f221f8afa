"""Content variants of an edition: rendered, inlined and made into MIME once each.

Subscribers with the same topics (and the same choice about breaking stories outside
them) and the same language share a variant: one render per (topics, locale), a
million subscribers share a handful. Per recipient only the personal fields are
filled in (compose/message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2

from digest.compose.inline import inline_css
from digest.compose.message import PreparedMessage, address_domain, feedback_id
from digest.compose.render import (
    Markers,
    Rendered,
    build_context,
    for_locale,
    greetings,
    make_environment,
    render_variant,
)
from digest.core.settings import DigestConfig, Settings
from digest.edition.select import DigestView, EditionContent, edition_date


@dataclass
class Variants:
    """Prepared messages of one edition, one per content variant, built on first use."""

    settings: Settings
    name: str
    cfg: DigestConfig
    slot: str
    when: datetime
    content: EditionContent
    env: jinja2.Environment
    inline: Callable[[str], str] = inline_css
    # "View in browser" of a message with no archive page (an alert: the story itself).
    browser_url: str | None = None
    _cache: dict[tuple[tuple[str, ...], str], PreparedMessage | None] = field(default_factory=dict)
    _keys: dict[tuple[tuple[str, ...], bool], tuple[str, ...]] = field(default_factory=dict)

    def for_topics(
        self, topics: Iterable[str], breaking: bool = True, locale: str | None = None
    ) -> PreparedMessage | None:
        """The prepared message for subscribers with ``topics`` reading ``locale``; None when it would be empty.

        ``breaking=False``: the subscriber opted out of breaking stories outside their topics.
        ``locale`` (a BCP 47 tag): the subscriber's language; None: the digest's ``language``.
        """
        asked = (tuple(topics), breaking)
        key = self._keys.get(asked)
        if key is None:  # a million subscribers share a handful of topic lists
            key = self._keys[asked] = self.content.variant_key(*asked)
        variant = (key, locale or self.cfg.language)
        if variant not in self._cache:
            self._cache[variant] = self._prepare(*variant)
        return self._cache[variant]

    def __getstate__(self) -> dict[str, Any]:
        # Sender processes get the prepared messages (rendering and inlining them is
        # ~0.6 s of CPU each process would repeat), not the Jinja2 environment, which
        # does not pickle: one of their own renders a variant they meet first.
        return {**self.__dict__, "env": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.env is None:
            self.env = make_environment(self.settings.templates_dir)

    def _prepare(self, key: tuple[str, ...], locale: str) -> PreparedMessage | None:
        view = self.content.view(key)
        if view.is_empty and not self.cfg.send_empty:
            return None
        markers = Markers.new()
        env = for_locale(self.env, locale)
        context = self._context(view, markers, locale)
        rendered = render_variant(env, self.cfg.template, self.cfg.subject, context, markers)
        return prepared_message(
            self.settings, self.name, self.cfg, rendered, self.inline,
            digest=self.name, slot=self.slot, reply_to=self.cfg.reply_to,
        )  # fmt: skip

    def _context(self, view: DigestView, markers: Markers, locale: str) -> dict[str, Any]:
        context = build_context(
            digest_name=self.name,
            digest_title=self.cfg.title,
            edition_date=edition_date(self.cfg, self.when),
            slot=self.slot,
            view=view,
            base_url=self.settings.base_url,
            postal_address=self.settings.postal_address,
            markers=markers,
            language=locale,
            lead_in_count=self.cfg.lead_ins,
        )
        if self.browser_url:
            context["edition"]["archive_url"] = self.browser_url
        return context

    def web_copy(self) -> str:
        """The public "view in browser" page of the full edition: inlined HTML with no personal data.

        In the digest's language; it links the digest's Atom and JSON feeds.
        """
        markers = Markers.new()
        context = self._context(self.content.view(()), markers, self.cfg.language)
        context["web_copy"] = True  # templates hide the personal footer and "View in browser"
        env = for_locale(self.env, self.cfg.language)
        rendered = render_variant(env, self.cfg.template, self.cfg.subject, context, markers)
        html = self.inline(rendered.html)
        # Templates that ignore web_copy still get neutral values, never a reader's.
        base = self.settings.base_url
        neutral = {"greeting": greetings(env)[1], "name": "", "email": "you", "unsubscribe_url": f"{base}/",
                   "preferences_url": f"{base}/"}  # fmt: skip
        for name, value in neutral.items():
            html = html.replace(markers.marker(name), value)
        return html

    @property
    def prepared_count(self) -> int:
        return len(self._cache)


def prepared_message(
    settings: Settings,
    name: str,
    cfg: DigestConfig,
    rendered: Rendered,
    inline: Callable[[str], str],
    *,
    digest: str,
    slot: str,
    reply_to: str | None,
) -> PreparedMessage:
    """A rendered message made ready to fill: CSS inlined, headers of digest ``name`` set.

    Editions and notices (confirmation mails) alike: the sender, List-Id and Reply-To
    come from the digest's configuration.
    """
    from_addr = cfg.from_addr or settings.from_addr
    lid = list_id(name, cfg, from_addr)
    return PreparedMessage(
        rendered,
        inlined_html=inline(rendered.html),
        from_addr=from_addr,
        reply_to=reply_to,
        list_id=lid,
        digest=digest,
        slot=slot,
        feedback_id=settings.dkim.feedback_id
        or feedback_id(digest, slot, lid, settings.feedback_sender_id or address_domain(from_addr)),
    )


def list_id(name: str, cfg: DigestConfig, from_addr: str) -> str:
    """The List-Id of digest ``name``: configured, or ``Title <name.domain>``."""
    if cfg.list_id:
        return cfg.list_id
    return f"{cfg.title} <{name}.{address_domain(from_addr)}>"


def make_variants(settings: Settings, name: str, slot: str, when: datetime, content: EditionContent) -> Variants:
    _, cfg = settings.digest(name)
    return Variants(settings, name, cfg, slot, when, content, make_environment(settings.templates_dir))
