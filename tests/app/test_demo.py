"""`digest demo` (what `make demo` runs): a real send into a local sink, through the real entry point."""

from __future__ import annotations

import email
import os
import shlex
import subprocess
import sys
from email import policy
from pathlib import Path


def test_demo_writes_well_formed_digests(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digest.cli.main", "demo", "--dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "var" / "mail").glob("*.eml"))
    assert len(files) == 3
    assert all(f.name in result.stdout for f in files)
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    assert (tmp_path / "var" / "demo.db").exists()


def test_the_demos_closing_hints_are_commands_that_work(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "digest.cli.main", "demo"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stderr
    hints = [line.strip() for line in demo.stdout.splitlines() if line.strip().startswith("digest ")]
    assert len(hints) == 2, demo.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["BROWSER"] = "true"  # `--open` runs this instead of a real browser

    preview, listing = (
        subprocess.run(
            [sys.executable, "-m", "digest.cli.main", *shlex.split(hint)[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        for hint in hints
    )

    assert preview.returncode == 0, preview.stderr
    assert "warning" not in preview.stderr, preview.stderr
    html = (tmp_path / "var" / "preview-daily.html").read_text(encoding="utf-8")
    assert "Coastal cities agree on a shared storm-surge warning system" in html
    assert listing.returncode == 0, listing.stderr
    assert "ana@example.org" in listing.stdout and "3 subscriber(s)" in listing.stdout
