"""DistributedDataParallel on CPU: two gloo processes, disjoint data, identical weights at the end; a stop
signal that reaches one rank stops both after the same step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imgxlate.train.loop import load_checkpoint

SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from train_helpers import tiny_config
from imgxlate.train.loop import train
a, b, out, dump = map(Path, sys.argv[2:6])
# cyclegan: one discriminator warm-up step first (the generators run under no_grad inside DDP)
kw = {"method": sys.argv[6], "num_patches": 16} if sys.argv[6] != "cyclegan" else {"d_warmup_steps": 1}
result = train(tiny_config(a, b, out, max_steps=3, checkpoint_every=2, log_every=1, **kw))
rank = int(__import__("os").environ["RANK"])
g_ab = result.trainer.nets["G_ab"]
torch.save({k: v.detach().clone() for k, v in g_ab.state_dict().items()}, dump / f"rank{rank}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["cyclegan", "fastcut"])
def test_two_gloo_ranks_end_identical(folders: tuple[Path, Path], tmp_path: Path, method: str) -> None:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SCRIPT,
                    str(Path(__file__).parent),
                    *map(str, folders),
                    str(tmp_path / "run"),
                    str(tmp_path),
                    method,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    # trained (not just broadcast initial weights), and only rank 0 wrote the run folder
    torch.manual_seed(0)
    from imgxlate.train.cut import init_xavier
    from imgxlate.train.networks import ResnetGenerator, init_weights

    init_fn = init_weights if method == "cyclegan" else init_xavier
    init = init_fn(ResnetGenerator(ngf=8, n_blocks=2)).state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert len(ckpt["per_rank"]) == 2  # each rank's pools and patch samplers, for an exact resume
    for name in w0:
        assert torch.equal(ckpt["models"]["G_ab"][name], w0[name])


def _cli_ranks(args: list[str], tmp_path: Path, name: str) -> list[tuple[subprocess.Popen, Path, Path]]:
    """``imgxlate-train ARGS`` as the two ranks of a torchrun launch on this machine; each with its
    stdout and stderr in files (a pipe nobody reads while the test waits could fill up and block it)."""
    port = _free_port()
    ranks = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        out, err = tmp_path / f"{name}{rank}.out", tmp_path / f"{name}{rank}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "imgxlate.train", *args], env=env, stdout=stdout,
                                    stderr=stderr, text=True)
        ranks.append((proc, out, err))
    return ranks


def _ended(ranks: list[tuple[subprocess.Popen, Path, Path]], timeout: float) -> list[tuple[int, str, str]]:
    """Each rank's exit code, stdout and stderr; both are killed and the test fails if they hang."""
    deadline = time.monotonic() + timeout
    try:
        for proc, _, _ in ranks:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        for proc, _, _ in ranks:
            proc.kill()
            proc.wait()
        stderrs = "\n".join(f"rank {r}: {err.read_text()[-1500:]}" for r, (_, _, err) in enumerate(ranks))
        pytest.fail(f"the ranks hung (still running {timeout:.0f} s later):\n{stderrs}")
    return [(proc.returncode, out.read_text(), err.read_text()) for proc, out, err in ranks]


def test_a_sigterm_to_one_rank_stops_both_after_the_same_step(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """A stop signal can reach the ranks of a torchrun run at different steps, or only some of them
    (here: rank 1 alone). The rank that stopped used to wait in the checkpoint's all_gather while the
    other ran its next step's all-reduce: both hung until torchrun's SIGKILL, and no checkpoint was
    saved. Now the ranks agree after every step: both stop after the same one, it is saved, both exit
    143 (128 + SIGTERM), and the run resumes from it."""
    run = tmp_path / "run"
    tiny = ["--ngf", "8", "--ndf", "8", "--n-blocks", "2", "--image-size", "32", "--load-size", "36", "--workers",
            "0", "--pool-size", "3", "--threads", "1", "--no-export", "--json"]
    ranks = _cli_ranks(["--domain-a", str(folders[0]), "--domain-b", str(folders[1]), "--out", str(run), *tiny,
                        "--epochs", "100000", "--epochs-decay", "0", "--checkpoint-every", "0", "--log-every", "1"],
                       tmp_path, "train")
    log = run / "log.jsonl"  # rank 0's; the ranks run their steps in lockstep (DDP)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(proc.poll() is None for proc, _, _ in ranks):
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert all(proc.poll() is None for proc, _, _ in ranks), [err.read_text()[-1500:] for _, _, err in ranks]
    ranks[1][0].send_signal(signal.SIGTERM)
    (code0, out0, err0), (code1, _, err1) = _ended(ranks, timeout=60)
    assert code0 == 143 and code1 == 143, (code0, err0[-1500:], code1, err1[-1500:])
    assert "Traceback" not in err0 + err1, err0 + err1
    assert "another process of this run was stopped by SIGTERM" in err0, err0  # rank 0 was not signalled
    ckpt = load_checkpoint(run)
    step = int(ckpt["step"])
    assert step >= 3 and ckpt["world_size"] == 2 and len(ckpt["per_rank"]) == 2
    summary = json.loads(out0)
    assert summary["interrupted"] and summary["step"] == step and summary["exit_code"] == 143, summary

    resumed = _ended(_cli_ranks(["--resume", str(run), "--max-steps", str(step + 1), *tiny], tmp_path, "resume"),
                     timeout=120)
    assert [code for code, _, _ in resumed] == [0, 0], resumed
    assert json.loads(resumed[0][1])["steps"] == step + 1
    assert int(load_checkpoint(run)["step"]) == step + 1
