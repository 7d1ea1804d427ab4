"""The process bookkeeping that keeps a local Ray instance from outliving its command, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgxlate.distributed.processes import descendants, is_ray, wait_gone

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_descendants_finds_grandchildren_and_wait_gone_kills_what_does_not_exit() -> None:
    # a child that starts a grandchild and both ignore SIGTERM; the grandchild's pid comes back on stdout
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
            "print(p.pid, flush=True); time.sleep(300)")
    before = descendants()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        new = descendants() - before
        assert {child.pid, grandchild} <= new
        t0 = time.monotonic()
        killed = wait_gone(new, timeout=0.5)
        assert set(killed) >= {child.pid, grandchild}
        assert time.monotonic() - t0 < 5
        child.wait(timeout=5)  # reaped: it was killed
        assert grandchild not in descendants() and not _running(grandchild)
    finally:
        child.kill()
        child.wait()


def test_wait_gone_returns_at_once_for_processes_that_exit() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    t0 = time.monotonic()
    assert wait_gone([child.pid], timeout=30) == []
    assert time.monotonic() - t0 < 1


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_only_ray_processes_are_taken_for_ray(tmp_path: Path) -> None:
    """Ray's workers run from the ray package (or are renamed ``ray::...``); a process whose command
    line merely contains "ray" ("array", "gray", a user named ray) is not Ray's and is never stopped."""
    worker_script = tmp_path / "site-packages" / "ray" / "_private" / "workers" / "default_worker.py"
    worker_script.parent.mkdir(parents=True)
    worker_script.write_text("import time\ntime.sleep(30)\n")
    plain = subprocess.Popen([sys.executable, "-c", "import time; array = 'gray'; time.sleep(30)"])
    worker = subprocess.Popen([sys.executable, str(worker_script)])
    try:
        time.sleep(0.3)
        assert plain.poll() is None and worker.poll() is None
        assert not is_ray(plain.pid) and is_ray(worker.pid)
    finally:
        for p in (plain, worker):
            p.kill()
            p.wait()
    assert not is_ray(worker.pid)  # gone
