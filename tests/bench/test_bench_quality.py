"""bench/model_quality.py: smoke run on the tiny random pair, the checkerboard score, missing data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import model_quality as mq


def _images(folder: Path, n: int, kind: str, seed: int) -> Path:
    """n 64x64 images: noisy gradients ("photo") or blotchy saturated colour ("painting")."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] / 63.0
    for i in range(n):
        if kind == "photo":
            base = np.stack([yy, xx, 1 - yy], axis=-1) * rng.uniform(0.5, 0.9, 3) + rng.normal(
                0, 0.05, (64, 64, 3)
            )
        else:
            base = np.kron(rng.random((8, 8, 3)), np.ones((8, 8, 1)))
        img = (np.clip(base, 0, 1) * 255).astype(np.uint8)
        # a name with a space and a colon, as in the real test photos
        Image.fromarray(img).save(folder / f"{kind} {i:02d}:00.{'jpg' if i % 2 else 'png'}")
    return folder


def test_smoke_run_writes_json_and_sheets(
    tiny_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch")  # the quality bench trains a small domain classifier
    photos = _images(tmp_path / "photos", 3, "photo", 1)
    data = tmp_path / "data"
    _images(data / "vangogh", 6, "painting", 2)
    _images(data / "photo", 6, "photo", 3)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "--model",
        str(tiny_pair),
        "--photos",
        str(photos),
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--json",
        str(tmp_path / "q.json"),
        "--quick",
        "--classifier-steps",
        "3",
        "--threads",
        "1",
    ]
    assert mq.main(args) == 0
    assert "cycle PSNR" in capsys.readouterr().out
    res = json.loads((tmp_path / "q.json").read_text())
    assert {
        "model",
        "settings",
        "cycle_psnr_db",
        "vangogh_rate",
        "vangogh_mean_probability",
        "classifier",
        "checkerboard_db",
        "speed_ms_per_image",
        "files",
        "timings_s",
    } <= set(res)
    assert res["settings"]["n_photos"] == 3 and res["settings"]["n_hires"] == 1
    assert set(res["cycle_psnr_db"]) == {"photo", "vangogh"}
    assert 0 < res["cycle_psnr_db"]["photo"]["min"] <= res["cycle_psnr_db"]["photo"]["mean"] < 60
    assert set(res["vangogh_rate"]) == {
        "heldout_paintings",
        "test_photos",
        "translated_photos",
        "cycle_photos",
        "translated_paintings",
    }
    assert all(0.0 <= v <= 1.0 for v in res["vangogh_rate"].values())
    assert set(res["checkerboard_db"]) == {"photo2vangogh_256", "photo2vangogh_1024", "vangogh2photo_256"}
    # Random transposed-conv generators are all checkerboard: far above the +-1/255 pattern's ~14 dB.
    assert res["checkerboard_db"]["photo2vangogh_256"]["checker_p2"]["mean"] > 10
    with Image.open(out / "sheet_photos.png") as sheet:
        assert sheet.width == 3 * 256 and sheet.height > 3 * 256
    assert (out / "sheet_1024.png").is_file() and (out / "sheet_paintings.png").is_file()
    assert res["classifier"]["cached"] is False and len(list(cache.glob("style_classifier-*.pt"))) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".imgxlate-tmp-")]


def test_checkerboard_score_sees_periodic_patterns_not_texture() -> None:
    rng = np.random.default_rng(0)
    # a "photo": a gradient with grain, 64x64x3 in 0..255
    yy, xx = np.mgrid[:64, :64] / 63.0
    img = np.stack([yy, xx, 1 - yy], axis=-1) * 180 + 30 + rng.normal(0, 6, (64, 64, 3))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:64, :64]
    p2 = np.clip(img + 3.0 * ((-1.0) ** (yy + xx))[:, :, None], 0, 255).astype(np.uint8)
    p4 = np.clip(img + 3.0 * np.where((yy // 2 + xx // 2) % 2, 1, -1)[:, :, None], 0, 255).astype(np.uint8)
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    s2, s4, sn = (mq.checker_scores([img], [o]) for o in (p2, p4, noisy))
    assert mq.checker_scores([img], [img])["checker_p2"]["mean"] == 0.0
    assert s2["checker_p2"]["mean"] > 10 and abs(s2["checker_p4"]["mean"]) < 3
    assert s4["checker_p4"]["mean"] > 6 and abs(s4["checker_p2"]["mean"]) < 3
    assert abs(sn["checker_p2"]["mean"]) < 3 and abs(sn["checker_p4"]["mean"]) < 3


def test_missing_data_folder_is_a_message_not_a_traceback(
    tiny_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch")  # model_quality imports torch before it looks at --data
    photos = _images(tmp_path / "photos", 1, "photo", 1)
    code = mq.main(
        [
            "--model",
            str(tiny_pair),
            "--photos",
            str(photos),
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no training images in" in err and "--data DIR" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    code = mq.main(["--model", str(tmp_path), "--photos", str(photos)])
    assert code == 2 and "no a2b.onnx in" in capsys.readouterr().err
