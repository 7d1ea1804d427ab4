"""CUT / FastCUT: the PatchNCE loss against its formula, patch sampling, layers, resume, export."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from imgxlate.errors import UsageError
from imgxlate.metadata import read_onnx_metadata
from imgxlate.train.config import TrainConfig
from imgxlate.train.cut import (
    ContrastiveGenerator,
    CutTrainer,
    PatchHeads,
    nce_layers,
    patch_nce_loss,
    run_generator,
    sample_patch_ids,
)
from imgxlate.train.loop import Runtime, load_checkpoint, train
from imgxlate.train.networks import ResnetBlock, ResnetGenerator

CPU = Runtime(torch.device("cpu"), None, "fp32")


def _direct_patch_nce(q: np.ndarray, k: np.ndarray, batch: int, tau: float) -> float:
    """The formula, one patch at a time: -log(exp(q.k+/t) / (exp(q.k+/t) + sum_{n != i} exp(q.k_n/t)))
    with positives and negatives from the same image only; the mean over every patch of the batch."""
    per_image = q.shape[0] // batch
    total, count = 0.0, 0
    for b in range(batch):
        for i in range(per_image):
            qi = q[b * per_image + i]
            pos = math.exp(float(qi @ k[b * per_image + i]) / tau)
            neg = sum(math.exp(float(qi @ k[b * per_image + j]) / tau) for j in range(per_image) if j != i)
            total += -math.log(pos / (pos + neg))
            count += 1
    return total / count


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize(
    ("batch", "patches", "dim", "tau"), [(1, 5, 4, 0.07), (2, 3, 8, 0.07), (3, 4, 6, 0.5)]
)
def test_patch_nce_matches_the_formula(batch: int, patches: int, dim: int, tau: float) -> None:
    g = torch.Generator().manual_seed(batch * 100 + patches)
    q = _unit(torch.randn(batch * patches, dim, generator=g, dtype=torch.float64))
    k = _unit(torch.randn(batch * patches, dim, generator=g, dtype=torch.float64))
    got = float(patch_nce_loss(q, k, batch, tau))
    want = _direct_patch_nce(q.numpy(), k.numpy(), batch, tau)
    assert got == pytest.approx(want, rel=1e-5)


def test_patch_nce_negatives_come_from_the_same_image_only() -> None:
    # Two images: image 1's keys are copies of image 0's queries. Were they negatives of image 0,
    # image 0's loss would grow; within-image negatives only: the loss equals image 0 alone.
    g = torch.Generator().manual_seed(3)
    q0 = _unit(torch.randn(4, 5, generator=g))
    k0 = _unit(torch.randn(4, 5, generator=g))
    q1 = _unit(torch.randn(4, 5, generator=g))
    alone = patch_nce_loss(q0, k0, 1, 0.07)
    both = patch_nce_loss(torch.cat([q0, q1]), torch.cat([k0, q0]), 2, 0.07)
    image1 = patch_nce_loss(q1, q0, 1, 0.07)
    assert float(both) == pytest.approx((float(alone) + float(image1)) / 2, rel=1e-6)


def test_patch_nce_is_low_when_queries_match_their_keys_and_gives_no_gradient_to_keys() -> None:
    g = torch.Generator().manual_seed(0)
    k = _unit(torch.randn(16, 8, generator=g)).requires_grad_(True)
    q = k.detach().clone().requires_grad_(True)
    matched = patch_nce_loss(q, k, 1, 0.07)
    shuffled = patch_nce_loss(q, k[torch.randperm(16, generator=g)], 1, 0.07)
    assert float(matched.detach()) < 0.2 < float(shuffled.detach())
    matched.backward()
    assert k.grad is None and q.grad is not None


def test_nce_layers_are_the_papers_five() -> None:
    gen = ResnetGenerator(ngf=4, n_blocks=9)
    layers = nce_layers(gen)
    mods = list(gen.model)
    assert layers[0] == 0 and isinstance(mods[0], torch.nn.ReflectionPad2d)  # the input pixels
    assert [mods[i].stride for i in layers[1:3]] == [(2, 2), (2, 2)]  # the two down-sampling convs
    blocks = [i for i, m in enumerate(mods) if isinstance(m, ResnetBlock)]
    assert layers[3:] == [blocks[0], blocks[4]]  # first and fifth residual block
    _, feats = run_generator(gen, torch.zeros(1, 3, 32, 32), layers, full=False)
    assert [f.shape[1] for f in feats] == [3, 8, 16, 16, 16]
    assert nce_layers(ResnetGenerator(ngf=4, n_blocks=2))[3:] == [blocks[0], blocks[1]]  # fewer blocks


def test_encode_only_stops_early_and_matches_the_full_pass() -> None:
    gen = ResnetGenerator(ngf=4, n_blocks=3).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    layers = nce_layers(gen)
    out, feats = run_generator(gen, x, layers)
    assert torch.allclose(out, gen(x))
    none, early = run_generator(gen, x, layers, full=False)
    assert none is None and all(torch.equal(a, b) for a, b in zip(feats, early))


def test_patch_sampling_is_deterministic_under_a_seed() -> None:
    feats = [torch.zeros(2, 3, 20, 20), torch.zeros(2, 8, 10, 10), torch.zeros(2, 8, 4, 4)]
    a = sample_patch_ids(feats, 64, torch.Generator().manual_seed(5))
    b = sample_patch_ids(feats, 64, torch.Generator().manual_seed(5))
    c = sample_patch_ids(feats, 64, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert [len(x) for x in a] == [64, 64, 16]  # capped by the map size
    assert all(len(set(x.tolist())) == len(x) for x in a)  # distinct positions
    heads = PatchHeads([3, 8, 8], dim=12)
    out = heads(feats, a)
    assert [tuple(o.shape) for o in out] == [(128, 12), (128, 12), (32, 12)]
    assert torch.allclose(out[1].norm(dim=1), torch.ones(128), atol=1e-4)


def test_cut_trainers_with_the_same_seed_take_identical_steps(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    def run(seed: int) -> list[dict[str, float]]:
        cfg = tiny_config(*folders, tmp_path / "x", method="fastcut", seed=seed, batch_size=2)
        cfg.validate()
        torch.manual_seed(123)  # the global RNG must not matter
        trainer = CutTrainer(cfg, CPU, steps_per_epoch=10)
        g = torch.Generator().manual_seed(9)
        a, b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        return [{k: float(v) for k, v in trainer.step(a, b).items()} for _ in range(3)]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_method_defaults_are_the_papers() -> None:
    cut = TrainConfig(domain_a="a", domain_b="b", method="cut")
    cut.validate()
    assert (cut.lambda_nce, cut.nce_idt, cut.flip_equivariance, cut.pool_size) == (1.0, True, False, 0)
    assert (cut.num_patches, cut.nce_temperature, cut.lambda_gan) == (256, 0.07, 1.0)
    fast = TrainConfig(domain_a="a", domain_b="b", method="fastcut")
    fast.validate()
    assert (fast.lambda_nce, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    explicit = TrainConfig(domain_a="a", domain_b="b", method="fastcut", nce_idt=True, lambda_nce=2.0)
    explicit.validate()
    assert (explicit.lambda_nce, explicit.nce_idt) == (2.0, True)
    assert TrainConfig(domain_a="a", domain_b="b", method="cut").directions() == ("a2b",)
    assert TrainConfig(method="cut", direction="b2a").directions() == ("b2a",)
    assert TrainConfig(method="cut", both_directions=True).directions() == ("a2b", "b2a")
    with pytest.raises(UsageError, match="did you mean 'fastcut'"):
        TrainConfig(domain_a="a", domain_b="b", method="fastcat").validate()


def test_cut_step_learns_on_a_fixed_batch(folders: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tiny_config(*folders, tmp_path / "x", method="cut", lr=1e-3, num_patches=32)
    cfg.validate()
    trainer = CutTrainer(cfg, CPU, steps_per_epoch=100)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    a = torch.nn.functional.interpolate(low[:1], size=(32, 32), mode="bilinear", align_corners=False)
    b = torch.nn.functional.interpolate(low[1:], size=(32, 32), mode="bilinear", align_corners=False)
    nce = [float(trainer.step(a, b)["nce_ab"]) for _ in range(15)]
    assert np.mean(nce[-3:]) < 0.8 * np.mean(nce[:3])
    assert set(trainer.nets) == {"G_ab", "F_ab", "D_b"}


@pytest.mark.parametrize(
    "extra", [{"method": "cut"}, {"method": "fastcut", "both_directions": True, "pool_size": 2}]
)
def test_cut_resume_is_exact(folders: tuple[Path, Path], tmp_path: Path, extra: dict) -> None:
    kw = {"max_steps": 6, "batch_size": 2, "epochs": 2, "epochs_decay": 2, "num_patches": 16, **extra}
    straight = train(tiny_config(*folders, tmp_path / "straight", **kw))
    assert straight.steps == 6
    half = train(tiny_config(*folders, tmp_path / "split", **kw), stop_after=3)
    assert half.steps == 3
    resumed = train(resume=tmp_path / "split")
    assert resumed.steps == 6
    p1, p2 = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert p1["format_version"] == 2 and p1["config"]["method"] == extra["method"]
    assert set(p1["models"]) == set(p2["models"])
    for net in p1["models"]:
        for name in p1["models"][net]:
            assert torch.equal(p1["models"][net][name], p2["models"][net][name]), (net, name)
    for key in p1["sampling"]:
        assert torch.equal(p1["sampling"][key]["ids"], p2["sampling"][key]["ids"])


def test_contrastive_generator_keys_carry_no_gradient() -> None:
    cfg = TrainConfig(method="cut", ngf=4, n_blocks=2, num_patches=8, nce_dim=6)
    cfg.apply_method_defaults()
    model = ContrastiveGenerator(ResnetGenerator(ngf=4, n_blocks=2), cfg, (16, 16))
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    fake, queries, keys = model(real, 1, torch.Generator().manual_seed(0))
    assert fake.shape == real.shape and len(queries) == len(keys) == 2  # main and identity terms
    assert all(not k.requires_grad for term in keys for k in term)
    assert all(q.requires_grad and q.shape == (8, 6) for q in queries[0][1:])


def test_a_cut_generator_exports_and_converts(folders: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(
        tiny_config(*folders, run, method="cut", max_steps=2, export=True, num_patches=16, sample_every=2)
    )
    assert (run / "samples" / "step_000002.png").is_file()  # x | G(x) | y | G(y)
    model = result.model_dir
    assert sorted(p.name for p in model.iterdir()) == ["README.md", "a2b.onnx"]  # one direction
    meta = read_onnx_metadata(model / "a2b.onnx")
    assert meta.training["method"] == "cut" and meta.training["lambda_nce"] == 1.0
    assert meta.training["nce_idt"] is True and meta.direction == "a2b"
    assert "CUT" in (model / "README.md").read_text()
    out = tmp_path / "converted"
    src = next(iter(sorted(folders[0].iterdir())))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgxlate",
            "convert",
            str(src),
            "--model",
            str(model / "a2b.onnx"),
            "--out",
            str(out),
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) == 1
    from PIL import Image

    with Image.open(src) as a, Image.open(written[0]) as b:
        assert a.size == b.size
    summary = json.loads(proc.stdout)
    assert summary  # convert's own JSON summary


def test_a_one_direction_export_over_a_pair_leaves_no_mixed_folder(tmp_path: Path) -> None:
    """Exporting a one-direction (CUT) model into a folder that holds a pair: refused without overwrite;
    with it, the old pair's other direction goes, so the folder is never two models called a pair."""
    from imgxlate.train.export import export_generators, export_pair

    cfg = {"ngf": 8, "n_blocks": 1}
    torch.manual_seed(0)
    export_pair(ResnetGenerator(**cfg), ResnetGenerator(**cfg), tmp_path / "m", "a", "b", cfg, 32, 1, 0.1)
    one = {"a2b": ResnetGenerator(**cfg)}
    with pytest.raises(UsageError, match="already holds a2b.onnx, b2a.onnx, README.md, which the export"):
        export_generators(one, tmp_path / "m", "x", "y", cfg, 32, 2, 0.2)
    assert read_onnx_metadata(str(tmp_path / "m" / "b2a.onnx")).steps == 1  # untouched
    export_generators(one, tmp_path / "m", "x", "y", cfg, 32, 2, 0.2, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "a2b.onnx"]
    assert read_onnx_metadata(str(tmp_path / "m" / "a2b.onnx")).steps == 2
