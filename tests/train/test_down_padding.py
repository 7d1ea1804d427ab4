"""Reflect padding of the stride-2 down-sampling convolutions: no border lines, old checkpoints load,
the exported graph still tiles exactly and passes the exporter's parity check."""

from pathlib import Path

import numpy as np
import pytest
import torch

from imgxlate.train.config import TrainConfig
from imgxlate.train.networks import ResnetGenerator, build_generator, init_weights


def _gen(down_padding: str, seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)
    return init_weights(ResnetGenerator(ngf=8, n_blocks=2, upsample="resize", down_padding=down_padding), 0.3)


def test_reflect_is_the_default_and_recorded() -> None:
    assert ResnetGenerator(ngf=8, n_blocks=1).config["down_padding"] == "reflect"
    assert TrainConfig().down_padding == "reflect"
    assert TrainConfig().generator_config()["down_padding"] == "reflect"


def test_old_configs_rebuild_with_zero_padding() -> None:
    old = _gen("zeros")
    config = {k: v for k, v in old.config.items() if k != "down_padding"}  # as written before the option
    rebuilt = build_generator(config)
    assert rebuilt.config["down_padding"] == "zeros"
    rebuilt.load_state_dict(old.state_dict())  # same parameter names and shapes
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    torch.testing.assert_close(rebuilt(x), old(x))
    # a training config from an old checkpoint resumes with zero padding too
    assert TrainConfig.from_dict({"ngf": 8}).down_padding == "zeros"
    assert TrainConfig.from_dict({"ngf": 8, "down_padding": "reflect"}).down_padding == "reflect"
    # both paddings share the state-dict layout, so a new model's weights load into an old layout
    build_generator(_gen("reflect").config).load_state_dict(old.state_dict())


@pytest.mark.parametrize(("padding", "lines"), [("zeros", True), ("reflect", False)])
def test_constant_image_has_no_border_lines(padding: str, lines: bool) -> None:
    # With every other pad a reflection and nearest upsampling, a flat input can only give a non-flat
    # output through the zero padding of the stride-2 convs: the first (left/top) outputs see zeros.
    g = _gen(padding).eval()
    with torch.no_grad():
        y = g(torch.full((1, 3, 48, 64), 0.3))[0]
    spread = float((y - y[:, 24:, 32:].mean(dim=(1, 2), keepdim=True)).abs().amax())
    if lines:
        assert spread > 1e-3
        edge = (y[:, :, :2] - y[:, :, 32:34]).abs().mean()  # left columns vs interior
        right = (y[:, :, -2:] - y[:, :, 32:34]).abs().mean()
        assert edge > 10 * right  # left-sided: the last outputs see no padding
    else:
        assert spread < 1e-5


def test_reflect_export_tiles_exactly(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from imgxlate.tiling import ExactTiler, pad_to_multiple
    from imgxlate.train.export import export_pair

    g_ab, g_ba = _gen("reflect", 1), _gen("reflect", 2)
    # export_pair runs onnx.checker and the ONNX Runtime vs PyTorch parity check; it raises on failure
    reports = export_pair(g_ab, g_ba, tmp_path, "a", "b", g_ab.config, image_size=32, steps=0, epochs=0.0)
    assert all(r.max_abs_diff < 1e-4 for r in reports)
    path = tmp_path / "a2b.onnx"
    tiler = ExactTiler(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w, tile in [(37, 53, 8), (30, 22, 64), (64, 48, 16), (9, 13, 4)]:
        img = np.random.default_rng(h * w).uniform(-1, 1, (3, h, w)).astype(np.float32)
        padded, _ = pad_to_multiple(img)
        whole = sess.run(None, {"input": padded[None]})[0][0, :, :h, :w]
        out = tiler.run(img, tile=tile)
        assert out.shape == whole.shape
        assert float(np.abs(out - whole).max()) <= 1e-4, (h, w, tile)
