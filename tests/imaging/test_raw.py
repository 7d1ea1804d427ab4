"""Camera RAW files through LibRaw (rawpy, the `raw` extra): developed upright to 16-bit sRGB, routed by
name (a TIFF-based RAW must never be read as its preview), and clear errors for what cannot be read.
The RAW files are tiny DNGs written here (tests/imaging/dng_writer.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dng_writer import write_dng
from PIL import Image

from imgxlate.errors import ImageReadError
from imgxlate.imaging import output_suffix, read_image
from imgxlate.imaging.formats import READ_SUFFIXES


def _source(h: int = 48, w: int = 64) -> np.ndarray:
    small = np.random.default_rng(0).integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a[4:-4, 4:-4].ravel(), b[4:-4, 4:-4].ravel())[0, 1])


def test_raw_suffixes_are_readable_and_plan_to_png() -> None:
    assert {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"} <= READ_SUFFIXES
    # a TIFF-based RAW sniffs as TIFF; "same" must still not make a .tif of it (nor keep .cr2)
    assert output_suffix(".CR2", "TIFF", "same") == ".png"
    assert output_suffix(".dng", None, "same") == ".png"
    assert output_suffix(".nef", "TIFF", "jpg") == ".jpg"


@pytest.mark.parametrize("orientation", [1, 6])
def test_dng_develops_upright_to_16_bit_srgb(tmp_path: Path, orientation: int) -> None:
    pytest.importorskip("rawpy")
    src = _source()
    d = read_image(write_dng(tmp_path / "a.dng", src, orientation))
    assert d.format == "RAW" and d.bit_depth == 16 and d.pixels.dtype == np.float32 and d.alpha is None
    upright = src if orientation == 1 else np.rot90(src, -1)  # 6: the camera was turned right
    assert d.pixels.shape == upright.shape
    got = d.rgb * 255
    for c in range(3):  # the same picture, channel for channel (demosaicing blurs a little)
        assert _corr(upright[..., c].astype(float), got[..., c]) > 0.75, c


def test_raw_errors_name_the_file_and_the_next_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rawpy")
    dng = write_dng(tmp_path / "a.dng", _source())
    with pytest.raises(ImageReadError, match=r"3,072 pixels, more than the limit"):
        read_image(dng, max_pixels=1000)
    (tmp_path / "cut.dng").write_bytes(dng.read_bytes()[: dng.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"cut.dng.*truncated or damaged.*copy it from the card again"):
        read_image(tmp_path / "cut.dng")
    (tmp_path / "junk.cr2").write_bytes(np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"does not recognise it as a camera RAW file.*\.cr2"):
        read_image(tmp_path / "junk.cr2")
    monkeypatch.setitem(sys.modules, "rawpy", None)  # rawpy not installed
    with pytest.raises(ImageReadError, match=r"camera RAW file \(\.dng\).*pip install 'rawpy>=0\.21'"):
        read_image(dng)


def test_convert_takes_raw_files_beside_others(tiny_pair: Path, tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    src = tmp_path / "card"
    src.mkdir()
    write_dng(src / "IMG_0001.DNG", _source(), orientation=6)
    Image.fromarray(_source()).save(src / "IMG_0002.png")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "imgxlate", "convert", str(src), "--out", str(out), "--model",
                        str(tiny_pair), "--direction", "a2b", "--device", "cpu", "--json"],
                       capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stderr
    totals = json.loads(r.stdout)["totals"]
    assert totals["converted"] == 2 and totals["failed"] == 0
    import cv2

    written = cv2.imread(str(out / "IMG_0001.png"), cv2.IMREAD_UNCHANGED)  # (H, W, 3) BGR as stored
    assert written.shape == (64, 48, 3) and written.dtype == np.uint16  # upright (portrait), 16 bits kept
