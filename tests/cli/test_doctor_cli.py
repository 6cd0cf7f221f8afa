"""``digest doctor`` through the real entry point (a subprocess) against a local DNS server, relay and web stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from digest.cli.doctor import EXIT_CHECK_FAILED
from digest.compose.dkim import KeyPair, generate_key
from digest.transport.sink import SmtpSink, free_port
from tests.dnsserver import GOOD, GOOD_IP, PTR_MISMATCH_IP, SELECTOR, dns_server, doctor_zone
from tests.smtp_script import ScriptedSink, self_signed

CHECKS = ["spf", "dkim", "dmarc", "ptr", "list-unsubscribe", "secret-key", "tls"]


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    return generate_key(), generate_key()


@pytest.fixture(scope="module")
def dns_port(keys: tuple[KeyPair, KeyPair]) -> Iterator[int]:
    with dns_server(doctor_zone(*keys)) as port:
        yield port


@pytest.fixture
def web_url() -> Iterator[str]:
    """A stand-in for the web app: answers the one-click POST of an invalid token with 400, as the app does."""

    class App(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), App)
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def doctor(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "digest.cli.main", "doctor", *args],
        cwd=tmp_path,
        env={**base, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def dkim_env(tmp_path: Path, domain: str, key: KeyPair) -> dict[str, str]:
    path = tmp_path / "dkim.pem"
    path.write_bytes(key.private_pem)
    return {
        "DIGEST_FROM_ADDR": f"The Briefing <briefing@{domain}>",
        "DIGEST_DKIM__SELECTOR": SELECTOR,
        "DIGEST_DKIM__DOMAIN": domain,
        "DIGEST_DKIM__PRIVATE_KEY_FILE": str(path),
    }


def test_good_setup_passes_every_line_and_exits_0(
    tmp_path: Path, dns_port: int, keys: tuple[KeyPair, KeyPair], web_url: str
) -> None:
    context, cert = self_signed(tmp_path)
    with ScriptedSink(tls=context) as relay:
        env = {
            **dkim_env(tmp_path, GOOD, keys[0]),
            "DIGEST_SMTP_URL": f"{relay.url}?starttls=true&cafile={cert}",
            "DIGEST_BASE_URL": web_url,
            "DIGEST_SECRET_KEY": "s" * 48,
        }
        done = doctor(tmp_path, env, "--nameserver", "127.0.0.1", "--dns-port", str(dns_port), "--sending-ip", GOOD_IP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [["pass", name] for name in CHECKS]


def test_broken_setup_prints_each_failure_with_its_fix_and_exits_9(
    tmp_path: Path, dns_port: int, keys: tuple[KeyPair, KeyPair], sink: SmtpSink
) -> None:
    env = {
        **dkim_env(tmp_path, "broken.example", keys[0]),
        "DIGEST_SMTP_URL": sink.url,
        "DIGEST_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    args = ("--nameserver", "127.0.0.1", "--dns-port", str(dns_port), "--sending-ip", PTR_MISMATCH_IP)
    done = doctor(tmp_path, env, *args)
    assert done.returncode == EXIT_CHECK_FAILED == 9
    lines = done.stdout.splitlines()
    verdicts = [line.split()[:2] for line in lines if not line.lstrip().startswith("fix:")]
    assert verdicts == [["FAIL", name] for name in CHECKS]
    assert sum(line.lstrip().startswith("fix:") for line in lines) == len(CHECKS)


def test_json_gives_one_object_per_check(tmp_path: Path, dns_port: int, sink: SmtpSink) -> None:
    env = {"DIGEST_FROM_ADDR": "briefing@broken.example", "DIGEST_SMTP_URL": sink.url}
    args = ("--json", "--nameserver", "127.0.0.1", "--dns-port", str(dns_port), "--sending-ip", PTR_MISMATCH_IP)
    done = doctor(tmp_path, env, *args)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["name"], r["status"], sorted(r)) for r in rows][:4] == [
        (name, "fail", ["detail", "fix", "name", "status"]) for name in CHECKS[:4]
    ]
    # Text in brackets is printed as is, not taken for markup.
    assert rows[1]["fix"] == "set [dkim] selector, domain and private_key_file"


def test_bad_sending_ip_is_one_line_and_exit_3(tmp_path: Path) -> None:
    done = doctor(tmp_path, {}, "--sending-ip", "mail.example")
    assert (done.returncode, done.stderr.strip()) == (3, "error: --sending-ip: not an IP address: 'mail.example'")
