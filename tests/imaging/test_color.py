"""imgxlate.imaging: colour management (ICC profiles to sRGB against LittleCMS, CMYK)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_helpers import (
    ADOBE_ICC,
    D50,
    GRAY_ICC,
    _adobe_like,
    _curv_gamma,
    _curv_table,
    _icc,
    _littlecms_to_srgb,
    _para,
    _rand,
    _s15,
    _save,
    _u8,
)
from PIL import Image

from imgxlate.imaging import (
    color,
    output_suffix,
    read_image,
    srgb_profile,
    write_image,
)

# --------------------------------------------------------------------------------------------- ICC


@pytest.mark.parametrize(
    "curve",
    [
        _curv_gamma(2.2),
        _curv_table(np.linspace(0, 1, 50) ** 1.8),
        _para(0, 2.4),
        _para(3, 2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045),
        _para(4, 2.2, 0.95, 0.05, 0.1, 0.05, 0.01, 0.02),
    ],
    ids=["gamma", "table", "para0", "para3", "para4"],
)
def test_matrix_shaper_conversion_matches_littlecms(curve: bytes) -> None:
    icc = _adobe_like(curve)
    rgb8 = _rand(16, 16)
    ours = color.shaper_to_srgb(rgb8, color._matrix_shaper(icc), 256)
    ref = _littlecms_to_srgb(rgb8, icc)
    # LittleCMS rounds to 8 bits; ours stays float: within one 8-bit level everywhere.
    assert np.max(np.abs(ours - ref)) * 255 <= 1.0


def test_non_srgb_profile_converted_and_srgb_embedded(tmp_path: Path) -> None:
    rgb8 = _rand(12, 10)
    path = _save(Image.fromarray(rgb8), tmp_path / "adobe.png", icc_profile=ADOBE_ICC)
    d = read_image(path)
    assert d.icc_profile == srgb_profile()
    assert np.max(np.abs(d.rgb - _littlecms_to_srgb(rgb8, ADOBE_ICC))) * 255 <= 1.0
    out = write_image(tmp_path / "out.png", d.rgb, d)
    assert Image.open(out).info.get("icc_profile") == srgb_profile()
    again = read_image(out)  # sRGB now: no second conversion
    assert np.array_equal(_u8(again.rgb), _u8(d.rgb)) and again.icc_profile == srgb_profile()


def test_16bit_png_with_profile_converted_at_16_bits(tmp_path: Path) -> None:
    rgb8 = _rand(8, 8)
    rgb16 = rgb8.astype(np.uint16) * 257  # the same colours as the 8-bit image, in 16 bits
    png = _png_with_icc(_cv2_encode(rgb16, ".png"), ADOBE_ICC)
    path = tmp_path / "adobe16.png"
    path.write_bytes(png)
    d = read_image(path)
    assert d.bit_depth == 16 and d.icc_profile == srgb_profile()
    assert np.max(np.abs(d.rgb - _littlecms_to_srgb(rgb8, ADOBE_ICC))) * 255 <= 1.0
    # A 16-bit level resolution survives: values are not snapped to an 8-bit grid.
    assert np.any(np.abs(d.rgb * 255 - np.rint(d.rgb * 255)) > 0.01)


def _cv2_encode(arr: np.ndarray, ext: str) -> bytes:
    bgr = arr[..., ::-1] if arr.ndim == 3 and arr.shape[2] == 3 else arr
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok
    return buf.tobytes()


def _png_with_icc(png: bytes, icc: bytes) -> bytes:
    body = b"x\0\0" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:33] + chunk + png[33:]


def test_lut_profiles_go_through_imagecms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the profile is LUT-based (no matrix/TRC reading): 8-bit goes through LittleCMS, 16-bit is
    # left unconverted with a warning and keeps its profile.
    monkeypatch.setattr(color, "_matrix_shaper", lambda icc: None)
    rgb8 = _rand(6, 5)
    d = read_image(_save(Image.fromarray(rgb8), tmp_path / "lut.png", icc_profile=ADOBE_ICC))
    assert d.icc_profile == srgb_profile()
    assert np.max(np.abs(d.rgb - _littlecms_to_srgb(rgb8, ADOBE_ICC))) * 255 <= 1.0
    path = tmp_path / "lut16.png"
    path.write_bytes(_png_with_icc(_cv2_encode(rgb8.astype(np.uint16) * 257, ".png"), ADOBE_ICC))
    with pytest.warns(UserWarning, match="LUT-based"):
        d16 = read_image(path)
    assert d16.icc_profile == ADOBE_ICC and np.array_equal(_u8(d16.rgb), rgb8)


def test_srgb_profile_keeps_pixels_and_bytes(tmp_path: Path) -> None:
    rgb8 = _rand(9, 7)
    path = _save(Image.fromarray(rgb8), tmp_path / "s.jpg", quality=90, icc_profile=srgb_profile())
    raw = np.asarray(Image.open(path))
    d = read_image(path)
    assert np.array_equal(_u8(d.rgb), raw)
    assert d.icc_profile == srgb_profile()
    out = write_image(tmp_path / "o.jpg", d.rgb, d)
    assert Image.open(out).info.get("icc_profile") == srgb_profile()


def test_broken_profile_ignored_with_warning(tmp_path: Path) -> None:
    rgb8 = _rand(5, 6)
    path = _save(Image.fromarray(rgb8), tmp_path / "b.png", icc_profile=b"not a profile at all" * 10)
    with pytest.warns(UserWarning, match="broken ICC profile"):
        d = read_image(path)
    assert np.array_equal(_u8(d.rgb), rgb8) and d.icc_profile is None


def test_gray_profile_kept_rgb_profile_on_gray_ignored(tmp_path: Path) -> None:
    g = _rand(6, 6, None)
    d = read_image(_save(Image.fromarray(g), tmp_path / "g.png", icc_profile=GRAY_ICC))
    assert d.grayscale and d.icc_profile == GRAY_ICC and np.array_equal(_u8(d.rgb[..., 0]), g)
    out = write_image(tmp_path / "g_out.png", d.rgb, d)
    assert Image.open(out).info.get("icc_profile") == GRAY_ICC and Image.open(out).mode == "L"
    with pytest.warns(UserWarning, match="it is for RGB"):
        d2 = read_image(_save(Image.fromarray(g), tmp_path / "g2.png", icc_profile=ADOBE_ICC))
    assert d2.icc_profile is None and np.array_equal(_u8(d2.rgb[..., 0]), g)


# ------------------------------------------------------------------------------------------- modes


def _strip_adobe_app14(jpeg: bytes) -> bytes:
    out, i = bytearray(jpeg[:2]), 2
    while i < len(jpeg):
        marker = jpeg[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            out += jpeg[i:]
            break
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if marker != 0xEE:
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    return bytes(out)


CMYK_BLOCKS = [((0, 0, 0, 0), (1, 1, 1)), ((0, 255, 255, 0), (1, 0, 0)), ((255, 0, 255, 0), (0, 1, 0)),
               ((0, 0, 0, 255), (0, 0, 0))]  # fmt: skip


def _cmyk_image(invert: bool) -> Image.Image:
    arr = np.zeros((16, 16 * len(CMYK_BLOCKS), 4), np.uint8)
    for k, (cmyk, _) in enumerate(CMYK_BLOCKS):
        arr[:, 16 * k : 16 * k + 16] = cmyk
    return Image.fromarray(255 - arr if invert else arr, mode="CMYK")


@pytest.mark.parametrize("adobe", [True, False])
def test_cmyk_jpeg_with_and_without_adobe_inversion(tmp_path: Path, adobe: bool) -> None:
    buf = io.BytesIO()
    # Pillow writes CMYK inverted with an Adobe APP14 marker. Without the marker a reader must take
    # the data as plain CMYK, so that file is made from the inverted image with the marker removed.
    _cmyk_image(invert=not adobe).save(buf, "JPEG", quality=100)
    data = buf.getvalue() if adobe else _strip_adobe_app14(buf.getvalue())
    assert (b"Adobe" in data) == adobe
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(data)
    d = read_image(path)
    assert not d.grayscale and d.alpha is None and d.bit_depth == 8
    for k, (_, rgb) in enumerate(CMYK_BLOCKS):
        assert np.allclose(d.rgb[8, 16 * k + 8], rgb, atol=0.05), k
    out = write_image(tmp_path / ("o" + output_suffix(".jpg", d.format, "same")), d.rgb, d)
    assert Image.open(out).mode == "RGB"


def _swapping_cmyk_profile() -> bytes:
    """A CMYK printer profile (lut16 A2B0, XYZ PCS, 2-point grid) giving the naive CMYK->RGB colours
    with red and blue swapped, so a test can tell that the profile was used."""
    srgb_matrix = color._srgb_shaper().matrix  # linear sRGB -> XYZ (D50)
    clut: list[int] = []
    for c, m, y, k in np.ndindex(2, 2, 2, 2):  # first input channel varies slowest, as ICC orders it
        r, g, b = (1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)
        clut += [min(65535, round(v * 32768)) for v in srgb_matrix @ np.array([b, g, r])]  # u1Fixed15
    mft2 = (
        b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        + struct.pack(">HH", 2, 2) + struct.pack(">8H", *([0, 65535] * 4))
        + struct.pack(f">{len(clut)}H", *clut) + struct.pack(">6H", *([0, 65535] * 3))
    )  # fmt: skip
    icc = bytearray(_icc(b"CMYK", {b"wtpt": D50, b"A2B0": mft2}))
    icc[12:16] = b"prtr"
    return bytes(icc)


@pytest.mark.parametrize("adobe", [True, False])
def test_cmyk_jpeg_with_profile_uses_it(tmp_path: Path, adobe: bool) -> None:
    buf = io.BytesIO()
    _cmyk_image(invert=not adobe).save(buf, "JPEG", quality=100, icc_profile=_swapping_cmyk_profile())
    path = tmp_path / "cmyk_icc.jpg"
    path.write_bytes(buf.getvalue() if adobe else _strip_adobe_app14(buf.getvalue()))
    d = read_image(path)
    assert d.icc_profile == srgb_profile()
    for k, (_, rgb) in enumerate(CMYK_BLOCKS):
        assert np.allclose(d.rgb[8, 16 * k + 8], rgb[::-1], atol=0.05), k  # red and blue swapped
