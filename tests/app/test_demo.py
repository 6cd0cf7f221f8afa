"""`digest demo` (what `make demo` runs): a real send into a local sink, through the real entry point."""

from __future__ import annotations

import email
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
