"""Importing generators saved by the reference implementation (``imgxlate-train import``).

The reference generator is rebuilt here from the CycleGAN authors' published layout (one
``nn.Sequential`` named ``model``, residual blocks with an inner ``conv_block``, InstanceNorm without
parameters, transposed-convolution upsampling, zero-padded down-sampling), independently of
``imgxlate.train.networks``; the imported ONNX model must reproduce its output through imgxlate's own
inference path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imgxlate.errors import UsageError
from imgxlate.metadata import read_onnx_metadata
from imgxlate.train.reference import convert_state, import_generators, pair_names


class _RefBlock(nn.Module):
    def __init__(self, dim: int, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _ZeroPadBlock(nn.Module):
    """The reference's block with padding_type='zero': the convolutions pad, no padding layers."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.InstanceNorm2d(dim), nn.ReLU(True),
                                        nn.Conv2d(dim, dim, 3, padding=1), nn.InstanceNorm2d(dim))


class _RefGenerator(nn.Module):
    """The reference ResnetGenerator (norm instance, padding reflect), written out layer by layer."""

    def __init__(self, ngf: int, n_blocks: int, dropout: bool = False, norm: type = nn.InstanceNorm2d) -> None:
        super().__init__()
        bias = norm is nn.InstanceNorm2d
        m: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), norm(ngf), nn.ReLU(True)]
        m += [nn.Conv2d(ngf, 2 * ngf, 3, 2, 1, bias=bias), norm(2 * ngf), nn.ReLU(True)]
        m += [nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1, bias=bias), norm(4 * ngf), nn.ReLU(True)]
        m += [_RefBlock(4 * ngf, dropout) for _ in range(n_blocks)]
        m += [nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, 1, bias=bias), norm(2 * ngf), nn.ReLU(True)]
        m += [nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, 1, bias=bias), norm(ngf), nn.ReLU(True)]
        m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _reference(seed: int, ngf: int = 4, n_blocks: int = 2, **kw: object) -> _RefGenerator:
    torch.manual_seed(seed)
    gen = _RefGenerator(ngf, n_blocks, **kw).eval()
    with torch.no_grad():  # weights as large as trained ones, so a wrong mapping shows in the output
        for p in gen.parameters():
            p.normal_(0.0, 0.2)
    return gen


def _save(gen: nn.Module, path: Path, old_stats: bool = False, prefix: str = "") -> Path:
    state = {prefix + k: v for k, v in gen.state_dict().items()}
    if old_stats:  # files saved by PyTorch < 0.4 carried unused InstanceNorm statistics
        state[prefix + "model.2.running_mean"] = torch.zeros(gen.model[1].out_channels)
        state[prefix + "model.2.running_var"] = torch.ones(gen.model[1].out_channels)
    torch.save(state, path)
    return path


def _through_imgxlate(model: Path, rgb: np.ndarray, tile: int) -> np.ndarray:
    from imgxlate import load_model

    return load_model(str(model), device="cpu", threads=1).translate_rgb(rgb, tile=tile)


def _by_reference(gen: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """The reference's own inference on an image whose sides are multiples of 4: [-1, 1] in and out."""
    x = torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = gen(x)[0].permute(1, 2, 0).numpy()
    return (y + 1.0) / 2.0


@pytest.mark.parametrize("variant", ["plain", "old_stats", "data_parallel", "dropout"])
def test_an_imported_generator_reproduces_the_reference(tmp_path: Path, variant: str) -> None:
    gen = _reference(1, dropout=variant == "dropout")
    pth = _save(gen, tmp_path / "horse2zebra.pth", old_stats=variant == "old_stats",
                prefix="module." if variant == "data_parallel" else "")
    out = tmp_path / "model"
    reports = import_generators({"a2b": pth}, out)
    assert [r.path.name for r in reports] == ["a2b.onnx"]
    meta = read_onnx_metadata(str(out / "a2b.onnx"))
    assert (meta.source, meta.target, meta.domain_a, meta.domain_b) == ("horse", "zebra", "horse", "zebra")
    assert meta.architecture["upsample"] == "transpose" and meta.architecture["down_padding"] == "zeros"
    assert meta.training["imported_from"]["a2b"]["file"] == "horse2zebra.pth"
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    want = _by_reference(gen, rgb)
    assert np.abs(_through_imgxlate(out, rgb, tile=0) - want).max() < 2e-3  # whole image
    assert np.abs(_through_imgxlate(out, rgb, tile=64) - want).max() < 2e-3  # exact tiles


def test_a_pair_gets_both_files_and_a_card_that_says_where_it_came_from(tmp_path: Path) -> None:
    a2b, b2a = _save(_reference(1), tmp_path / "G_A.pth"), _save(_reference(2), tmp_path / "G_B.pth")
    out = tmp_path / "model"
    import_generators({"a2b": a2b, "b2a": b2a}, out, "summer", "winter", image_size=128)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "a2b.onnx", "b2a.onnx"]
    card = (out / "README.md").read_text()
    assert "`G_A.pth`" in card and "`G_B.pth`" in card and "0 steps" not in card
    assert read_onnx_metadata(str(out / "b2a.onnx")).target == "summer"
    assert read_onnx_metadata(str(out / "b2a.onnx")).image_size == 128


def _expect_refusal(tmp_path: Path, state: object, match: str) -> None:
    path = tmp_path / "x2y.pth"
    torch.save(state, path)
    with pytest.raises(UsageError, match=match):
        import_generators({"a2b": path}, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_other_generators_are_refused_with_what_they_are(tmp_path: Path) -> None:
    _expect_refusal(tmp_path, {"model.model.0.weight": torch.zeros(8, 3, 4, 4)}, "U-Net")
    _expect_refusal(tmp_path, _reference(1, norm=nn.BatchNorm2d).state_dict(), "batch normalization")
    bad = _reference(1).state_dict()
    bad["model.1.weight"] = torch.zeros(4, 1, 7, 7)  # a grayscale model (--input_nc 1)
    _expect_refusal(tmp_path, bad, "1 channels to 3")
    extra = {**_reference(1).state_dict(), "model.30.weight": torch.zeros(3)}
    _expect_refusal(tmp_path, extra, r"unexpected: model\.30\.weight")
    _expect_refusal(tmp_path, {"G_A": _reference(1).state_dict()}, "top-level keys are G_A")
    affine = {**_reference(1).state_dict(), "model.2.weight": torch.ones(4), "model.2.bias": torch.zeros(4)}
    _expect_refusal(tmp_path, affine, "learnt scale and shift")
    zero = _reference(1)
    zero.model[10] = _ZeroPadBlock(16)
    _expect_refusal(tmp_path, zero.state_dict(), r"zero-padded residual blocks \(padding_type='zero'\)")
    del extra["model.30.weight"]
    extra["model.11.conv_block.5.weight"] = torch.zeros(16, 16, 5, 5)  # named as in the file, not renamed
    _expect_refusal(tmp_path, extra, r"other shape: model\.11\.conv_block\.5\.weight")


def test_a_file_that_is_not_a_state_dict_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "x2y.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="not a PyTorch state dict"):
        import_generators({"a2b": junk}, tmp_path / "model")
    with pytest.raises(UsageError, match="does not exist"):  # said before any question about names
        import_generators({"a2b": tmp_path / "latest_net_G_A.pth"}, tmp_path / "model")


def test_convert_state_reports_the_sizes() -> None:
    state, config = convert_state(_reference(3, ngf=6, n_blocks=3).state_dict(), "g.pth")
    assert (config["ngf"], config["n_blocks"], config["dropout_dropped"]) == (6, 3, False)
    assert all(".block." in k for k in state if ".conv_block." in k) and "model.10.block.1.weight" in state


def test_pair_names() -> None:
    assert pair_names({"a2b": Path("horse2zebra.pth")}, None, None) == ("horse", "zebra")
    assert pair_names({"b2a": Path("zebra2horse.pth")}, None, None) == ("horse", "zebra")
    assert pair_names({"a2b": Path("summer2winter_yosemite.pth")}, None, None) == ("summer", "winter_yosemite")
    assert pair_names({"a2b": Path("latest_net_G_A.pth")}, "a", "b") == ("a", "b")
    # as the reference's download script saves a pretrained model
    got = pair_names({"a2b": Path("checkpoints/horse2zebra_pretrained/latest_net_G.pth")}, None, None)
    assert got == ("horse", "zebra")
    with pytest.raises(UsageError, match="--name-a and --name-b"):
        pair_names({"a2b": Path("latest_net_G_A.pth")}, None, None)


def _cli(*args: str, env_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = "from imgxlate.train.cli import main; main()"
    env = {**os.environ, **({"HOME": str(env_home)} if env_home else {})}
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          timeout=300, env=env, cwd=env_home)


def test_the_cli_imports_a_model_that_convert_then_uses(tmp_path: Path) -> None:
    pth = _save(_reference(4), tmp_path / "horse2zebra.pth")
    out = tmp_path / "h2z"
    done = _cli("import", "--a2b", str(pth), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert [Path(r["path"]).name for r in json.loads(done.stdout)["written"]] == ["a2b.onnx"]
    again = _cli("import", "--a2b", str(pth), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    home = _cli("import", "--a2b", "~/horse2zebra.pth", "--out", "~/h2z-home", "-q", env_home=tmp_path)
    assert home.returncode == 0, home.stderr
    assert (tmp_path / "h2z-home" / "a2b.onnx").is_file()
    missing = _cli("import", "--out", str(tmp_path / "none"))
    assert missing.returncode == 2 and "--a2b FILE, --b2a FILE" in missing.stderr
    assert not (tmp_path / "none").exists()
    from PIL import Image

    Image.fromarray(np.full((40, 52, 3), 90, np.uint8)).save(tmp_path / "horse.png")
    run = subprocess.run(
        [sys.executable, "-m", "imgxlate", "convert", str(tmp_path / "horse.png"), "--model", str(out),
         "--to", "zebra", "--out", str(tmp_path / "zebras"), "--threads", "1"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "zebras" / "horse.png").size == (52, 40)


def test_models_add_of_a_pth_file_names_the_import_command(tmp_path: Path) -> None:
    pth = _save(_reference(1), tmp_path / "horse2zebra.pth")
    env = {**os.environ, "IMGXLATE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "imgxlate", "models", "add", str(pth)], check=False,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "imgxlate-train import" in done.stderr
    absent = subprocess.run([sys.executable, "-m", "imgxlate", "models", "add", str(tmp_path / "nope.pth")],
                            check=False, capture_output=True, text=True, timeout=120, env=env)
    assert absent.returncode == 2 and "PyTorch file" not in absent.stderr and "nope.pth" in absent.stderr


def test_an_imported_pair_can_be_fine_tuned_from_its_exact_weights(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    from train_helpers import tiny_config

    from imgxlate.train.checkpoint import load_checkpoint
    from imgxlate.train.loop import train

    gens = {"a2b": _reference(5, ngf=8), "b2a": _reference(6, ngf=8)}
    files = {d: _save(g, tmp_path / f"{d}.pth") for d, g in gens.items()}
    import_generators(files, tmp_path / "pair", "x", "y")
    cfg = tiny_config(*folders, tmp_path / "tuned", init_from=str(tmp_path / "pair"), max_steps=2,
                      upsample="transpose", down_padding="zeros")
    assert train(cfg, stop_after=0).steps == 0
    start = load_checkpoint(tmp_path / "tuned")["models"]
    for direction, net in (("a2b", "G_ab"), ("b2a", "G_ba")):
        want = convert_state(gens[direction].state_dict(), direction)[0]
        assert start[net].keys() == want.keys()
        for name, value in want.items():
            assert torch.equal(start[net][name], value), (net, name)
