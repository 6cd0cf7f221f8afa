"""Fixtures of the CLI tests; those of ``test_cli`` (a subprocess ``run``, the CLI's SQLite ``store``,
seeded data) are shared with the other CLI test modules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs: room for the schema, not for thousands of subscribers."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


from tests.cli.test_cli import cli_env, db_path, ready, run, store  # noqa: E402, F401
