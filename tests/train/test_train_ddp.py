"""DistributedDataParallel on CPU: two gloo processes, disjoint data, identical weights at the end."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    from imgxlate.train.loop import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert len(ckpt["per_rank"]) == 2  # each rank's pools and patch samplers, for an exact resume
    for name in w0:
        assert torch.equal(ckpt["models"]["G_ab"][name], w0[name])
