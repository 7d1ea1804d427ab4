"""Where a run executes: the torchrun variables read once (train/launch.py), one run per folder, a
resume with the world size it ran with, and a rendezvous that a stop signal can end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_config

from imgxlate._lock import exclusive
from imgxlate.errors import UsageError
from imgxlate.train.launch import Launch, launch_env
from imgxlate.train.loop import RUN_LOCK, train


def test_launch_env_reads_world_size_first() -> None:
    assert launch_env({}) == Launch()
    assert launch_env({"RANK": "1"}) == Launch()  # a left-over RANK: still the one, main process
    assert launch_env({"WORLD_SIZE": "1", "RANK": "3"}) == Launch()
    full = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert launch_env(full) == Launch(2, 0, 4)
    with pytest.raises(UsageError, match="MASTER_ADDR and MASTER_PORT are not set"):
        launch_env({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(UsageError, match="not a rank of WORLD_SIZE=2"):
        launch_env({**full, "WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(UsageError, match="not a whole number"):
        launch_env({"WORLD_SIZE": "two"})


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    code = "from imgxlate.train.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def _tiny_args(folders: tuple[Path, Path], out: Path) -> list[str]:
    return ["--domain-a", str(folders[0]), "--domain-b", str(folders[1]), "--out", str(out), "--ngf", "8",
            "--ndf", "8", "--n-blocks", "2", "--image-size", "32", "--load-size", "36", "--workers", "0",
            "--threads", "1", "--sample-every", "0", "--no-export", "--max-steps", "1"]


def test_a_left_over_rank_does_not_throw_the_run_away(folders: tuple[Path, Path], tmp_path: Path) -> None:
    done = _cli(_tiny_args(folders, tmp_path / "run"), {"RANK": "1"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file() and "done:" in done.stderr


def test_a_run_folder_in_use_is_refused(folders: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    with exclusive(out / RUN_LOCK, lambda: AssertionError("the test holds it")), \
            pytest.raises(UsageError, match="another imgxlate-train is using"):
        train(tiny_config(*folders, out, max_steps=1))
    assert not (out / "checkpoints").exists()
    train(tiny_config(*folders, out, max_steps=1))  # free again once the other run is gone
    assert not (out / RUN_LOCK).exists()


def test_a_resume_with_another_world_size_is_refused(folders: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny_config(*folders, out, max_steps=4), stop_after=1)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    ckpt["world_size"] = 2  # as written by two torchrun processes
    torch.save(ckpt, out / "checkpoints" / "last.pt")
    with pytest.raises(UsageError, match=r"trained by 2 process\(es\).*torchrun --nproc-per-node 2"):
        train(resume=out)


def test_a_rendezvous_without_peers_says_so_and_stops_on_ctrl_c(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """WORLD_SIZE left set in a shell, no torchrun: the process used to wait for peers in silence and
    ignore Ctrl-C and SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from imgxlate.train.cli import main; main()"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-c", code, *_tiny_args(folders, tmp_path / "run")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("waiting for the other 1 process" in x for x in lines):
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines)
    assert "unset WORLD_SIZE and RANK" in err
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_errors_under_torchrun_name_their_rank_and_export_runs_in_one_process(tmp_path: Path) -> None:
    ranks = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1", "LOCAL_RANK": "0"}
    missing = ["--domain-a", str(tmp_path / "none"), "--domain-b", str(tmp_path / "none")]
    second = _cli(missing, {**ranks, "RANK": "1"})  # its own error, named by its rank
    assert second.returncode == 2 and "error: [rank 1]" in second.stderr
    first = _cli(missing, {**ranks, "RANK": "0"})
    assert first.returncode == 2 and "error:" in first.stderr and "[rank" not in first.stderr
    export = ["export", str(tmp_path / "run"), "--out", str(tmp_path / "m")]
    zero = _cli(export, {**ranks, "RANK": "0"})
    assert zero.returncode == 2 and "runs in one process; run it without torchrun" in zero.stderr
    one = _cli(export, {**ranks, "RANK": "1"})
    assert one.returncode == 2 and one.stderr == ""
    alone = _cli(export, {"WORLD_SIZE": "2", "RANK": "0"})  # left over, no MASTER_*: the same advice
    assert alone.returncode == 2 and "without torchrun" in alone.stderr and "start it with" not in alone.stderr
