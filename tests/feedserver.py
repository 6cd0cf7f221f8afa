"""A local HTTP server (in a thread) that serves feeds for the poller's tests; never the internet."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    chunked: bool = False
    delay: float = 0.0


@dataclass
class FeedServer:
    """Routes by path; records each request's path and headers."""

    routes: dict[str, Route | Callable[[BaseHTTPRequestHandler], Route]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]


def _rss(items: str, title: str = "Local Wire") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://wire.example.com/</link><description>x</description>"
        f"{items}</channel></rss>"
    ).encode()


def item(n: int, title: str | None = None, when: str = "Wed, 25 Nov 2026 05:00:00 GMT") -> str:
    return (
        f"<item><title>{title or f'Story number {n}'}</title><link>https://wire.example.com/{n}</link>"
        f"<guid>wire-{n}</guid><pubDate>{when}</pubDate><description>Summary {n}.</description></item>"
    )


rss = _rss


@contextmanager
def feed_server(host: str = "127.0.0.1") -> Iterator[FeedServer]:
    """The server on a free port of ``host`` (any 127.x address is loopback on Linux)."""
    state = FeedServer(host=host)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = state.routes.get(self.path)
            if callable(route):
                route = route(self)
            if route is None:
                route = Route(404, b"not found")
            if route.delay:
                time.sleep(route.delay)
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            if (route.etag and inm == route.etag) or (route.last_modified and ims == route.last_modified):
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(route.status)
            for k, v in route.headers.items():
                self.send_header(k, v)
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.send_header("Content-Type", "application/rss+xml")
            if route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(route.body), 65536):
                    chunk = route.body[i : i + 65536]
                    try:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        return
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def trickle_server(interval: float = 0.05, give_up: float = 15.0) -> Iterator[str]:
    """A raw socket server that answers every request with a status line, then one header byte per ``interval``.

    Each read of the client returns within ``interval``, so per-read timeouts never fire;
    it stops after ``give_up`` seconds so that a client without an overall deadline
    ends the test (slowly) instead of hanging it. Yields its base URL.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with suppress(OSError):
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                ends = time.monotonic() + give_up
                while not stop.is_set() and time.monotonic() < ends:
                    conn.sendall(b"a")
                    time.sleep(interval)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
