"""`imgxlate convert` on large images: --backend, --max-memory, progress inside one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgxlate.cli.app import app


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))


def _photo(folder: Path, h: int, w: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "big.png")
    return folder


def test_max_memory_tiles_with_progress_lines_and_same_result(tiny_pair: Path, tmp_path: Path) -> None:
    src = _photo(tmp_path / "in", 1000, 960)  # over one tile at 256M (696 px with the tiny model)
    model = str(tiny_pair / "a2b.onnx")
    base = ["convert", str(src), "--model", model, "--device", "cpu", "--threads", "1", "--backend", "onnxruntime"]
    whole = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "whole"), "--tile", "0"])
    assert whole.exit_code == 0, whole.output
    assert "running on CPUExecutionProvider" in whole.output
    tiled = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "tiled"), "--max-memory", "256M"])
    assert tiled.exit_code == 0, tiled.output
    lines = [ln for ln in tiled.output.splitlines() if ln.strip().startswith("tiles ")]
    assert lines and lines[-1].strip().startswith("tiles ") and "(100%)" in lines[-1]  # not a terminal: lines
    a = np.asarray(Image.open(tmp_path / "whole" / "big.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "tiled" / "big.png"), dtype=np.int16)
    # float16 spilled maps at 256M: at most a level or two on a random tiny generator, rarely
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.1  # 6.6 % of values off by one


def test_backend_option(tiny_pair: Path, tmp_path: Path) -> None:
    src = _photo(tmp_path / "in", 40, 36)
    model = str(tiny_pair / "a2b.onnx")
    bad = CliRunner().invoke(app, ["convert", str(src), "--out", str(tmp_path / "o"), "--model", model,
                                   "--backend", "tensorrt"])
    assert bad.exit_code == 2 and "'tensorrt' is not one of" in bad.output
    bad = CliRunner().invoke(app, ["convert", str(src), "--out", str(tmp_path / "o"), "--model", model,
                                   "--max-memory", "lots"])
    assert bad.exit_code == 2 and "--max-memory" in bad.output
    pytest.importorskip("openvino")
    ok = CliRunner().invoke(app, ["convert", str(src), "--out", str(tmp_path / "ov"), "--model", model,
                                  "--device", "cpu", "--threads", "1", "--backend", "openvino"])
    assert ok.exit_code == 0, ok.output
    assert "running on OpenVINO " in ok.output
    assert "on OpenVINO CPU" in ok.output.splitlines()[-1]  # the summary says what computed, not ORT's CPU provider
