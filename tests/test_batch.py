"""imgxlate.batch: what a batch does when the output folder changes under it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgxlate.batch import plan_conversion, run_plans
from imgxlate.translator import load_model


def _inputs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_an_output_another_run_wrote_meanwhile_is_kept_and_reported_skipped(tiny_pair: Path, tmp_path: Path) -> None:
    """Two runs into one --out: this run planned p1.png when it was not there; another run writes it
    before this one gets to it. Without --overwrite the other run's file is kept and the result says
    "skipped" (it was reported "converted" while the file on disk was the other run's)."""
    src, out = _inputs(tmp_path / "in", 3), tmp_path / "out"
    translator = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    plans = plan_conversion([src], out)
    assert [p.status for p in plans] == ["pending"] * 3
    out.mkdir()
    (out / "p1.png").write_bytes(b"the other run's file")
    results = {r.src.name: r for r in run_plans(plans, translator=translator, workers=1)}
    assert results["p1.png"].status == "skipped" and "another run" in results["p1.png"].reason
    assert (out / "p1.png").read_bytes() == b"the other run's file"
    assert results["p0.png"].status == results["p2.png"].status == "converted"
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]  # no temp files
    # --overwrite: the run was asked to replace what is there, whoever wrote it
    plans = plan_conversion([src], out, overwrite=True)
    (out / "p1.png").write_bytes(b"the other run's file, again")
    results = {r.src.name: r for r in run_plans(plans, translator=translator, workers=1)}
    assert all(r.status == "converted" for r in results.values())
    with Image.open(out / "p1.png") as im:
        assert im.size == (16, 16)
