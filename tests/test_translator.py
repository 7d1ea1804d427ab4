"""The Python API: load_model, Translator (arrays, PIL, batches, tiling), convert_paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgxlate
from imgxlate.batch import FileResult, convert_paths
from imgxlate.errors import UsageError
from imgxlate.imaging.formats import sniff_file
from imgxlate.tiling.pad import pad_bottom_right
from imgxlate.translator import Translator, load_model


@pytest.fixture(scope="module")
def translator(tiny_pair: Path) -> Translator:
    return load_model(tiny_pair, to="zebra", device="cpu", threads=1)


def rand_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (h, w, 3)).astype(np.float32)


def test_import_is_light() -> None:
    code = (
        "import sys, imgxlate; "
        "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules); "
        "imgxlate.load_model; assert 'onnxruntime' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_package_reexports() -> None:
    assert imgxlate.load_model is load_model
    assert imgxlate.convert_paths is convert_paths
    assert imgxlate.Translator is Translator and imgxlate.FileResult is FileResult
    assert imgxlate.DEFAULT_MODEL == "vangogh2photo"


def test_translator_fields(translator: Translator) -> None:
    assert translator.metadata.target == "zebra"
    assert translator.provider == "CPUExecutionProvider"
    assert translator.engine.provider == translator.provider
    assert translator.model_path.name == "a2b.onnx"


def test_pad_reflect_and_symmetric() -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    y = pad_bottom_right(x, 4, 5)
    assert y.shape == (1, 1, 4, 5)
    np.testing.assert_array_equal(y[0, 0, 0], [0, 1, 2, 1, 0])  # reflect on the 3-wide axis
    np.testing.assert_array_equal(y[0, 0, :, 0], [0, 3, 3, 0])  # symmetric: 2 rows cannot reflect 2
    one = pad_bottom_right(np.ones((1, 3, 1, 1), np.float32), 8, 8)
    assert one.shape == (1, 3, 8, 8) and np.all(one == 1)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 7), (16, 16), (33, 18)])
def test_translate_rgb_any_size(translator: Translator, shape: tuple[int, int]) -> None:
    rgb = rand_rgb(*shape)
    out = translator.translate_rgb(rgb, tile=0)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_translate_rgb_matches_engine_on_exact_sizes(translator: Translator) -> None:
    rgb = rand_rgb(16, 24)
    x = (rgb * 2 - 1).transpose(2, 0, 1)[None]
    ref = (translator.engine.run(np.ascontiguousarray(x))[0].transpose(1, 2, 0) + 1) / 2
    np.testing.assert_allclose(translator.translate_rgb(rgb, tile=0), np.clip(ref, 0, 1), atol=1e-6)
    # The output depends on the input (the random model is not constant).
    assert np.abs(translator.translate_rgb(rand_rgb(16, 24, 1), tile=0) - ref).max() > 1e-3


def test_batch_matches_single(translator: Translator) -> None:
    frames = (np.stack([rand_rgb(12, 20, s) for s in range(3)]) * 255).round().astype(np.uint8)
    out = translator.translate_batch(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    for i in range(3):
        single = translator.translate_rgb(frames[i].astype(np.float32) / 255, tile=0)
        assert np.abs(out[i].astype(int) - np.rint(single * 255).astype(int)).max() <= 1
    rgb_batch = translator.translate_rgb_batch([f.astype(np.float32) / 255 for f in frames])
    np.testing.assert_allclose(rgb_batch[2], translator.translate_rgb(frames[2] / 255.0, tile=0), atol=1e-5)
    with pytest.raises(UsageError, match="uint8"):
        translator.translate_batch(frames.astype(np.float32))


def test_an_animations_frames_in_batches_match_one_at_a_time(
    translator: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from imgxlate.imaging import read_image

    frames = [(rand_rgb(14, 18, s) * 255).round().astype(np.uint8) for s in range(5)]
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(tmp_path / "a.png", save_all=True, append_images=ims[1:], duration=50)
    decoded = read_image(tmp_path / "a.png")
    seen: list[tuple[int, int]] = []
    translator.frame_progress = lambda done, total: seen.append((done, total))
    try:
        single = translator.translate_decoded(decoded)
        batched = translator.translate_decoded(decoded, batch_size=2)  # chunks of 2, 2 and 1
    finally:
        translator.frame_progress = None
    assert isinstance(single, list) and isinstance(batched, list) and len(single) == len(batched) == 5
    for a, b in zip(single, batched):
        assert a.dtype == b.dtype == np.uint8 and np.abs(a.astype(int) - b).max() <= 1
    assert seen == [(i, 5) for i in range(1, 6)] + [(2, 5), (4, 5), (5, 5)]
    still = read_image(tmp_path / "a.png", frames=False)
    assert isinstance(translator.translate_decoded(still, batch_size=2), np.ndarray)

    def no_batch(frames: np.ndarray) -> np.ndarray:
        raise AssertionError("translate_batch used with blend tiling")

    # blend tiling asked for: frame by frame through translate_rgb (translate_batch would tile exactly)
    monkeypatch.setattr(translator, "translate_batch", no_batch)
    blended = translator.translate_decoded(decoded, batch_size=2, tiling="blend")
    assert len(blended) == 5 and all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(single, blended))


def test_on_cuda_with_torch_the_tiler_keeps_its_maps_on_the_device(
    tiny_pair: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The choice of store: a DeviceStore where the engine runs on CUDA and torch has CUDA (here both
    stand-ins, with torch's CPU device), else host memory; the result is the whole image's."""
    pytest.importorskip("torch")
    from imgxlate.tiling.exact import MapStore, device
    from imgxlate.tiling.exact.device import DeviceStore

    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    rgb = (rand_rgb(40, 52, 3) * 255).round().astype(np.uint8)
    whole = t.translate_rgb(rgb, tile=0, dtype=np.uint8)
    assert isinstance(t._store(40, 52), MapStore)  # on the CPU: host memory
    monkeypatch.setattr(type(t.engine), "on_cuda", property(lambda self: True))
    monkeypatch.setattr(device, "cuda_device", lambda: "cpu")
    assert isinstance(t._store(40, 52), DeviceStore)
    tiled = t.translate_rgb(rgb, tile=16, dtype=np.uint8)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    monkeypatch.setattr(device, "cuda_device", lambda: None)  # torch without CUDA: host memory
    assert isinstance(t._store(40, 52), MapStore)


def test_translate_pil_keeps_mode_size_and_alpha(translator: Translator) -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    out = translator.translate(Image.fromarray(rgba, "RGBA"))
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (13, 9)
    np.testing.assert_array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    gray = translator.translate(Image.fromarray(rgba[..., 0], "L"))
    assert gray.mode == "L" and gray.size == (13, 9)


def test_translate_ndarray_keeps_dtype_and_channels(translator: Translator) -> None:
    rng = np.random.default_rng(4)
    u16 = rng.integers(0, 65536, (10, 11, 3), dtype=np.uint16)
    out = translator.translate(u16)
    assert out.dtype == np.uint16 and out.shape == u16.shape
    la = rng.integers(0, 256, (10, 11, 2), dtype=np.uint8)
    out2 = translator.translate(la)
    assert out2.shape == la.shape
    np.testing.assert_array_equal(out2[..., 1], la[..., 1])


def test_exact_tiling_equals_whole(translator: Translator) -> None:
    rgb = rand_rgb(44, 52, 5)
    whole = translator.translate_rgb(rgb, tile=0)
    tiled = translator.translate_rgb(rgb, tile=16, tiling="exact")
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, atol=2e-4)


def test_blend_tiling_runs_and_is_close(translator: Translator) -> None:
    rgb = rand_rgb(44, 52, 6)
    whole = translator.translate_rgb(rgb, tile=0)
    blended = translator.translate_rgb(rgb, tile=24, tile_overlap=8, tiling="blend")
    assert blended.shape == whole.shape
    # It is tiling.run_blended over the padded whole-image runner, mapped back to [0, 1].
    from imgxlate.tiling.blend import run_blended

    ref = run_blended(translator._run_whole, (rgb * 2 - 1).transpose(2, 0, 1), 24, 8, 4)
    np.testing.assert_allclose(blended, np.clip((ref.transpose(1, 2, 0) + 1) / 2, 0, 1), atol=1e-6)
    # Per-tile InstanceNorm statistics differ (random weights, noise input): only correlated with whole.
    assert np.corrcoef(blended.ravel(), whole.ravel())[0, 1] > 0.5
    with pytest.raises(UsageError, match="unknown tiling"):
        translator.translate_rgb(rgb, tile=24, tiling="bogus")


def test_auto_tile_is_zero_for_small_images(translator: Translator) -> None:
    assert translator.auto_tile(256, 256) == 0
    assert translator._tile_for(100, 100, 128) == 0  # one tile covers it: run whole


def test_sniff_file(tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    Image.new("RGBA", (4, 4)).save(p, format="PNG")  # a PNG that lies about its suffix
    assert sniff_file(p) == "PNG"
    (tmp_path / "t.jpg").write_text("text")
    assert sniff_file(tmp_path / "t.jpg") == ""
    assert sniff_file(tmp_path / "missing.png") == ""


def test_convert_paths_order_statuses_and_batching(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in [("a.png", (20, 16)), ("b.png", (20, 16)), ("c.png", (20, 16)), ("sub/d.jpg", (9, 7))]:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(src / name)
    (src / "e.png").write_bytes(b"corrupt")
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    out = tmp_path / "out"
    batches: list[int] = []
    run_batch = t.translate_rgb_batch
    t.translate_rgb_batch = lambda rgbs: (batches.append(len(rgbs)), run_batch(rgbs))[1]  # type: ignore[method-assign]
    results = list(convert_paths([src], out, translator=t, batch_size=3, workers=2))
    assert batches == [3]  # a, b and c (one size) in one run; the corrupt e.png and d.jpg alone
    assert [r.src.name for r in results] == ["a.png", "b.png", "c.png", "e.png", "d.jpg"]
    assert [r.status for r in results] == ["converted"] * 3 + ["failed", "converted"]
    assert "e.png" in results[3].reason or "image" in results[3].reason
    assert (results[0].width, results[0].height) == (16, 20)
    assert Image.open(out / "sub" / "d.jpg").size == (7, 9)
    # Batched results equal one-at-a-time results.
    single = list(convert_paths([src], tmp_path / "single", translator=t, batch_size=1))
    assert batches == [3] and [r.status for r in single] == [r.status for r in results]
    for name in ("a.png", "b.png", "c.png"):
        np.testing.assert_allclose(np.asarray(Image.open(out / name)).astype(int),
                                   np.asarray(Image.open(tmp_path / "single" / name)).astype(int), atol=1)
    again = list(convert_paths([src], out, translator=t))
    assert [r.status for r in again] == ["skipped"] * 3 + ["failed", "skipped"]
    with pytest.raises(UsageError, match="no images found"):
        list(convert_paths([src], out, translator=t, include=["*.gif"]))


def _fixed_size_copy(src: Path, dst: Path, size: int) -> Path:
    """The generator with a static (1, 3, size, size) input, as exporters without dynamic axes write it."""
    import onnx

    model = onnx.load(str(src))
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for dim, v in zip(dims, (1, 3, size, size)):
            dim.Clear()
            dim.dim_value = v
    del model.metadata_props[:]
    del model.graph.value_info[:]
    onnx.save(model, str(dst))
    return dst


def test_fixed_size_model_is_resized_with_a_warning(tiny_pair: Path, tmp_path: Path) -> None:
    path = _fixed_size_copy(tiny_pair / "a2b.onnx", tmp_path / "fixed.onnx", 16)
    with pytest.warns(UserWarning, match="no imgxlate metadata"):
        t = load_model(path, device="cpu", threads=1)
    assert t.engine.fixed_size == (16, 16) and t.engine.fixed_batch == 1
    same = rand_rgb(16, 16)
    np.testing.assert_allclose(t.translate_rgb(same), load_model(tiny_pair, to="zebra", device="cpu",
                                                                 threads=1).translate_rgb(same, tile=0), atol=1e-5)
    with pytest.warns(UserWarning, match="only accepts 16x16 inputs"):
        out = t.translate_rgb(rand_rgb(30, 21), tile=8)  # tiling is not applied to a fixed-size model
    assert out.shape == (30, 21, 3)
    frames = (np.stack([rand_rgb(10, 12, s) for s in range(2)]) * 255).astype(np.uint8)
    assert t.translate_batch(frames).shape == frames.shape  # batch of 2 through a batch-1 model
    assert [n.kind for n in t.notes] == ["no-metadata", "fallback"]  # notes are data, not sentences
    assert t.warnings == [n.text for n in t.notes]


def test_exact_tiler_bug_is_raised_not_turned_into_blend(
    tiny_pair: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgxlate.tiling import exact

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise AttributeError("a programming error inside the tiler")

    monkeypatch.setattr(exact.ExactTiler, "__init__", broken)
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    with pytest.raises(AttributeError, match="programming error"):
        t.translate_rgb(rand_rgb(20, 20), tile=8, tiling="exact")
    assert not any(n.kind == "fallback" for n in t.notes)


def test_exact_tiling_not_possible_falls_back_with_a_note(tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgxlate.errors import InvalidModelError
    from imgxlate.tiling import exact

    def uncuttable(self: object, *args: object, **kwargs: object) -> None:
        raise InvalidModelError("no InstanceNormalization to cut at")

    monkeypatch.setattr(exact.ExactTiler, "__init__", uncuttable)
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    with pytest.warns(UserWarning, match="using overlap-blend tiling"):
        out = t.translate_rgb(rand_rgb(20, 20), tile=8, tile_overlap=2, tiling="exact")
    assert out.shape == (20, 20, 3)
    assert [n.kind for n in t.notes] == ["fallback"]


def test_whole_run_out_of_memory_is_retried_in_exact_tiles(
    tiny_pair: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend="onnxruntime")
    rgb = rand_rgb(40, 36, 9)
    whole = t.translate_rgb(rgb, tile=0)

    def oom(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer")

    monkeypatch.setattr(t.engine, "run", oom)
    with pytest.warns(UserWarning, match="ran out of memory; retrying it in exact tiles of"):
        out = t.translate_rgb(rgb, tile=0)
    np.testing.assert_allclose(out, whole, atol=2e-4)
    assert sum("ran out of memory" in w for w in t.warnings) == 1

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("some other failure")

    monkeypatch.setattr(t.engine, "run", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        t.translate_rgb(rgb, tile=0)


def test_max_memory_tiles_and_reports_progress(tiny_pair: Path) -> None:
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend="onnxruntime")
    rgb = rand_rgb(1000, 960, 10)  # over one tile at 256M (696 px with the tiny model)
    whole = t.translate_rgb(rgb, tile=0)
    t.max_memory = 256 << 20
    assert 0 < t.auto_tile(1000, 960) <= t.auto_tile(1000, 960, "blend") < 960
    seen: list[tuple[int, int]] = []
    t.tile_progress = lambda done, total: seen.append((done, total))
    out = t.translate_rgb(rgb)
    # 256M: the kept maps are spilled to a file in float16; a random tiny generator amplifies its
    # rounding to ~1.5 levels at most, rarely (the bundled model: 0.26 of a level, docs/tiling.md)
    assert t.tiling_choice(1000, 960).store == "spill"
    err = np.abs(out - whole)
    assert float(err.max()) < 8e-3 and 10 * np.log10(1 / float(np.mean(err**2))) > 60  # dB over [0, 1]
    assert seen and seen[-1][0] == seen[-1][1] > 1
    # blend tiles are counted too (a 24 MP blend run used to show nothing for minutes)
    seen.clear()
    t.translate_rgb(rgb, tile=256, tiling="blend")
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1)) and seen[-1][0] == seen[-1][1] > 1


def test_a_batch_that_does_not_fit_the_budget_runs_one_image_at_a_time(tiny_pair: Path) -> None:
    """translate_rgb_batch (the batch path of convert, 4 images a run on CUDA) within the memory
    budget: three images that fit one by one but not together run one by one, with the same result."""
    from imgxlate.tiling.auto import whole_need

    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend="onnxruntime")
    images = [rand_rgb(260, 300, seed) for seed in range(3)]
    t.max_memory = 64 << 30
    together = t.translate_rgb_batch(images)
    one, three = whole_need(260, 300, 8), whole_need(260, 300, 8, count=3)  # ngf 8: the tiny pair
    t.max_memory = (one + three) // 2
    runs: list[int] = []
    run_whole = t._run_whole
    t._run_whole = lambda x: (runs.append(len(x)), run_whole(x))[1]
    apart = t.translate_rgb_batch(images)
    assert runs == [1, 1, 1]
    assert all(np.array_equal(a, b) for a, b in zip(together, apart, strict=True))
    # a batch is never tiled (its images were chosen for whole runs, --tile 0 included): a budget
    # not even one of them fits still gives whole runs, one each
    t.max_memory = 1  # automatic tiling would cut these into 256 px tiles
    assert t.auto_tile(260, 300) > 0
    runs.clear()
    apart = t.translate_rgb_batch(images)
    assert runs == [1, 1, 1]
    assert all(np.array_equal(a, b) for a, b in zip(together, apart, strict=True))


def test_a_batch_that_runs_out_of_memory_goes_one_image_at_a_time(tiny_pair: Path) -> None:
    """The estimate let a batch through and the runtime ran out of memory: each image alone (as
    --batch-size 1 would), not the whole group failed."""
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend="onnxruntime")
    images = [rand_rgb(40, 48, seed) for seed in range(3)]
    alone = [t.translate_rgb(a) for a in images]
    run_whole = t._run_whole

    def no_room_for_three(x: np.ndarray) -> np.ndarray:
        if len(x) > 1:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory")
        return run_whole(x)

    t._run_whole = no_room_for_three  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="a batch of 3 images ran out of memory"):
        out = t.translate_rgb_batch(images)
    assert all(np.array_equal(a, b) for a, b in zip(alone, out, strict=True))
    assert any(n.kind == "fallback" and "batch of 3" in n.text for n in t.notes)


def test_a_video_batch_that_runs_out_of_memory_goes_one_frame_at_a_time(tiny_pair: Path) -> None:
    """The same for a video's frames (a CUDA out-of-memory on a batch of 4 frames killed the video)."""
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend="onnxruntime")
    frames = np.stack([(rand_rgb(40, 48, seed) * 255).astype(np.uint8) for seed in range(3)])
    alone = np.stack([t.translate_rgb(f, dtype=np.uint8) for f in frames])
    run_whole = t._run_whole

    def no_room_for_three(x: np.ndarray) -> np.ndarray:
        if len(x) > 1:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
                               "while running Conv node.\nFailed to allocate memory for requested buffer")
        return run_whole(x)

    t._run_whole = no_room_for_three  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="a batch of 3 frames ran out of memory"):
        out = t.translate_batch(frames)
    assert np.array_equal(out, alone)
    # one frame alone out of memory (a video's batches are often of one): retried in exact tiles, as
    # translate_rgb does for an image, not a failed video
    def whole_never_fits(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory")

    t._run_whole = whole_never_fits  # type: ignore[method-assign]
    out = t.translate_batch(frames[:1])
    assert np.abs(out.astype(int) - alone[:1]).max() <= 1  # exact tiles: the whole run's result
    t._run_whole = lambda x: (_ for _ in ()).throw(RuntimeError("a bug, not memory"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug"):
        t.translate_batch(frames)


def test_a_runtime_out_of_memory_error_reads_as_one() -> None:
    """ONNX Runtime's CUDA out-of-memory is a RuntimeError whose 'Failed to allocate' comes after 300
    characters of context: the file's reason is the short advice, as for numpy's MemoryError."""
    from imgxlate.batch import failure_reason

    long = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
            + "Name:'/model/Conv_12' " * 20 + "Status Message: Failed to allocate memory for requested buffer of size 1")
    for exc in (RuntimeError(long), MemoryError()):
        assert failure_reason(exc).startswith("out of memory; use a smaller --tile")
    # a file error whose path happens to read like one is the file error
    denied = PermissionError(13, "Permission denied", "/photos/Failed to allocate/x.png")
    assert failure_reason(denied).startswith("'/photos/Failed to allocate/x.png': Permission denied; check the")


@pytest.mark.parametrize("budget", [1, 1 << 30])
def test_read_ahead_is_bounded_by_the_bytes_it_holds(
    tiny_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Images decoded ahead of the one being translated: up to the whole lookahead (workers + batch
    = 3) while they are small against PREFETCH_BYTES, at most one when over it (also before the first
    image's size is known)."""
    import threading

    from imgxlate import batch, imaging

    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        Image.fromarray(np.full((24, 20, 3), 30 * i, np.uint8)).save(src / f"{i}.png")
    monkeypatch.setattr(batch, "PREFETCH_BYTES", budget)
    real_read = imaging.read_image
    lock, decoded, ahead = threading.Lock(), [], []

    def read(path: Path, **kw: object) -> object:
        out = real_read(path, **kw)
        with lock:
            decoded.append(Path(path).name)
        return out

    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    real_translate = t.translate_rgb

    def translate(rgb: np.ndarray, **kw: object) -> np.ndarray:
        import time

        time.sleep(0.1)  # let the pool read ahead as far as it is allowed to
        with lock:
            ahead.append(len(decoded) - len(ahead) - 1)
        return real_translate(rgb, **kw)

    monkeypatch.setattr(imaging, "read_image", read)
    monkeypatch.setattr(t, "translate_rgb", translate)
    results = list(convert_paths([src], tmp_path / "out", translator=t, workers=2, batch_size=1))
    assert [r.status for r in results] == ["converted"] * 8
    if budget == 1:
        assert max(ahead) <= 1, ahead
    else:
        assert max(ahead) >= 2, ahead  # the read-ahead itself works (so the bound above is a bound)


def test_whole_runs_take_more_pixels_with_phase_form_upsampling(tiny_pair_resize: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A resize-upsampling model on ONNX Runtime's CPU provider runs its up-sampling blocks in phase
    form (imgxlate.graphs.rewrite), which holds no up-sampled copies: a whole run needs ~3 maps per
    pixel instead of 8, so an image between the two estimates runs whole, and tiled without it."""
    from imgxlate.graphs.rewrite import ENV
    from imgxlate.tiling.auto import WHOLE_MAPS, WHOLE_MAPS_PHASED, whole_need

    t = load_model(tiny_pair_resize, to="orange", device="cpu", threads=1, backend="onnxruntime")
    assert "subpixel" in t.engine.runner.rewrites
    budget = (whole_need(260, 300, 8, maps=WHOLE_MAPS_PHASED) + whole_need(260, 300, 8, maps=WHOLE_MAPS)) // 2
    t.max_memory = budget
    assert t.tiling_choice(260, 300).tile == 0
    monkeypatch.setenv(ENV, "0")
    plain = load_model(tiny_pair_resize, to="orange", device="cpu", threads=1, backend="onnxruntime")
    plain.max_memory = budget
    assert plain.engine.runner.rewrites == () and plain.tiling_choice(260, 300).tile > 0


def test_the_python_api_refuses_what_it_would_get_wrong(translator: Translator, tmp_path: Path) -> None:
    """0..255 floats became a flat gray image, PIL mode F came back 65535 times too bright, a file name
    was called "an array of shape ()", and convert_paths("folder") walked the name letter by letter."""
    from imgxlate.errors import ImageReadError

    rgb = (rand_rgb(24, 32) * 255).astype(np.uint8)
    with pytest.raises(ImageReadError, match="floats are read as 0..1; divide 8-bit values by 255"):
        translator.translate(rgb.astype(np.float32))
    with pytest.raises(ImageReadError, match="mode F"):
        translator.translate(Image.fromarray(rgb[..., 0]).convert("F"))
    gray01 = Image.fromarray(rgb[..., 0].astype(np.float32) / 255, mode="F")
    out = translator.translate(gray01)
    assert out.mode == "F" and 0.0 <= float(np.asarray(out).min()) and float(np.asarray(out).max()) <= 1.0
    np.testing.assert_allclose(np.asarray(out), translator.translate(rgb[..., 0].astype(np.float32) / 255), atol=1e-6)
    for wrong in ("photo.jpg", tmp_path, b"\xff\xd8", None, [[1, 2], [3, 4]]):
        with pytest.raises(UsageError, match="translate takes a PIL image or a numpy array"):
            translator.translate(wrong)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "a.png")
    for one in (str(tmp_path / "in"), tmp_path / "in"):
        results = list(convert_paths(one, tmp_path / "out", translator=translator, overwrite=True))
        assert [r.status for r in results] == ["converted"]


def test_load_model_and_translate_check_their_arguments(tiny_pair: Path, tmp_path: Path) -> None:
    import onnx

    with pytest.raises(UsageError, match="threads must be a whole number"):
        load_model(tiny_pair, threads="2")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="model is an empty name"):
        load_model("")
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    with pytest.raises(UsageError, match="unknown tiling 'exactt'"):
        t.translate(rand_rgb(8, 8), tiling="exactt")  # no tiles needed: the typo is still the caller's
    bare = onnx.load(str(tiny_pair / "a2b.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.warns(UserWarning, match="--to zebra ignored"):
        load_model(tmp_path / "bare.onnx", to="zebra", device="cpu", threads=1)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_one_translator_shared_by_threads_gives_what_it_gives_alone(tiny_pair: Path, backend: str) -> None:
    """A service shares one Translator among worker threads. OpenVINO's one infer request handed one
    thread's outputs to another (wrong sizes, wrong pixels), and exact tiles of different image sizes
    crashed or mixed up the executor's per-run sizes: every call from threads must equal the same
    call made alone, whole and tiled."""
    from concurrent.futures import ThreadPoolExecutor

    if backend == "openvino":
        pytest.importorskip("openvino")
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1, backend=backend)
    images = [rand_rgb(h, w, seed) for seed, (h, w) in enumerate([(40, 52), (28, 36), (44, 24), (32, 32)])]
    calls = [(image, tile) for image in images for tile in (0, 12)] * 3
    alone = [t.translate_rgb(image, tile=tile) for image, tile in calls]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda call: t.translate_rgb(call[0], tile=call[1]), calls))
    for (image, tile), a, b in zip(calls, alone, together):
        assert b.shape == image.shape, (tile, image.shape, b.shape)
        np.testing.assert_array_equal(b, a)


def test_wrong_arguments_are_usage_errors_that_say_what_is_wanted(translator: Translator, tiny_pair: Path,
                                                                   tmp_path: Path) -> None:
    """They were TypeErrors and ValueErrors from deep inside (a str tile compared with an int, an
    empty batch stacked, a thread pool of 0 workers), or a message naming Engine.run."""
    rgb = rand_rgb(16, 24)
    for tile in ("64", 64.0, True):
        with pytest.raises(UsageError, match="tile is an edge in pixels"):
            translator.translate_rgb(rgb, tile=tile)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="model is a name, a .onnx file or a pair folder"):
        load_model(123)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="threads must be a whole number >= 0"):
        load_model(tiny_pair, threads=-1)
    assert translator.translate_rgb_batch([]) == []
    for batch in ([rgb, rgb[:8]], [rgb[..., 0], rgb[..., 0]], [np.dstack([rgb, rgb[..., :1]])] * 2):
        with pytest.raises(UsageError, match="translate_rgb_batch takes .H, W, 3. RGB images of one size"):
            translator.translate_rgb_batch(batch)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(UsageError, match="workers is the number of decode/encode threads"):
        list(convert_paths([tmp_path / "a.png"], tmp_path / "out", translator=translator, workers=0))
