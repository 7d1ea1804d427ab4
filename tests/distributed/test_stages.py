"""imgxlate.distributed.stages without Ray: the write stage when the output appeared since planning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgxlate.distributed import stages
from imgxlate.distributed.plan import plan_jobs
from imgxlate.options import ImageOptions


def test_write_keeps_an_output_that_appeared_since_planning(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(src / "a.png")
    out, options = tmp_path / "out", ImageOptions()
    for overwrite in (False, True):
        (job,) = plan_jobs([src], out, overwrite=overwrite)
        assert job.status == "pending" and job.replace is overwrite
        row = stages.decode({"index": 0, "src": job.src, "dst": job.dst, "status": job.status, "reason": "",
                             "replace": job.replace, "seconds": 0.0}, options=options)
        row["output"] = row["image"].rgb  # what the model would give (same size)
        out.mkdir(exist_ok=True)
        Path(job.dst).write_bytes(b"another run's file")
        row = stages.write(row, options=options)
        if overwrite:
            assert row["status"] == "converted" and Image.open(job.dst).size == (8, 8)
        else:
            assert row["status"] == "skipped" and "another run" in row["reason"]
            assert Path(job.dst).read_bytes() == b"another run's file"


def test_a_file_where_an_output_folder_goes_fails_with_the_local_runs_reason(tmp_path: Path) -> None:
    from imgxlate.batch import failure_reason
    from imgxlate.imaging.encode import write_image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "sub" / "a.png")
    out, options = tmp_path / "out", ImageOptions()
    out.mkdir()
    (out / "sub").write_bytes(b"a file where the folder goes")
    (job,) = plan_jobs([src], out)
    row = stages.decode({"index": 0, "src": job.src, "dst": job.dst, "status": job.status, "reason": "",
                         "replace": job.replace, "seconds": 0.0}, options=options)
    row["output"] = row["image"].rgb
    image = row["image"]
    row = stages.write(row, options=options)
    assert row["status"] == "failed"
    try:
        write_image(job.dst, image.rgb, image)
    except Exception as exc:  # noqa: BLE001 - the local run's own failure, for its reason
        local = failure_reason(exc)
    assert row["reason"] == local and str(job.dst) in row["reason"]


def test_a_url_that_fails_to_decode_is_named_by_its_url_not_by_its_deleted_download(tmp_path: Path) -> None:
    """The reason named the worker's temp copy (``/tmp/imgxlate-ray-.../broken.jpg``), gone when read."""
    broken = tmp_path / "in dir" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    url = broken.as_uri()
    row = stages.decode({"index": 0, "src": url, "dst": (tmp_path / "out" / "broken.png").as_uri(),
                         "status": "pending", "reason": "", "seconds": 0.0}, options=ImageOptions())
    assert row["status"] == "failed" and url in row["reason"], row["reason"]
    assert "imgxlate-ray-" not in row["reason"]
