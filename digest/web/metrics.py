"""``GET /metrics`` (Prometheus text) and the middleware that counts requests by route and status."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.core.metrics import WEB_REQUEST_SECONDS, WEB_REQUESTS


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: the registry in Prometheus text format; the store's queries run off the event loop."""

    async def metrics(request: Request) -> Response:
        # The format the scraper asks for (Prometheus text or OpenMetrics), as prometheus_client's own server does.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, registry)
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return metrics


# Any token is a valid HTTP method: the others are counted together, not as a time series each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts every HTTP request by route template (``/confirm/{token}``, never the token), method and status.

    A path no route matches counts as ``other``: scanners probing random paths do
    not create a time series each.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE and isinstance(route, Route):
                return route.path
            if match != Match.NONE and isinstance(route, Mount):
                return route.path  # the API is counted as one route

        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        status = 500
        started = time.perf_counter()

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            method = scope.get("method", "")
            WEB_REQUESTS.labels(route, method if method in METHODS else "other", str(status)).inc()
            WEB_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
