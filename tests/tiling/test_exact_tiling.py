"""Exact tiling == whole-image ONNX Runtime run (tiny random generators, both upsampling kinds)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from imgxlate.errors import InvalidModelError
from imgxlate.tiling import exact
from imgxlate.tiling.exact import ExactTiler
from imgxlate.tiling.exact import plan as plan_mod
from imgxlate.tiling.pad import pad_to_multiple

ort = pytest.importorskip("onnxruntime")
TOL = 1e-4


@pytest.fixture(scope="module", params=["tiny_pair", "tiny_pair_resize"])
def model(request: pytest.FixtureRequest) -> tuple[ExactTiler, object]:
    path = Path(request.getfixturevalue(request.param)) / "a2b.onnx"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ExactTiler(path), sess


def _whole(sess: object, img: np.ndarray) -> np.ndarray:
    padded, (h, w) = pad_to_multiple(img)
    return sess.run(None, {"input": padded[None]})[0][0, :, :h, :w]  # type: ignore[attr-defined]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (3, h, w)).astype(np.float32)


def test_structure(model: tuple[ExactTiler, object]) -> None:
    tiler, _ = model
    assert tiler.n_norm_layers == 9  # stem, 2 down, 2 blocks x 2, 2 up
    assert tiler.multiple == 4


def test_segment_graphs_run_rewritten_on_the_cpu(model: tuple[ExactTiler, object]) -> None:
    """The tiler's runners come from engine.make_runner, so the head's segment graph goes through
    imgxlate.graphs.rewrite like a whole model (the other tests compare against the file as it is)."""
    tiler, sess = model
    img = _image(37, 53, seed=7)
    assert float(np.abs(tiler.run(img, tile=16) - _whole(sess, img)).max()) <= TOL
    assert "rowconv" in {name for runner in tiler.executor.runners.cache.values() for name in runner.rewrites}


@pytest.mark.parametrize(
    ("h", "w", "tile"),
    [
        (37, 53, 8),  # odd size, many tiles
        (37, 53, 20),  # tile not dividing the size
        (30, 22, 64),  # not a multiple of 4, smaller than a tile
        (32, 32, 32),  # exactly one tile
        (64, 48, 16),  # a few tiles
        (9, 13, 4),  # tiny image, 1-pixel bottleneck tiles at the border
    ],
)
def test_exact_matches_whole(model: tuple[ExactTiler, object], h: int, w: int, tile: int) -> None:
    tiler, sess = model
    img = _image(h, w, seed=h * w)
    out = tiler.run(img, tile=tile)
    ref = _whole(sess, img)
    assert out.shape == ref.shape == (3, h, w)
    assert float(np.abs(out - ref).max()) <= TOL


def test_exact_tiles_the_bottleneck_too(
    model: tuple[ExactTiler, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force small tiles in the residual blocks (normally >= 128 bottleneck pixels) and count tiles.
    tiler, sess = model
    monkeypatch.setattr(plan_mod, "MIN_BOTTLENECK_TILE", 1)
    img = _image(41, 50, seed=3)
    seen: list[tuple[int, int]] = []
    out = tiler.run(img, tile=12, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 100
    assert seen == [(i + 1, len(seen)) for i in range(len(seen))]  # one call per tile, in order
    assert float(np.abs(out - _whole(sess, img)).max()) <= TOL


def test_plan_is_cached_per_size(model: tuple[ExactTiler, object]) -> None:
    tiler, _ = model
    a = tiler.plan(40, 52, 16)
    assert tiler.plan(37, 50, 16) is a  # same padded size
    assert tiler.plan(40, 52, 8) is not a
    assert a.steps == sum(len(j.tiles) for j in a.jobs) > len(a.jobs)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_stored_maps_half_precision_and_spilled(model: tuple[ExactTiler, object], tmp_path: Path, dtype: str) -> None:
    tiler, sess = model
    img = _image(37, 45, seed=8)
    ref = _whole(sess, img)
    out = tiler.run(img, tile=16, store=exact.MapStore(dtype, spill_dir=tmp_path))
    err = float(np.abs(out - ref).max())
    assert err <= (TOL if dtype == "float32" else 2e-2)
    assert list(tmp_path.iterdir()) == []  # spill files are unlinked at once


def _file_elements(store: exact.MapStore, name: str) -> np.ndarray:
    spilled = store._spilled[name]
    return np.frombuffer(os.pread(spilled.fd, spilled.n * spilled.h * spilled.row_bytes, 0), np.float16)


def test_a_spilled_row_of_tiles_is_one_contiguous_band(tmp_path: Path) -> None:
    store = exact.MapStore("float16", spill_dir=tmp_path)
    store.create("m", (1, 5, 12, 7))
    value = np.arange(5 * 3 * 7, dtype=np.float16).reshape(1, 5, 3, 7) + 1
    for x0, x1 in ((0, 3), (3, 7)):  # a row of two tiles: rows 4..6, all channels
        store.write("m", (4, 7, x0, x1), value[:, :, :, x0:x1])
    assert not _file_elements(store, "m").any()  # the row is in RAM until the row of tiles is done
    store.release()  # the row is written in the background ...
    store.sync()  # ... and is in the file once the store has waited for it
    touched = np.flatnonzero(_file_elements(store, "m"))
    # (N, H, C, W) in the file: rows 4..6 of all 5 channels are elements 4*35 .. 7*35, nothing else
    assert touched.min() == 4 * 35 and touched.max() == 7 * 35 - 1 and touched.size == 3 * 35
    np.testing.assert_array_equal(store.read("m", (4, 7, 0, 7)), value)
    store.close()


@pytest.mark.parametrize("disk", ["fast", "slow", "no positional I/O"])
def test_spilled_maps_read_back_what_was_written_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              disk: str) -> None:
    """Against a float16 RAM store: rows of tiles in order, a row written in two visits (the file's
    values under the columns not written are kept), reads of rows still being written, reads that
    straddle rows, releases anywhere. With a slow disk the background writes are still under way
    when the next rows are written and read: a row's buffer must not be reused, nor its rows read,
    before its write is done. Without ``os.pwrite`` / ``os.preadv`` (Windows, macOS before Python
    3.11) the store seeks, reads and writes instead."""
    import time

    if disk == "no positional I/O":
        monkeypatch.delattr(os, "pwrite")
        monkeypatch.delattr(os, "preadv")
    if disk == "slow":
        pwrite = os.pwrite

        def slow(fd: int, data: object, offset: int) -> int:
            time.sleep(0.002)
            return pwrite(fd, data, offset)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "pwrite", slow)
    rng = np.random.default_rng(0)
    spill, ram = exact.MapStore("float16", spill_dir=tmp_path), exact.MapStore("float16")
    shape = (2, 3, 17, 11)
    for store in (spill, ram):
        store.create("m", shape)
        store.write("m", (0, 17, 0, 11), np.zeros(shape, np.float32))
    spill.release()
    for step in range(200):
        y0 = int(rng.integers(0, 16))
        y1 = int(rng.integers(y0 + 1, 18))
        x0 = int(rng.integers(0, 10))
        x1 = int(rng.integers(x0 + 1, 12))
        if rng.random() < 0.6:
            value = rng.normal(size=(2, 3, y1 - y0, x1 - x0)).astype(np.float32)
            for store in (spill, ram):
                store.write("m", (y0, y1, x0, x1), value)
        else:
            np.testing.assert_array_equal(spill.read("m", (y0, y1, x0, x1)), ram.read("m", (y0, y1, x0, x1)))
        if rng.random() < 0.2:
            spill.release()
    spill.release()
    np.testing.assert_array_equal(spill.read("m", (0, 17, 0, 11)), ram.read("m", (0, 17, 0, 11)))
    spill.close()


@pytest.mark.parametrize("raised_by", ["sync", "close"])
def test_a_full_disk_while_spilling_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    raised_by: str) -> None:
    """A row is written in the background: the error comes with the next wait, a sync (as the next
    row's release does) or the close after the last row, which frees everything all the same."""
    import errno

    from imgxlate.errors import DiskFullError

    store = exact.MapStore("float16", spill_dir=tmp_path)
    store.create("m", (1, 2, 4, 4))
    store.write("m", (0, 4, 0, 4), np.ones((1, 2, 4, 4), np.float32))

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    store.release()
    with pytest.raises(DiskFullError, match="IMGXLATE_SPILL_DIR") as info:
        getattr(store, raised_by)()
    assert info.value.errno == errno.ENOSPC and str(tmp_path) in str(info.value)
    monkeypatch.undo()
    store.close()
    assert store._writer is None and not store.maps


def test_a_row_buffer_is_not_reused_while_its_background_write_is_under_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of tiles of one height share their band's shape: the second row would get the first row's
    buffer back, and overwrite it before a slow disk has written it."""
    import threading

    pwrite, started, go = os.pwrite, threading.Event(), threading.Event()

    def slow(fd: int, data: object, offset: int) -> int:
        started.set()
        go.wait(10)  # held until the next row has been written into its band
        return pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pwrite", slow)
    store = exact.MapStore("float16", spill_dir=tmp_path)
    store.create("m", (1, 2, 8, 4))
    first, second = np.full((1, 2, 4, 4), 1, np.float32), np.full((1, 2, 4, 4), 2, np.float32)
    store.write("m", (0, 4, 0, 4), first)
    store.release()  # rows 0..3 go to the file in the background ...
    assert started.wait(10)
    store.write("m", (4, 8, 0, 4), second)  # ... while rows 4..7 are written into a band of the same shape
    go.set()
    store.release()
    np.testing.assert_array_equal(store.read("m", (0, 4, 0, 4)), first)
    np.testing.assert_array_equal(store.read("m", (4, 8, 0, 4)), second)
    store.close()


def test_spilled_maps_go_to_a_disk_not_to_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary folder unless it is a tmpfs (then the user cache folder); IMGXLATE_SPILL_DIR wins."""
    import platformdirs

    from imgxlate.tiling.exact import store

    temp, cache = tmp_path / "tmp", tmp_path / "cache"
    temp.mkdir()
    monkeypatch.delenv(store.SPILL_ENV, raising=False)
    monkeypatch.setattr(store.tempfile, "gettempdir", lambda: str(temp))
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(cache / name))
    monkeypatch.setattr(store, "filesystem_type", lambda path: "ext4")
    assert store.spill_directory() == str(temp)
    monkeypatch.setattr(store, "filesystem_type", lambda path: "tmpfs" if path == str(temp) else "ext4")
    assert store.spill_directory() == str(cache / "imgxlate" / "spill") and (cache / "imgxlate" / "spill").is_dir()
    assert exact.MapStore.for_choice("spill").spill_dir == str(cache / "imgxlate" / "spill")
    monkeypatch.setattr(store, "filesystem_type", lambda path: "tmpfs")  # nowhere better: the temp folder
    assert store.spill_directory() == str(temp)
    monkeypatch.setenv(store.SPILL_ENV, str(tmp_path / "mine"))
    assert store.spill_directory() == str(tmp_path / "mine") and (tmp_path / "mine").is_dir()


def test_filesystem_type_reads_the_mount_table() -> None:
    from imgxlate.tiling.exact.store import filesystem_type

    if not os.path.exists("/proc/self/mounts"):
        pytest.skip("no /proc/self/mounts (not Linux)")
    assert filesystem_type("/") != "" and filesystem_type("/proc") == "proc"


def test_hwc_uint8_input_and_sink(model: tuple[ExactTiler, object]) -> None:
    tiler, sess = model
    rgb = np.random.default_rng(4).integers(0, 256, (30, 43, 3), dtype=np.uint8)
    x = (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
    ref = _whole(sess, np.ascontiguousarray(x))
    got = np.full((3, 30, 43), np.nan, np.float32)

    def sink(region: tuple[int, int, int, int], tile: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        assert np.isnan(got[:, y0:y1, x0:x1]).all()  # every pixel once
        got[:, y0:y1, x0:x1] = tile

    assert tiler.run(rgb, tile=16, hwc=True, scale=1 / 127.5, offset=-1.0, sink=sink) is None
    assert float(np.abs(got - ref).max()) <= TOL


def test_openvino_runners_are_exact_too(model: tuple[ExactTiler, object]) -> None:
    pytest.importorskip("openvino")
    from imgxlate.engine import runner_factory

    tiler, sess = model
    ov_tiler = ExactTiler(tiler.path, runner_factory("cpu", threads=1, backend="openvino"))
    img = _image(33, 40, seed=9)
    assert float(np.abs(ov_tiler.run(img, tile=16) - _whole(sess, img)).max()) <= TOL


def test_tile_zero_equals_whole(model: tuple[ExactTiler, object]) -> None:
    tiler, sess = model
    img = _image(24, 36, seed=5)
    assert float(np.abs(tiler.run(img, tile=0) - _whole(sess, img)).max()) <= TOL


def test_stats_hook(model: tuple[ExactTiler, object]) -> None:
    tiler, sess = model
    img = _image(28, 20, seed=7)
    seen: list[tuple[int, tuple[int, ...], np.dtype]] = []

    def identity(i: int, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append((i, mean.shape, mean.dtype))
        assert var.shape == mean.shape and np.all(var >= 0)
        return mean, var

    out = tiler.run(img, tile=8, stats_hook=identity)
    assert [s[0] for s in seen] == list(range(tiler.n_norm_layers))
    assert all(s[2] == np.float64 and len(s[1]) == 1 for s in seen)
    ref = _whole(sess, img)
    assert float(np.abs(out - ref).max()) <= TOL

    def fixed(i: int, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(mean), np.ones_like(var)

    changed = tiler.run(img, tile=8, stats_hook=fixed)
    assert float(np.abs(changed - ref).max()) > 1e-2
    # fixed statistics make the result independent of the tiling as well
    assert float(np.abs(changed - tiler.run(img, tile=0, stats_hook=fixed)).max()) <= TOL


def test_stats_are_exact(model: tuple[ExactTiler, object]) -> None:
    # The first norm's input is the stem conv of the padded image: check its statistics directly.
    tiler, _ = model
    img = _image(20, 24, seed=11)
    got = {}

    def grab(i: int, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got[i] = (mean, var)
        return mean, var

    tiler.run(img, tile=8, stats_hook=grab)
    m0, v0 = got[0]
    tiler.run(img, tile=0, stats_hook=grab)
    np.testing.assert_allclose(got[0][0], m0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0][1], v0, rtol=1e-5, atol=1e-7)


def test_unsupported_graph_raises(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[2, 2])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "h2", "w2"])],
    )
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(InvalidModelError, match="cannot be tiled exactly.*--tiling blend"):
        ExactTiler(path)
    with pytest.raises(InvalidModelError):
        ExactTiler(tmp_path / "missing.onnx")


def test_convolutions_run_fused(model: tuple[ExactTiler, object]) -> None:
    """Every convolution runs as one graph with its pads, upsampling and prologue (the fast path);
    numpy does none of them, and float16 stored maps go in and out of the runtime uncast."""
    tiler, sess = model
    img = _image(37, 53, seed=3)
    out = tiler.run(img, tile=16, store=exact.MapStore("float16"))
    assert float(np.abs(out - _whole(sess, img)).max()) <= 2e-2
    plan = tiler.plan(37, 53, 16)
    conv_keys = {seg.key for job in plan.jobs for seg in job.segments if seg.head.kind == "conv"}
    conv = [v for key, v in tiler.executor.runners.cache if key in conv_keys]
    assert conv and all(v.fused for v in conv)
    assert any(any(p for p, _ in v.pre) for v in conv)  # border tiles pad inside the graph
    assert any(v.pre and not any(p for p, _ in v.pre) for v in conv)  # interior tiles do not
    assert any(v.x16 for v in conv) and any(v.out16 for v in conv)
    resize_model = any(op.kind == "resize" for op in tiler.graph.ops)
    assert any(v.subpixel for v in conv) == resize_model  # upsampling convs run at low resolution


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux's")
def test_large_map_buffers_are_not_advised_into_huge_pages() -> None:
    """numpy advises transparent huge pages for large arrays; faulting those in compacts memory where
    it is fragmented (slower than 4 KiB pages). The store's large buffers come without that advice:
    no mapping under the buffer carries the ``hg`` flag (numpy's own array does, where THP exists)."""
    from imgxlate.tiling.exact.store import _fresh

    def advised(buf: np.ndarray) -> list[bool]:
        a0 = buf.__array_interface__["data"][0]
        a1 = a0 + buf.nbytes
        found, inside = [], False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(v, 16) for v in head.split("-"))
                    inside = lo < a1 and a0 < hi
                elif inside and head == "VmFlags:":
                    found.append("hg" in line.split()[1:])
        return found

    buf = _fresh(8 << 20, np.dtype(np.float16))
    buf[:] = 1
    assert advised(buf) and not any(advised(buf))
    assert buf.size == 8 << 20 and buf.dtype == np.float16 and float(buf[-1]) == 1.0


def _kernel_at_least(major: int, minor: int) -> bool:
    release = platform.release().split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _kernel_at_least(5, 14),
                    reason="MADV_POPULATE_WRITE is Linux 5.14's")
def test_large_map_buffers_are_resident_before_the_first_tile_is_written() -> None:
    """A fresh map's pages are populated when it is made, not faulted in one at a time as tiles are
    written (12.8 us a page on a VM, more than the copy): its mapping is resident at once, and writing
    the whole buffer takes (almost) no page fault."""
    import resource

    from imgxlate.tiling.exact.store import _fresh

    def resident_kib(buf: np.ndarray) -> int:
        a0 = buf.__array_interface__["data"][0]
        total, inside = 0, False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(v, 16) for v in head.split("-"))
                    inside = lo <= a0 < hi
                elif inside and head == "Rss:":
                    total += int(line.split()[1])
        return total

    buf = _fresh(16 << 20, np.dtype(np.float16))  # 32 MiB
    assert resident_kib(buf) >= (32 << 10)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buf[:] = 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 100  # 8192 pages unpopulated
