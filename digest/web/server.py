"""Serving the app: ``make_app`` wires it, uvicorn runs it.

Run it alone with ``digest web``, or inside another process (``digest serve``) with
:class:`WebServer`::

    app = make_app(settings, engine, clock)
    server = WebServer(app, settings).start()   # uvicorn in a background thread
    ...
    server.stop()
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from digest.app.metrics import metrics_registry
from digest.app.notices import BackgroundMailer
from digest.compose.render import make_environment
from digest.core.clock import Clock, SystemClock
from digest.core.errors import ConfigError, DigestError
from digest.core.settings import Settings
from digest.transport.smtp import SMTPTransport, Transport, smtp_config
from digest.web.api import PREFIX as API_PREFIX
from digest.web.api import make_api
from digest.web.metrics import RequestMetrics, metrics_endpoint
from digest.web.pages import WebApp
from digest.web.security import BodyLimit, SecurityHeaders, check_secret_key

if TYPE_CHECKING:
    import uvicorn

    from digest.compose.dkim import Signer

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def smtp_transport_factory(settings: Settings) -> Callable[[], Transport]:
    """A new SMTP connection per notice, to ``smtp_url``; a bad URL stops the app now, not at the first notice."""
    config = smtp_config(settings)
    return lambda: SMTPTransport(config)


def make_app(
    settings: Settings,
    engine: Engine,
    clock: Clock | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    *,
    signer: Signer | None = None,
    env: jinja2.Environment | None = None,
) -> Starlette:
    """The ASGI app. ``transport_factory`` makes the transport for each notice (default: ``smtp_url``);
    ``signer`` signs notices (default: the ``[dkim]`` signer, if configured).

    Raises ConfigError when ``secret_key`` is unset, short or the public default.
    """
    from digest.compose.dkim import signer_from_settings

    check_secret_key(settings)
    clock = clock or SystemClock()
    env = env or make_environment(settings.templates_dir)
    if signer is None:
        signer = signer_from_settings(settings, clock)
    # Notices go out from a background thread: a subscribe answer never waits on
    # SMTP, so its timing cannot tell a known address from a new one.
    mailer = BackgroundMailer(settings, transport_factory or smtp_transport_factory(settings), signer=signer, env=env)
    web = WebApp(settings, engine, clock, mailer, env)
    api = make_api(settings, engine, clock, mailer)

    endpoints: list[BaseRoute] = [*routes(web)]
    endpoints.append(Route("/metrics", metrics_endpoint(metrics_registry(engine, clock)), methods=["GET"]))
    endpoints.append(Mount(API_PREFIX, app=api))
    app = Starlette(
        routes=endpoints,
        exception_handlers={HTTPException: web.http_error, Exception: web.server_error},
    )
    app.state.web = web
    # The API takes batches of articles; the pages' forms are tiny.
    app.add_middleware(BodyLimit, larger={f"{API_PREFIX}/": settings.api.max_body_bytes})
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics, routes=endpoints)  # added last: outermost, so it counts every answer
    return app


def routes(web: WebApp) -> list[Route]:
    """Every endpoint: one row a path, its GET and its POST handler (side effects only on POST)."""
    paths: list[tuple[str, Endpoint, Endpoint | None]] = [
        # The subscribe form posts back to the page's own address: "/" or "/subscribe".
        ("/", web.home, web.subscribe),
        ("/subscribe", web.home, web.subscribe),
        ("/confirm/{token}", web.confirm_page, web.confirm),
        ("/unsubscribe/{token}", web.unsubscribe_page, web.unsubscribe),
        ("/preferences/{token}", web.preferences, web.save_preferences),
        ("/preferences/{token}/data", web.download_data, None),
        ("/preferences/{token}/delete", web.delete_page, web.delete),
        ("/archive", web.archive_list, None),
        ("/archive/{edition_id:int}", web.archive_by_id, None),
        ("/archive/{digest}.atom", web.archive_atom, None),
        ("/archive/{digest}.json", web.archive_json, None),
        ("/archive/{digest}/{slot}", web.archive, None),
        ("/articles/{article_id:int}", web.article, None),
        ("/healthz", web.healthz, None),
    ]
    return [
        Route(path, handler, methods=[method])
        for path, get, post in paths
        for method, handler in (("GET", get), ("POST", post))
        if handler is not None
    ]


# ---------------------------------------------------------------- serving


def uvicorn_config(app: Starlette, settings: Settings, host: str | None = None, port: int | None = None) -> Any:
    """The uvicorn configuration: trusted proxies from settings, no access log (URLs carry tokens)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host or settings.web.host,
        port=port if port is not None else settings.web.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
        access_log=False,
        server_header=False,
        log_level="warning",
        lifespan="off",
    )


def start_in_thread(
    settings: Settings,
    engine: Engine,
    clock: Clock | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    source: str | None = None,
) -> WebServer | None:
    """For ``digest serve``: the web app running in a background thread when ``[web] enabled``, else None.

    Call ``stop()`` on the result at shutdown. ``source``: where ``web.port`` was set, for its error.
    """
    if not settings.web.enabled:
        return None
    server = WebServer(make_app(settings, engine, clock, transport_factory), settings).start(source=source)
    warning = address_warning(settings)  # once listening: a busy port stays the one line it is
    if warning:
        log.warning("web: %s", warning)
    return server


def listen(
    settings: Settings, host: str | None = None, port: int | None = None, source: str | None = None
) -> socket.socket:
    """The bound listening socket of the web app, made before anything is announced.

    A busy or forbidden address is one :class:`ConfigError` naming ``web.port`` (or
    ``web.host``), not uvicorn's log line after the app said it was running.
    """
    host = host or settings.web.host
    port = port if port is not None else settings.web.port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        busy = exc.errno == errno.EADDRINUSE
        key = "web.port" if busy or exc.errno == errno.EACCES else "web.host"
        hint = "stop what uses it or choose another port" if busy else "check the address"
        raise ConfigError(key, f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}", source) from None
    return sock


def serve_forever(
    app: Starlette,
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT; return (exit 0) after a graceful stop.

    uvicorn re-raises the signal after shutting down, which ends the process "killed
    by SIGTERM"; a service manager and a shell both prefer a plain exit 0.
    """
    import signal
    from contextlib import contextmanager

    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Any:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    _Server(uvicorn_config(app, settings, host, port)).run(sockets=[sock] if sock is not None else None)
    close_mailer(app, settings)


def address_warning(settings: Settings, host: str | None = None, port: int | None = None) -> str | None:
    """A warning when ``base_url`` names this machine but not the address the app listens on.

    Links in emails go to ``base_url``, and a reader following one must reach this
    app. A public ``base_url`` is taken to be served through a proxy: no warning.
    """
    listen_host, listen_port = host or settings.web.host, port if port is not None else settings.web.port
    parts = urlsplit(settings.base_url)
    base_host = parts.hostname or ""
    base_port = parts.port or (443 if parts.scheme == "https" else 80)
    if not _is_local(base_host):
        return None
    wildcard = listen_host in ("0.0.0.0", "::", "")
    if base_port == listen_port and (wildcard or base_host == listen_host.strip("[]")):
        return None
    return (
        f"base_url is {settings.base_url} but the app listens on {listen_host}:{listen_port}: links in emails "
        "go to base_url; set base_url (DIGEST_BASE_URL) to the address that reaches this app"
    )


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def close_mailer(app: Starlette, settings: Settings) -> None:
    """Send the notices still queued when the server stops (at most ``smtp_timeout`` seconds)."""
    mailer = getattr(app.state, "web", None) and app.state.web.mailer
    if isinstance(mailer, BackgroundMailer):
        mailer.close(settings.smtp_timeout)


class WebServer:
    """uvicorn serving an app from a background thread (for ``digest serve`` and tests).

    ``start()`` returns once the socket listens; ``stop()`` lets requests in flight
    finish and joins the thread.
    """

    def __init__(self, app: Starlette, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        import uvicorn

        self.app, self.settings = app, settings
        self.config = uvicorn_config(app, settings, host, port)
        self.server: uvicorn.Server = uvicorn.Server(self.config)
        self.socket: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="digest-web", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.socket] if self.socket is not None else None)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 10.0, source: str | None = None) -> WebServer:
        """Listen (a busy port is a ConfigError naming ``web.port``, from ``source``), then serve."""
        self.socket = listen(self.settings, self.config.host, self.config.port, source)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DigestError(f"web server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        close_mailer(self.app, self.settings)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
