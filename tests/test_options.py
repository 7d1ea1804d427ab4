"""imgxlate.options: the two values every way of converting takes, checked once, and what the Ray
stages make of them (the stages are plain functions and a plain class: no Ray needed here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgxlate.errors import UsageError
from imgxlate.options import ImageOptions, ModelSpec


def test_image_options_normalise_and_refuse_what_cannot_work() -> None:
    assert ImageOptions(fmt="JPEG").fmt == "jpg"
    assert ImageOptions(fmt="tif").fmt == "tiff"
    for kwargs, needle in [
        ({"fmt": "bmp2"}, "bmp2"),
        ({"tiling": "mosaic"}, "unknown tiling"),
        ({"quality": 0}, "--quality"),
        ({"quality": 101}, "--quality"),
        ({"tile": -4}, "--tile must be >= 0"),
        ({"tile_overlap": -1}, "--tile-overlap"),
        ({"max_pixels": 0}, "--max-pixels"),
    ]:
        with pytest.raises(UsageError, match=needle):
            ImageOptions(**kwargs)


@pytest.mark.parametrize(
    ("tile", "tiling", "needle"),
    [(7, "exact", "try --tile 8"), (6, "exact", "at least 8"), (48, "blend", "twice the overlap")],
)
def test_tiles_that_do_not_fit_the_model_are_refused(tile: int, tiling: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        ImageOptions(tile=tile, tiling=tiling).check_model(4)
    ImageOptions(tile=0).check_model(4)  # whole image and automatic always fit
    ImageOptions(tile=None).check_model(4)
    ImageOptions(tile=64, tiling="blend").check_model(4)


def test_model_spec_loads_with_its_memory_budget(tiny_pair: Path) -> None:
    t = ModelSpec(model=tiny_pair, direction="a2b", device="cpu", threads=1, max_memory=256 << 20).load()
    assert t.max_memory == 256 << 20 and t.provider == "CPUExecutionProvider"
    with pytest.raises(UsageError, match="--max-memory"):
        ModelSpec(max_memory=0)


def test_a_memory_budget_below_what_a_tiled_run_needs_is_said(tiny_pair: Path) -> None:
    """--max-memory 256M was accepted as the documented minimum and silently exceeded (523 MB for a
    12 MP photo): a tiled run needs the runtime and one tile whatever the image."""
    low = ModelSpec(model=str(tiny_pair), to="zebra", device="cpu", threads=1, max_memory=256 << 20).load()
    (note,) = [n for n in low.notes if n.kind == "fallback"]
    assert note.text.startswith("--max-memory 256M is less than a tiled run needs (at least ")
    ample = ModelSpec(model=str(tiny_pair), to="zebra", device="cpu", threads=1, max_memory=4 << 30).load()
    assert not [n for n in ample.notes if n.kind == "fallback"]


def test_ray_stages_take_the_same_options(tiny_pair: Path, tmp_path: Path) -> None:
    """Before the options were one value, a --ray run dropped --max-memory and --backend: the actor
    class must carry both, and decode/write must use the size limit, format and quality."""
    from imgxlate.distributed import stages
    from imgxlate.distributed.plan import PENDING

    spec = ModelSpec(model=tiny_pair, direction="a2b", device="cpu", threads=1, backend="onnxruntime",
                     max_memory=1)
    options = ImageOptions(fmt="jpg", quality=80, max_pixels=64 * 64, tile=None)
    actor = stages.translator_class(spec, options)()
    assert actor.translator.max_memory == 1  # a budget nothing fits whole: the exact tiler runs
    assert actor.translator.engine.backend == "onnxruntime"

    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(src)
    dst = tmp_path / "out" / "a.jpg"
    row = {"index": 0, "src": str(src), "dst": str(dst), "status": PENDING, "reason": "", "seconds": 0.0,
           "width": 0, "height": 0, "provider": ""}
    row = stages.write(actor(stages.decode(row, options=options)), options=options)
    assert row["status"] == "converted", row["reason"]
    with Image.open(dst) as im:
        assert im.format == "JPEG" and im.size == (40, 48)

    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(big)
    row = stages.decode({"index": 1, "src": str(big), "dst": str(tmp_path / "b.jpg"), "status": PENDING,
                         "reason": "", "seconds": 0.0}, options=options)
    assert row["status"] == "failed"  # over max_pixels (64 x 64)


def test_ray_run_refuses_a_tile_that_does_not_fit_before_the_cluster_starts(tiny_pair: Path, tmp_path: Path) -> None:
    import imgxlate.distributed as dist

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "a.png")
    jobs = dist.plan_jobs([src], tmp_path / "out")
    run = dist.run_jobs(jobs, spec=ModelSpec(model=tiny_pair, direction="a2b"), options=ImageOptions(tile=7),
                        address="ray://nowhere.invalid:10001")
    with pytest.raises(UsageError, match="--tile 7"):
        next(run)
