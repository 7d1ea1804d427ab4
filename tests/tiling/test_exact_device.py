"""Exact tiling with the maps and tiles kept on a device (imgxlate.tiling.exact.device).

On a machine without a GPU the same code runs with torch CPU tensors: every segment is bound by
address and its output handed back through DLPack, as on CUDA. Checked against the whole-image run
(the independent reference) and against the host-staged tiler; the CUDA run itself is in tests/gpu.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgxlate.tiling.exact import ExactTiler, MapStore
from imgxlate.tiling.exact import executor as executor_mod
from imgxlate.tiling.exact import plan as plan_mod
from imgxlate.tiling.exact.device import DeviceArrays, DeviceStore
from imgxlate.tiling.pad import pad_to_multiple

torch = pytest.importorskip("torch", reason="the device store needs torch (the train extra)")
ort = pytest.importorskip("onnxruntime")
TOL = 1e-4


class Counting:
    """A runner factory that counts host (``run``) and device (``run_device``) calls."""

    def __init__(self) -> None:
        from imgxlate.engine import runner_factory

        self.base = runner_factory("cpu", threads=1, backend="onnxruntime")
        self.calls = {"run": 0, "run_device": 0}
        self.strict = True  # every device call feeds at least one tensor (a map window)

    def __call__(self, model: bytes) -> Any:
        runner, calls, counting = self.base(model), self.calls, self

        class Wrapped:
            def run(self, feeds: dict[str, Any]) -> list[Any]:
                calls["run"] += 1
                return runner.run(feeds)

            def run_device(self, feeds: dict[str, Any]) -> list[Any]:
                calls["run_device"] += 1
                if counting.strict:  # maps stay tensors
                    assert any(isinstance(v, torch.Tensor) for v in feeds.values())
                return runner.run_device(feeds)

            def release(self) -> None:
                runner.release()

        return Wrapped()


@pytest.fixture(scope="module", params=["tiny_pair", "tiny_pair_resize"])
def model(request: pytest.FixtureRequest) -> tuple[ExactTiler, Counting, object]:
    path = Path(request.getfixturevalue(request.param)) / "a2b.onnx"
    counting = Counting()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ExactTiler(path, counting), counting, sess


def _whole(sess: Any, img: np.ndarray) -> np.ndarray:
    padded, (h, w) = pad_to_multiple(img)
    return sess.run(None, {"input": padded[None]})[0][0, :, :h, :w]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (3, h, w)).astype(np.float32)


def device_store(dtype: str = "float32") -> DeviceStore:
    return DeviceStore(DeviceArrays("cpu"), dtype)


@pytest.mark.parametrize(("h", "w", "tile"), [(37, 53, 8), (37, 53, 20), (30, 22, 64), (9, 13, 4), (64, 48, 16)])
def test_device_tiles_match_the_whole_image_and_the_host_tiler(
    model: tuple[ExactTiler, Counting, object], h: int, w: int, tile: int
) -> None:
    tiler, counting, sess = model
    img = _image(h, w, seed=h + w)
    host = tiler.run(img, tile=tile)
    counting.calls.update(run=0, run_device=0)
    out = tiler.run(img, tile=tile, store=device_store())
    assert isinstance(out, np.ndarray) and out.shape == (3, h, w) and out.dtype == np.float32
    assert float(np.abs(out - _whole(sess, img)).max()) <= TOL
    np.testing.assert_allclose(out, host, atol=1e-5)
    assert counting.calls["run"] == 0 and counting.calls["run_device"] > 0  # nothing staged through the host


def test_many_small_tiles_half_precision_maps_and_a_sink(
    model: tuple[ExactTiler, Counting, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiler, _, sess = model
    monkeypatch.setattr(plan_mod, "MIN_BOTTLENECK_TILE", 1)
    rgb = np.random.default_rng(5).integers(0, 256, (41, 50, 3), dtype=np.uint8)
    x = np.ascontiguousarray((rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1))
    host16 = tiler.run(rgb, tile=12, hwc=True, scale=1 / 127.5, offset=-1.0, store=MapStore("float16"))
    got = np.full((3, 41, 50), np.nan, np.float32)

    def sink(region: tuple[int, int, int, int], tile: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        assert isinstance(tile, np.ndarray) and np.isnan(got[:, y0:y1, x0:x1]).all()
        got[:, y0:y1, x0:x1] = tile

    seen: list[int] = []
    assert tiler.run(rgb, tile=12, hwc=True, scale=1 / 127.5, offset=-1.0, sink=sink,
                     store=device_store("float16"), progress=lambda d, t: seen.append(d)) is None
    assert len(seen) > 100
    assert float(np.abs(got - _whole(sess, x)).max()) <= 2e-2  # float16 maps, as on the host
    np.testing.assert_allclose(got, host16, atol=2e-3)


def test_ops_numpy_runs_on_the_host_in_a_device_run(
    model: tuple[ExactTiler, Counting, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a segment cannot run fused (its pre ops go through numpy), its input comes down and its
    output goes back up; the result stays exact."""
    tiler, counting, sess = model
    monkeypatch.setattr(executor_mod.Executor, "_fused_pre", lambda *args, **kwargs: None)
    monkeypatch.setattr(counting, "strict", False)  # those segments are fed from the host
    img = _image(29, 34, seed=2)
    out = tiler.run(img, tile=16, store=device_store())
    assert float(np.abs(out - _whole(sess, img)).max()) <= TOL


def test_the_device_store_keeps_tensors_in_its_dtype() -> None:
    store = device_store("float16")
    store.create("m", (1, 2, 6, 5))
    value = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    store.write("m", (2, 5, 0, 5), value)
    got = store.read("m", (2, 5, 1, 4))
    assert got.dtype == torch.float16 and torch.equal(got.float(), value[:, :, :, 1:4])
    store.drop("m")
    assert store.maps == {}
    with pytest.raises(ValueError, match="float32 or float16"):
        DeviceStore(DeviceArrays("cpu"), "float64")


def test_host_staging_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgxlate.tiling.exact import device

    device.cuda_device.cache_clear()
    try:
        monkeypatch.setenv("IMGXLATE_DEVICE_TILES", "0")
        assert device.cuda_device() is None
        device.cuda_device.cache_clear()
        monkeypatch.delenv("IMGXLATE_DEVICE_TILES")
        assert device.cuda_device() == ("cuda:0" if torch.cuda.is_available() else None)
    finally:
        device.cuda_device.cache_clear()
