"""bench/_util.run_measured: a command's own peak memory, whatever the size of the benchmark itself,
its exit code and output, and a timeout that leaves no process behind."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from bench import _util as U

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss semantics are Linux's")


def test_peak_is_the_commands_own_not_the_benchmarks() -> None:
    held = np.ones(400 << 20, np.uint8)  # the benchmark holds 400 MiB (a large image, say)
    small = U.run_measured([sys.executable, "-c", "pass"], timeout=60)
    big = U.run_measured([sys.executable, "-c", "b = bytearray(300 << 20)"], timeout=60)
    assert held[-1] == 1
    assert small["returncode"] == 0 and big["returncode"] == 0
    # A plain spawn would report >= 400 MiB for both (the parent's resident memory at exec).
    assert small["peak_rss_mib"] < 100, small
    assert 300 <= big["peak_rss_mib"] < 400, big
    assert small["cpu_s"] is not None and not small["timed_out"]


def test_exit_code_stdout_and_stderr_come_back() -> None:
    res = U.run_measured(
        [sys.executable, "-c", "import sys; print('{\"x\": 1}'); print('oops', file=sys.stderr); sys.exit(3)"],
        timeout=60,
    )
    assert res["returncode"] == 3
    assert res["stdout"].strip() == '{"x": 1}'
    assert "oops" in res["stderr"]


def test_timeout_kills_the_command_and_its_children(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    t0 = time.perf_counter()
    res = U.run_measured([sys.executable, "-c", script], timeout=3)
    assert res["timed_out"] and time.perf_counter() - t0 < 30
    assert res["peak_rss_mib"] is None  # killed before it could report
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # the kill is delivered; reaping by init may take a moment
        try:
            os.kill(grandchild, 0)
            with open(f"/proc/{grandchild}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {grandchild} outlived the timed-out command")
