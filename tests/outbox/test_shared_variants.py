"""Sender processes send the variants the parent prepared instead of rendering them again."""

from __future__ import annotations

import email
from email import policy

from sqlalchemy.engine import Engine

from digest.compose.inline import inline_css
from digest.compose.variants import make_variants
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.edition.build import get_or_build_edition
from digest.outbox.drain import send_edition
from digest.transport.sink import SmtpSink
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.outbox.support import readers
from tests.outbox.test_ledger import edition_of

MARK = "<!-- rendered once, in the parent -->"


def parent_inline(html: str) -> str:
    """An inliner a worker process would not use: its mark shows whose rendering was sent."""
    return inline_css(html).replace("</body>", MARK + "</body>")


def test_sender_processes_send_the_variants_the_parent_prepared(
    engine: Engine, settings: Settings, sink: SmtpSink
) -> None:
    settings.batch_size = 5  # more due than one batch: two processes start
    settings.delivery.send_while_starting = False  # and send every copy
    seed(engine, STANDARD_DRAFTS, readers(20))
    edition_id = edition_of(engine, settings)
    edition, content, _ = get_or_build_edition(engine, settings, "daily", NOW)
    variants = make_variants(settings, "daily", edition.slot, edition.built_at, content)
    variants.inline = parent_inline
    variants.for_topics(())

    report = send_edition(engine, settings, variants, edition_id, None, FixedClock(NOW), processes=2)

    assert report.workers == 2 and report.sent == 20
    html = [
        email.message_from_bytes(m.data, policy=policy.default).get_body(("html",)).get_content()  # type: ignore[union-attr, attr-defined]
        for m in sink.messages
    ]
    assert len(html) == 20 and all(MARK in h for h in html)
