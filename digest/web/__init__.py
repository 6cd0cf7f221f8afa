"""The web shell: subscriber pages, one-click unsubscribe, archive.

Its face: ``make_app`` (the ASGI app), ``WebServer`` and ``start_in_thread`` (uvicorn in a
background thread), ``serve_forever`` (``digest web``), ``check_secret_key`` and
``address_warning`` (``base_url`` against the listen address).
"""

from digest.web.security import check_secret_key
from digest.web.server import WebServer, address_warning, listen, make_app, serve_forever, start_in_thread

__all__ = [
    "WebServer",
    "address_warning",
    "check_secret_key",
    "listen",
    "make_app",
    "serve_forever",
    "start_in_thread",
]
