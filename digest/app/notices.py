"""Notices: the one-off emails of the subscriber lifecycle (confirmation, already subscribed).

:class:`Mailer` sends one at once; :class:`BackgroundMailer` queues it for a thread,
so the web app answers a subscribe request in the same time whatever the address.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jinja2

from digest.app.subscriptions import reader_language, site_title
from digest.compose.i18n import text_direction
from digest.compose.inline import inline_css
from digest.compose.recipients import recipient_for
from digest.compose.render import Markers, for_locale, make_environment, render_variant
from digest.compose.variants import prepared_message
from digest.core.settings import Settings
from digest.core.text import mask_email
from digest.store.models import Subscriber
from digest.transport.smtp import Transport

if TYPE_CHECKING:
    from digest.compose.dkim import Signer

log = logging.getLogger(__name__)


class Mailer:
    """Sends one-off notices (confirmation, already-subscribed) through the normal message path.

    A notice is rendered from ``email/NAME.html`` and ``.txt`` with the one Jinja
    environment, inlined, built into a :class:`PreparedMessage`, filled for its
    recipient, DKIM-signed when a signer is given, and sent through a transport
    made for it by ``transport_factory`` (notices are rare: no connection is kept).
    """

    def __init__(
        self,
        settings: Settings,
        transport_factory: Callable[[], Transport],
        *,
        signer: Signer | None = None,
        env: jinja2.Environment | None = None,
        inline: Callable[[str], str] = inline_css,
    ) -> None:
        self.settings = settings
        self.transport_factory = transport_factory
        self.signer = signer
        self.env = env or make_environment(settings.templates_dir)
        self.inline = inline

    def context(self, sub: Subscriber, markers: Markers, **extra: Any) -> dict[str, Any]:
        """The render context of a notice (documented in docs/web.md)."""
        s = self.settings
        language = reader_language(s, sub)
        ctx: dict[str, Any] = {
            "language": language,
            "dir": text_direction(language),
            "site": {"title": site_title(s), "base_url": s.base_url},
            "digests": [{"name": n, "title": c.title} for n, c in s.digests.items()],
            "topics": list(sub.topics),
            "confirm_url": "",
            "confirm_days": max(1, round(s.web.confirm_max_age.total_seconds() / 86400)),
            "subscribe_url": f"{s.base_url}/",
            "base_url": s.base_url,
            "postal_address": s.postal_address,
            "personal": markers.as_context(),
        }
        ctx.update(extra)
        return ctx

    def build(self, sub: Subscriber, template: str, subject: str, now: datetime, **extra: Any) -> tuple[str, bytes]:
        """``(envelope_from, message bytes)`` of notice ``template`` for ``sub``."""
        markers = Markers.new()
        env = for_locale(self.env, reader_language(self.settings, sub))
        rendered = render_variant(env, template, subject, self.context(sub, markers, **extra), markers)
        name, cfg = next(iter(self.settings.digests.items()))
        prepared = prepared_message(
            self.settings, name, cfg, rendered, self.inline, digest=template, slot="notice", reply_to=None
        )
        msgid = f"<notice.{template}.{secrets.token_hex(10)}@{prepared.domain}>"
        recipient = recipient_for(self.settings, sub)
        data = prepared.fill(recipient, now, msgid)
        if self.signer is not None:
            data = self.signer.sign(data)
        return prepared.envelope_from_for(recipient), data

    def send(self, sub: Subscriber, template: str, subject: str, now: datetime, **extra: Any) -> str:
        """Send notice ``template`` to ``sub``; TemporaryFailure/PermanentFailure propagate."""
        envelope_from, data = self.build(sub, template, subject, now, **extra)
        transport = self.transport_factory()
        try:
            return transport.send(envelope_from, sub.email, data)
        finally:
            transport.close()


class BackgroundMailer(Mailer):
    """A :class:`Mailer` whose ``send`` only queues: one thread renders and sends, in order.

    The web app answers a subscribe request without waiting for SMTP, so a new
    address, an active one and one throttled a minute ago all answer in the same
    time: how long a request takes tells nothing about the address. A failure is
    logged (the address masked); the requester may ask again after
    ``resend_interval``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.Queue[tuple[Subscriber, str, str, datetime, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, sub: Subscriber, template: str, subject: str, now: datetime, **extra: Any) -> str:
        """Queue notice ``template`` for ``sub``; returns at once ("queued")."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="digest-notices", daemon=True)
                self._thread.start()
        self._queue.put((sub, template, subject, now, extra))
        return "queued"

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                sub, template, subject, now, extra = job
                try:
                    Mailer.send(self, sub, template, subject, now, **extra)
                except Exception as exc:  # noqa: BLE001 - a failed notice must not stop the next one
                    log.warning("%s notice to %s not sent: %s", template, mask_email(sub.email), type(exc).__name__)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every queued notice has been handed to SMTP (or failed)."""
        self._queue.join()

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued, then stop the thread (waits at most ``timeout`` seconds)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
