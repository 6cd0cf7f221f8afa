"""``digest web`` through the real entry point, and the web app inside another process (``digest serve``)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.core.errors import ConfigError
from digest.core.settings import Settings
from digest.transport.sink import free_port
from digest.web import address_warning, start_in_thread

DIGEST = Path(sys.executable).parent / "digest"


@pytest.mark.slow
def test_digest_web_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_CONFIG="/dev/null",
        DIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'digest.db'}",
        DIGEST_SECRET_KEY=secrets.token_urlsafe(32),
    )
    proc = subprocess.Popen(
        [str(DIGEST), "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.json() == {"status": "ok"}, proc.stderr.read1().decode()  # type: ignore[union-attr]
        assert "Subscribe" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0


def test_start_in_thread_runs_the_app_only_when_enabled(engine: Engine, web_settings: Settings, web_port: int) -> None:
    assert start_in_thread(web_settings, engine) is None
    enabled = web_settings.model_copy(
        update={"web": web_settings.web.model_copy(update={"enabled": True, "port": web_port})}
    )
    server = start_in_thread(enabled, engine)
    assert server is not None
    try:
        assert httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=10).json() == {"status": "ok"}
    finally:
        server.stop()
    assert not server.thread.is_alive()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "is the public default"),
        ("", "is not set"),
        ("short-but-not-empty-key", "is 23 characters long"),
    ],
    ids=["default", "empty", "short"],
)
@pytest.mark.parametrize("command", [["web"], ["serve"]], ids=["web", "serve"])
def test_web_app_refuses_to_start_without_a_strong_secret_key(
    tmp_path: Path, key: str | None, problem: str, command: list[str]
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_CONFIG="/dev/null",
        DIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'digest.db'}",
        DIGEST_WEB__ENABLED="true",
        DIGEST_WEB__PORT=str(port),
    )
    if key is not None:
        env["DIGEST_SECRET_KEY"] = key

    done = subprocess.run([str(DIGEST), *command], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == ConfigError.exit_code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "secret_key" in lines[0] and "DIGEST_SECRET_KEY" in lines[0] and problem in lines[0]
    assert not key or key not in done.stderr  # a (weak) secret is still never printed
    assert not (tmp_path / "digest.db").exists()  # refused before the database was touched


def test_make_app_refuses_a_short_key(engine: Engine, web_settings: Settings) -> None:
    weak = web_settings.model_copy(update={"secret_key": SecretStr("x" * 31)})
    with pytest.raises(ConfigError, match="secret_key"):
        start_in_thread(weak.model_copy(update={"web": weak.web.model_copy(update={"enabled": True})}), engine)


def start_digest_web(tmp_path: Path, port: int, base_url: str) -> tuple[int, str]:
    """Run ``digest web`` until it answers, stop it; return its exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_CONFIG="/dev/null",
        DIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'digest.db'}",
        DIGEST_SECRET_KEY=secrets.token_urlsafe(32),
        DIGEST_BASE_URL=base_url,
    )
    proc = subprocess.Popen(
        [str(DIGEST), "web", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    return proc.returncode, stderr


@pytest.mark.slow
def test_digest_web_says_to_open_base_url_and_warns_when_it_is_not_the_listen_address(tmp_path: Path) -> None:
    port = free_port()

    code, stderr = start_digest_web(tmp_path, port, f"http://localhost:{port}")

    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    assert f"open http://localhost:{port} " in lines[0] and f"listening on 127.0.0.1:{port}" in lines[0]
    assert lines[1].startswith(f"warning: base_url is http://localhost:{port} but the app listens on 127.0.0.1:{port}")
    assert "DIGEST_BASE_URL" in lines[1]


@pytest.mark.slow
def test_digest_web_does_not_warn_when_base_url_is_the_listen_address(tmp_path: Path) -> None:
    port = free_port()

    code, stderr = start_digest_web(tmp_path, port, f"http://127.0.0.1:{port}")

    assert code == 0, stderr
    assert f"open http://127.0.0.1:{port} " in stderr
    assert "warning" not in stderr


@pytest.mark.parametrize(
    ("base_url", "listen", "warns"),
    [
        ("http://localhost:8000", ("127.0.0.1", 8000), True),
        ("http://127.0.0.1:8000", ("127.0.0.1", 9000), True),
        ("http://localhost:8000", ("0.0.0.0", 8000), False),
        ("http://127.0.0.1:8000", ("127.0.0.1", 8000), False),
        ("https://news.example.com", ("127.0.0.1", 8000), False),  # behind a proxy
    ],
)
def test_address_warning(web_settings: Settings, base_url: str, listen: tuple[str, int], warns: bool) -> None:
    settings = web_settings.model_copy(update={"base_url": base_url})

    assert (address_warning(settings, *listen) is not None) is warns
