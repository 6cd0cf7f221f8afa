"""Lease release on restart: which worker processes of this host count as gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from digest.outbox.journal import _start_time, is_dead_here, worker_id


def test_this_process_is_alive() -> None:
    assert not is_dead_here(worker_id())


def test_a_reaped_process_is_dead() -> None:
    child = subprocess.Popen(["true"])
    start = _start_time(child.pid)
    child.wait()
    assert is_dead_here(f"{socket.gethostname()}:{child.pid}:{start}")


def test_a_zombie_is_dead() -> None:
    """A killed worker nobody reaps (its parent was killed too) must not hold its claims forever."""
    child = subprocess.Popen(["sleep", "30"])
    start = _start_time(child.pid)
    try:
        os.kill(child.pid, 9)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert is_dead_here(f"{socket.gethostname()}:{child.pid}:{start}")
    finally:
        child.wait()


def test_a_worker_of_another_host_is_never_judged_here() -> None:
    assert not is_dead_here(f"not-{socket.gethostname()}:1:1")


def test_a_killed_but_unreaped_process_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    start = _start_time(proc.pid)
    worker = f"{socket.gethostname()}:{proc.pid}:{start}"
    assert not is_dead_here(worker)
    proc.kill()
    deadline = time.monotonic() + 5
    while _start_time(proc.pid) != "zombie" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert is_dead_here(worker)  # a zombie: pid and start time still there, nothing runs
    proc.wait()
    assert is_dead_here(worker)
