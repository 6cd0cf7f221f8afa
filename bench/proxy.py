"""A TCP proxy on loopback that adds latency: a relay that far away (this kernel has no netem).

Every chunk is held ``delay`` seconds in each direction (a round trip of ``2 x delay``);
order within a connection is kept, bandwidth is not limited. It runs in a process of
its own (importing nothing of ``digest``) so that it never competes for the
benchmark's GIL:

    python -m bench.proxy TARGET_PORT DELAY_SECONDS LISTEN_PORT
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import deque


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_times(pid: int) -> tuple[float, float, float, float]:
    """Seconds of user and system CPU of process ``pid``, then of its reaped children, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[13]) / tick, int(fields[14]) / tick


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    user, system, _, _ = process_times(pid)
    return user + system


def wait_port(port: int, seconds: float = 60) -> None:
    """Until something listens on ``port`` (a loaded machine can take a while to start a process)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


class _Half(asyncio.Protocol):
    """One direction's receiving end: what arrives is written to ``peer`` ``delay`` seconds later."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Half | None = None
        self.transport: asyncio.Transport | None = None
        self._due: deque[tuple[float, bytes]] = deque()
        self._loop = asyncio.get_running_loop()
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        when = self._loop.time() + self.delay
        self._due.append((when, data))
        self._loop.call_at(when, self._flush)

    def _flush(self) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            return  # the upstream connection is still opening: flushed once it is
        now = self._loop.time()
        while self._due and self._due[0][0] <= now:
            chunk = self._due.popleft()[1]
            if not peer.transport.is_closing():
                peer.transport.write(chunk)
        if self._closing and not self._due:
            peer.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._loop.call_at(self._loop.time() + self.delay, self._flush)


async def serve(target_port: int, delay: float, port: int) -> None:
    loop = asyncio.get_running_loop()

    def client() -> _Half:
        down = _Half(delay)

        async def connect_up() -> None:
            try:
                _, up = await loop.create_connection(lambda: _Half(delay), "127.0.0.1", target_port)
            except OSError:
                if down.transport is not None:
                    down.transport.close()
                return
            up.peer, down.peer = down, up  # type: ignore[attr-defined]
            down._flush()  # anything the client sent while the upstream connection opened

        loop.create_task(connect_up())
        return down

    server = await loop.create_server(client, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


class DelayProxy:
    """``DelayProxy(target_port, delay).start()``: the proxy process; ``.url``; ``.stop()``."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        cmd = [sys.executable, "-m", "bench.proxy", str(self.target_port), str(self.delay), str(self.port)]
        self._proc = subprocess.Popen(cmd)
        try:
            wait_port(self.port)
        except BaseException:
            self.stop()
            raise
        return self

    def cpu_s(self) -> float:
        """CPU seconds the proxy process has used so far."""
        return process_cpu_s(self._proc.pid) if self._proc is not None else 0.0

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
