"""imgxlate.imaging: every image kind users own reads to sRGB float and writes back in the source's kind.

All inputs are tiny images generated here; corpus files (../shared/corpus) are checked when present.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from imgxlate.errors import ImageReadError, ImageWriteError, UsageError
from imgxlate.imaging import (
    DecodedImage,
    apply_orientation,
    color,
    encode_png,
    formats,
    from_array,
    output_suffix,
    read_image,
    reset_exif_orientation,
    srgb_profile,
    to_array,
    write_image,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------- helpers


def _save(im: Image.Image, path: Path, fmt: str | None = None, **kw: object) -> Path:
    im.save(path, format=fmt, **kw)
    return path


def _rand(h: int, w: int, c: int | None = 3, dtype: type = np.uint8) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if c is None else (h, w, c)
    return RNG.integers(0, top + 1, size=shape).astype(dtype)


def _cv2_write(path: Path, rgb_or_rgba: np.ndarray) -> Path:
    arr = rgb_or_rgba
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curv_gamma(g: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(g * 256)) + b"\0\0"


def _curv_table(values: np.ndarray) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">I", len(values)) + np.round(values * 65535).astype(">u2").tobytes()


def _para(ftype: int, *params: float) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">HH", ftype, 0) + b"".join(_s15(p) for p in params)


def _icc(space: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 display profile (header, tag table, tags) that LittleCMS accepts."""
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags.items():
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = offset + len(body)
    d50 = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", space, b"XYZ ")
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + d50
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


D50 = _xyz(0.9642, 1.0, 0.8249)
# Adobe RGB (1998) colorants adapted to D50, as in Adobe's profile.
ADOBE_COLORANTS = {
    b"rXYZ": _xyz(0.6097, 0.3111, 0.0195),
    b"gXYZ": _xyz(0.2053, 0.6257, 0.0609),
    b"bXYZ": _xyz(0.1492, 0.0632, 0.7446),
}


def _adobe_like(curve: bytes) -> bytes:
    return _icc(b"RGB ", {b"wtpt": D50, **ADOBE_COLORANTS, b"rTRC": curve, b"gTRC": curve, b"bTRC": curve})


ADOBE_ICC = _adobe_like(_curv_gamma(563 / 256))
GRAY_ICC = _icc(b"GRAY", {b"wtpt": D50, b"kTRC": _curv_gamma(1.8)})


def _littlecms_to_srgb(rgb8: np.ndarray, icc: bytes) -> np.ndarray:
    # Relative colorimetric: with the default perceptual intent LittleCMS adds black point compensation
    # (its sRGB is a v4 profile), which only differs for profiles whose black is not 0 (the para4 case).
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
    t = ImageCms.buildTransform(src, ImageCms.createProfile("sRGB"), "RGB", "RGB", renderingIntent=intent)
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb8), t)).astype(np.float32) / 255


def _u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x) * 255).astype(np.uint8)


def _u16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x) * 65535).astype(np.uint16)


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".imgxlate-tmp-") for p in folder.iterdir())


# ------------------------------------------------------------------------------------ orientation

# EXIF spec: where the stored row 0 and column 0 end up when shown upright.
#   1 top/left, 2 top/right, 3 bottom/right, 4 bottom/left, 5 left/top, 6 right/top, 7 right/bottom,
#   8 left/bottom. Upright corner of stored (0, 0) and of stored (0, W-1) follows from that.
CORNERS = {
    1: ("tl", "tr"),
    2: ("tr", "tl"),
    3: ("br", "bl"),
    4: ("bl", "br"),
    5: ("tl", "bl"),
    6: ("tr", "br"),
    7: ("br", "tr"),
    8: ("bl", "tl"),
}


def _corner(arr: np.ndarray, where: str) -> np.ndarray:
    h, w = arr.shape[:2]
    r = 4 if where[0] == "t" else h - 5
    c = 4 if where[1] == "l" else w - 5
    return arr[r, c]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_to_jpeg(tmp_path: Path, orientation: int) -> None:
    # Stored 16 x 32: gray, with a red 8x8 block at stored (0, 0) and a blue one at stored (0, W-1).
    stored = np.full((16, 32, 3), 128, np.uint8)
    stored[:8, :8] = (255, 0, 0)
    stored[:8, -8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestMake"
    path = _save(Image.fromarray(stored), tmp_path / f"o{orientation}.jpg", quality=100, exif=exif.tobytes())
    d = read_image(path)
    expect_shape = (16, 32) if orientation <= 4 else (32, 16)
    assert d.rgb.shape[:2] == expect_shape
    red_at, blue_at = CORNERS[orientation]
    assert np.allclose(_corner(d.rgb, red_at), (1, 0, 0), atol=0.08)
    assert np.allclose(_corner(d.rgb, blue_at), (0, 0, 1), atol=0.08)
    # Pillow's exif_transpose agrees, and the EXIF kept for output says "upright" but keeps the rest.
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(_u8(d.rgb), ref)
    assert d.exif is not None
    kept = Image.Exif()
    kept.load(d.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "TestMake"


def test_apply_orientation_inverts_pillow_transposes() -> None:
    a = np.arange(3 * 5).reshape(3, 5)
    for o in range(1, 9):
        ref = np.asarray(ImageOps.exif_transpose(_with_orientation(a.astype(np.uint8), o)))
        assert np.array_equal(apply_orientation(a, o), ref), o
    assert apply_orientation(a, 0) is a and apply_orientation(a, 9) is a


def _with_orientation(a: np.ndarray, o: int) -> Image.Image:
    im = Image.fromarray(a)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = o
    im.save(buf, "PNG", exif=exif.tobytes())
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("order", ["<", ">"])
def test_reset_exif_orientation_patches_only_that_short(order: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "Model X"
    exif.endian = order
    raw = exif.tobytes()
    out = reset_exif_orientation(raw)
    assert out.startswith(b"Exif\0\0") and len(out) == len(raw)
    diff = [i for i in range(len(raw)) if raw[i] != out[i]]
    assert 1 <= len(diff) <= 2  # the 2-byte value, nothing else
    back = Image.Exif()
    back.load(out)
    assert back[0x0112] == 1 and back[0x0110] == "Model X"
    with pytest.raises(ValueError):
        reset_exif_orientation(b"Exif\0\0garbage!")
    # IFD1 (the embedded preview, which would show the untranslated photo) is unlinked.
    with_thumb = b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 26)
    with_thumb += struct.pack("<HHHIII", 1, 0x0103, 3, 1, 6, 0)
    out = reset_exif_orientation(with_thumb)
    assert out[6 + 22 : 6 + 26] == b"\0\0\0\0" and len(out) == 6 + len(with_thumb)
    assert reset_exif_orientation(with_thumb, drop_thumbnail=False)[6 + 22 : 6 + 26] == struct.pack("<I", 26)
    # Orientation stored as a LONG by a sloppy writer: still reset (else viewers would rotate twice).
    as_long = b"II*\x00" + struct.pack("<IHHHII", 8, 1, 0x0112, 4, 1, 6) + b"\0\0\0\0"
    back.load(reset_exif_orientation(as_long))
    assert back[0x0112] == 1


def test_png_exif_orientation(tmp_path: Path) -> None:
    a = _rand(6, 10, 4)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.fromarray(a), tmp_path / "rot.png", exif=exif.tobytes())
    d = read_image(path)
    assert np.array_equal(_u8(d.rgb), np.rot90(a[..., :3], -1))
    assert np.array_equal(_u8(d.alpha), np.rot90(a[..., 3], -1))


def _tiff16(arr: np.ndarray, orientation: int) -> bytes:
    """An uncompressed little-endian 16-bit RGB(A) TIFF with an Orientation tag (Pillow cannot write one)."""
    h, w, c = arr.shape
    n_entries = 12 if c == 4 else 11
    bits_at = 8 + 2 + 12 * n_entries + 4
    data_at = bits_at + 2 * c
    entries = [
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, c, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, data_at), (274, 3, 1, orientation), (277, 3, 1, c), (278, 4, 1, h),
        (279, 4, 1, arr.size * 2), (284, 3, 1, 1),
    ] + ([(338, 3, 1, 2)] if c == 4 else [])  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HH", value, 0) if typ == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    return (
        b"II*\x00"
        + struct.pack("<I", 8)
        + ifd
        + struct.pack("<" + "H" * c, *[16] * c)
        + arr.astype("<u2").tobytes()
    )


@pytest.mark.parametrize("orientation", [1, 3, 6, 7])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_orientation_applied_once(tmp_path: Path, orientation: int, channels: int) -> None:
    a = _rand(4, 6, channels, np.uint16)
    path = tmp_path / "o.tif"
    path.write_bytes(_tiff16(a, orientation))
    d = read_image(path)
    assert d.bit_depth == 16
    assert np.array_equal(_u16(d.rgb), apply_orientation(a[..., :3], orientation))
    if channels == 4:
        assert np.array_equal(_u16(d.alpha), apply_orientation(a[..., 3], orientation))


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


def test_16bit_gray_alpha_to_tiff_is_stored_as_rgba(tmp_path: Path) -> None:
    la = _rand(3, 4, 2, np.uint16)
    d = from_array(la)
    e = read_image(write_image(tmp_path / "la.tif", d.rgb, d))
    assert e.bit_depth == 16 and not e.grayscale  # documented: RGBA with R = G = B
    assert np.array_equal(_u16(e.rgb[..., 1]), la[..., 0]) and np.array_equal(_u16(e.alpha), la[..., 1])


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


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = _save(im, tmp_path / "p.png", transparency=bytes([0, 128, 255]))
    d = read_image(path)
    assert d.alpha is not None and not d.grayscale
    assert np.array_equal(_u8(d.alpha), np.array([[0, 128, 255], [255, 128, 0]]))
    assert np.array_equal(_u8(d.rgb[0, 2]), (0, 0, 255))
    out = write_image(tmp_path / "o.png", d.rgb, d)
    assert Image.open(out).mode == "RGBA"


def test_gray_palette_gif_animation_is_grayscale_in_every_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 5), v, np.uint8)).convert("P") for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    d = read_image(path)
    assert d.grayscale and d.format == "GIF" and np.allclose(d.rgb, 10 / 255)
    assert d.animation is not None and d.animation.count == 2
    (second,) = d.animation.frames
    assert second.grayscale and np.allclose(second.rgb, 200 / 255)
    assert output_suffix(".gif", d.format, "same", animated=True) == ".gif"
    # a colour result is written gray: every frame's three channels equal
    # (distinct frames: Pillow's GIF writer merges equal ones)
    results = [np.full((4, 5, 3), c, np.uint8) for c in ((200, 40, 40), (30, 90, 220))]
    out = write_image(tmp_path / "out.gif", results, d)
    with Image.open(out) as im:
        for i in range(2):
            im.seek(i)
            rgb = np.asarray(im.convert("RGB")).astype(int)
            assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("mode", ["1", "L", "LA"])
def test_8bit_gray_modes(tmp_path: Path, mode: str) -> None:
    g = _rand(7, 5, 2 if mode == "LA" else None)
    if mode == "1":
        g = (g > 127).astype(np.uint8) * 255
    im = Image.fromarray(g).convert(mode)
    d = read_image(_save(im, tmp_path / "g.png"))
    assert d.grayscale and d.bit_depth == 8 and d.rgb.shape == (7, 5, 3)
    gray = g[..., 0] if mode == "LA" else g
    assert np.array_equal(_u8(d.rgb[..., 1]), gray)
    assert (d.alpha is not None) == (mode == "LA")
    if mode == "LA":
        assert np.array_equal(_u8(d.alpha), g[..., 1])


def test_16bit_gray_png(tmp_path: Path) -> None:
    g = _rand(5, 9, None, np.uint16)
    d = read_image(_save(Image.fromarray(g), tmp_path / "g16.png"))
    assert d.grayscale and d.bit_depth == 16 and d.alpha is None
    assert np.array_equal(_u16(d.rgb[..., 2]), g)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_rgb_and_rgba_png_keep_all_bits(tmp_path: Path, channels: int) -> None:
    a = _rand(6, 7, channels, np.uint16)
    d = read_image(_cv2_write(tmp_path / "c16.png", a))
    assert d.bit_depth == 16 and not d.grayscale
    assert np.array_equal(_u16(d.rgb), a[..., :3])
    if channels == 4:
        assert np.array_equal(_u16(d.alpha), a[..., 3])


def test_16bit_gray_alpha_png(tmp_path: Path) -> None:
    la = _rand(4, 6, 2, np.uint16)
    path = tmp_path / "la16.png"
    path.write_bytes(encode_png(la))
    d = read_image(path)
    assert d.grayscale and d.bit_depth == 16
    assert np.array_equal(_u16(d.rgb[..., 0]), la[..., 0]) and np.array_equal(_u16(d.alpha), la[..., 1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encode_png_decodes_exactly(channels: int, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpng (through OpenCV) and Pillow read back every sample; bands of 2 rows (band boundaries
    inside the image, the filter's "row above" taken across them); the ICC profile and EXIF come back
    as written."""
    from imgxlate.imaging import encode as encode_mod

    a = _rand(7, 3, channels, dtype)
    monkeypatch.setattr(encode_mod, "_PNG_BAND_BYTES", 2 * (3 * channels * a.itemsize + 1))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "imgxlate test"  # Make
    strided = np.asfortranarray(a)  # samples as results often come: not C-contiguous
    png = encode_png(strided[..., 0] if channels == 1 else strided, icc if channels > 2 else None, exif.tobytes())
    back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels == 1:
        assert np.array_equal(back, a[..., 0])
    elif channels == 2:  # OpenCV expands gray+alpha to BGRA
        assert np.array_equal(back[..., 0], a[..., 0]) and np.array_equal(back[..., 3], a[..., 1])
    else:
        order = [2, 1, 0] if channels == 3 else [2, 1, 0, 3]
        assert np.array_equal(back[..., order], a)
    Image.open(io.BytesIO(png)).verify()  # CRCs and chunk layout
    with Image.open(io.BytesIO(png)) as im:
        assert im.getexif()[0x010F] == "imgxlate test"
        assert im.info.get("icc_profile") == (icc if channels > 2 else None)
        if dtype == np.uint8:
            assert np.array_equal(np.asarray(im), a[..., 0] if channels == 1 else a)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_png(a.astype(np.float32))
    for bad in (np.zeros((0, 3, 3), dtype), np.zeros((2, 0), dtype), np.zeros((2, 2, 5), dtype)):
        with pytest.raises(ValueError, match="H, W >= 1"):
            encode_png(bad)
    if dtype == np.uint16:  # big-endian input is taken as well: the same file
        assert encode_png(a.astype(">u2")) == encode_png(a)


def test_float_tiffs(tmp_path: Path) -> None:
    rgb = RNG.random((4, 6, 3), dtype=np.float32)
    d = read_image(_cv2_write(tmp_path / "f.tiff", rgb))
    assert d.bit_depth == 16 and not d.grayscale and np.allclose(d.rgb, rgb, atol=1e-6)
    gray = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)  # out-of-range values are clipped
    d = read_image(_save(Image.fromarray(gray, mode="F"), tmp_path / "g.tif"))
    assert d.grayscale and d.bit_depth == 16 and np.allclose(d.rgb[..., 0], np.clip(gray, 0, 1), atol=1e-6)


def test_16bit_rgba_tiff(tmp_path: Path) -> None:
    a = _rand(5, 4, 4, np.uint16)
    d = read_image(_cv2_write(tmp_path / "t16.tif", a))
    assert (
        d.bit_depth == 16
        and np.array_equal(_u16(d.rgb), a[..., :3])
        and np.array_equal(_u16(d.alpha), a[..., 3])
    )


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 2)])
def test_tiny_and_odd_sizes_round_trip(tmp_path: Path, size: tuple[int, int]) -> None:
    a = _rand(*size)
    d = read_image(_save(Image.fromarray(a), tmp_path / "x.png"))
    assert (d.height, d.width) == size
    back = read_image(write_image(tmp_path / "y.png", d.rgb, d))
    assert np.array_equal(_u8(back.rgb), a)


# ------------------------------------------------------------------------------------------ errors


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 64)  # the start of the pixel data; the rest never comes
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13) + b"IHDR" + ihdr + crc
        + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )  # fmt: skip


def test_decompression_bomb_refused_from_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    saved = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match="--max-pixels") as err:
        read_image(path)
    assert "10,000,000,000" in str(err.value) and "250,000,000" in str(err.value)
    assert Image.MAX_IMAGE_PIXELS == saved  # Pillow's global is left as it was
    small = _save(Image.fromarray(_rand(4, 4)), tmp_path / "s.png")
    with pytest.raises(ImageReadError, match="more than the limit of 10"):
        read_image(small, max_pixels=10)
    assert read_image(small, max_pixels=None).width == 4
    # Above Pillow's own limit (2 x 89 M pixels), below ours: our limit rules, no bomb error.
    path.write_bytes(_png_header_only(20_000, 10_000))
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert "--max-pixels" not in str(err.value)


@pytest.mark.parametrize("suffix", [".tif", ".gif", ".png"])
def test_pillow_global_limit_does_not_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # Pillow warns above its MAX_IMAGE_PIXELS and refuses above twice it, in open() and for some
    # formats in load(); max_pixels is the only limit, and the user's global is left as it was.
    path = _save(Image.fromarray(_rand(20, 20)), tmp_path / f"x{suffix}")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).width == 20
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("kind", ["jpg", "png", "png16"])
def test_truncated_files_are_errors(tmp_path: Path, kind: str) -> None:
    a = _rand(32, 32)
    path = tmp_path / f"t.{kind[:3]}"
    if kind == "png16":
        _cv2_write(path, a.astype(np.uint16) * 257)
    else:
        _save(Image.fromarray(a), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image(path)


def test_unreadable_inputs_say_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("hello, this is not a photo\n")
    with pytest.raises(ImageReadError, match=r"text file.*\.jpg"):
        read_image(text)
    junk = tmp_path / "junk.png"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageReadError, match="not an image format"):
        read_image(junk)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_heic_without_plugin_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A HEIC file Pillow cannot open: without pillow-heif, what to install; with it, a damaged file
    (before, "install pillow-heif" was said also where it was installed)."""
    formats.READ_SUFFIXES  # the plugin registry is filled at import  # noqa: B018
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    monkeypatch.setitem(formats._plugins, "heif", False)
    with pytest.raises(ImageReadError, match="pip install pillow-heif"):
        read_image(path)
    monkeypatch.setitem(formats._plugins, "heif", True)
    with pytest.raises(ImageReadError, match="damaged HEIC"):
        read_image(path)
    assert ".heic" in formats.READ_SUFFIXES


def test_jxl_without_plugin_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JPEG XL file (bare codestream or container) Pillow cannot open: what to install; with the
    plugin, a damaged file."""
    formats.READ_SUFFIXES  # the plugin registry is filled at import  # noqa: B018
    assert ".jxl" in formats.READ_SUFFIXES
    for i, head in enumerate((b"\xff\x0a\xfa\x1f", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        path = tmp_path / f"{i}.jxl"
        path.write_bytes(head + bytes(40))
        with monkeypatch.context() as m:  # as without the plugin: Pillow does not know the format
            m.setattr(Image, "ID", [f for f in Image.ID if f != "JXL"])
            m.setitem(formats._plugins, "jxl", False)
            with pytest.raises(ImageReadError, match=r"JPEG XL image; install the pillow-jxl-plugin"):
                read_image(path)
        if formats._plugins.get("jxl"):  # the plugin tries and fails: a damaged file, not libjxl's words
            with pytest.raises(ImageReadError, match="damaged JPEG XL"):
                read_image(path)


def test_jxl_reads_exactly_and_converts_to_png(tmp_path: Path) -> None:
    """A lossless JPEG XL (the `jxl` extra): the pixels as encoded; `--format same` writes PNG."""
    pytest.importorskip("pillow_jxl", reason="the jxl extra is not installed")
    src = _rand(24, 32)
    Image.fromarray(src).save(tmp_path / "shot.jxl", lossless=True)
    d = read_image(tmp_path / "shot.jxl")
    assert d.format == "JXL" and d.bit_depth == 8 and np.array_equal(d.pixels, src)
    assert output_suffix(".jxl", d.format, "same") == ".png"


def test_heic_photo_reads_upright_and_converts_to_png(tmp_path: Path) -> None:
    """An iPhone-style HEIC (pillow-heif, the `heic` extra) with EXIF orientation 6: read upright,
    8-bit, close to what was encoded (HEVC is lossy); `--format same` writes PNG."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="the heic extra is not installed")
    src = _rand(6, 8)  # smooth: HEVC's 4:2:0 chroma would blur finer colour detail
    big = np.asarray(Image.fromarray(src).resize((128, 96), Image.Resampling.BICUBIC))
    exif = Image.Exif()
    exif[0x0112] = 6
    pillow_heif.from_pillow(Image.fromarray(big)).save(tmp_path / "IMG_0002.HEIC", quality=95, exif=exif.tobytes())
    d = read_image(tmp_path / "IMG_0002.HEIC")
    assert d.format == "HEIF" and d.bit_depth == 8 and d.pixels.shape == (128, 96, 3)
    upright = np.rot90(big, -1).astype(np.float64)
    mse = float(np.mean((d.rgb * 255 - upright) ** 2))
    assert 10 * np.log10(255**2 / mse) > 30  # turned the other way: ~9 dB
    assert output_suffix(".HEIC", "HEIF", "same") == ".png"


def test_odd_names_read_and_write(tmp_path: Path) -> None:
    a = _rand(4, 4)
    path = _save(Image.fromarray(a), tmp_path / "été 2014-08-01 17:41:55 ✓.png")
    d = read_image(path)
    out = write_image(tmp_path / "out dir" / "résultat: 1 ✓.png", d.rgb, d)
    assert out.exists() and np.array_equal(np.asarray(Image.open(out)), a)


# ------------------------------------------------------------------------------------- round trips


def _make(kind: str, path: Path) -> Path:
    if kind == "rgb8":
        return _save(Image.fromarray(_rand(5, 6)), path)
    if kind == "rgba8":
        return _save(Image.fromarray(_rand(5, 6, 4)), path)
    if kind == "l8":
        return _save(Image.fromarray(_rand(5, 6, None)), path)
    if kind == "la8":
        return _save(Image.fromarray(_rand(5, 6, 2)), path)
    if kind == "gray16":
        return _save(Image.fromarray(_rand(5, 6, None, np.uint16)), path)
    if kind in ("rgb16", "rgba16"):
        return _cv2_write(path, _rand(5, 6, 3 if kind == "rgb16" else 4, np.uint16))
    if kind == "la16":
        path.write_bytes(encode_png(_rand(5, 6, 2, np.uint16)))
        return path
    raise AssertionError(kind)


ROUND_TRIPS = [(k, ".png") for k in ("rgb8", "rgba8", "l8", "la8", "gray16", "rgb16", "rgba16", "la16")] + [
    (k, ".tif") for k in ("rgb8", "rgba8", "l8", "la8", "gray16", "rgb16", "rgba16")
]


@pytest.mark.parametrize(("kind", "suffix"), ROUND_TRIPS)
def test_lossless_round_trip_keeps_everything(tmp_path: Path, kind: str, suffix: str) -> None:
    src = _make(kind, tmp_path / f"src{suffix}")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    d = read_image(src)
    dst = tmp_path / ("dst" + output_suffix(src.suffix, d.format, "same", bit_depth=d.bit_depth))
    assert dst.suffix == suffix
    write_image(dst, d.rgb, d)
    e = read_image(dst)
    assert (e.height, e.width, e.grayscale, e.bit_depth) == (d.height, d.width, d.grayscale, d.bit_depth)
    assert (e.alpha is None) == (d.alpha is None)
    q = _u16 if d.bit_depth == 16 else _u8
    assert np.array_equal(q(e.rgb), q(d.rgb))
    if d.alpha is not None:
        assert np.array_equal(q(e.alpha), q(d.alpha))
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # the input is never modified
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_output_carries_icc_and_exif(tmp_path: Path, suffix: str, channels: int) -> None:
    a = _rand(4, 5, channels, np.uint16)
    d = from_array(a)
    d.icc_profile = ADOBE_ICC  # as kept from a source whose pixels were not converted
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    d.exif = exif.tobytes()
    out = write_image(tmp_path / ("o" + suffix), d.rgb, d)
    if suffix == ".png":
        Image.open(out).verify()  # chunk CRCs and order after splicing iCCP / eXIf
    im = Image.open(out)
    assert im.info.get("icc_profile") == ADOBE_ICC
    assert im.getexif()[0x010F] == "Cam" and im.getexif().get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    again = read_image(out)  # Adobe RGB 16-bit: converted to sRGB at full precision on read
    assert again.bit_depth == 16 and again.icc_profile == srgb_profile()
    expect = color.shaper_to_srgb(a[..., :3], color._matrix_shaper(ADOBE_ICC), 65536)
    assert np.max(np.abs(again.rgb - expect)) < 1e-5
    if channels == 4:
        assert np.array_equal(_u16(again.alpha), a[..., 3])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_exif_travels_to_every_output_format(tmp_path: Path, suffix: str) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif[0x0112] = 8
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"  # DateTimeOriginal, in the Exif sub-IFD
    d = read_image(_save(Image.fromarray(_rand(4, 6)), tmp_path / "src.jpg", exif=exif.tobytes()))
    assert d.rgb.shape[:2] == (6, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = write_image(tmp_path / ("out" + suffix), d.rgb, d)
    got = Image.open(out).getexif()
    assert got[0x010F] == "Cam" and got[0x0112] == 1
    assert got.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    again = read_image(out)
    assert again.rgb.shape[:2] == (6, 4)  # not rotated a second time
    if suffix == ".tif":  # a TIFF source gives its descriptive tags, not its layout (strip offsets ...)
        kept = Image.Exif()
        kept.load(again.exif)
        assert kept[0x010F] == "Cam" and 0x0111 not in kept and 0x0100 not in kept
        assert kept.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"


def test_gray_with_transparency_key(tmp_path: Path) -> None:
    g = np.array([[5, 6], [7, 5]], np.uint8)
    d = read_image(_save(Image.fromarray(g), tmp_path / "k.png", transparency=5))
    assert d.grayscale and np.array_equal(d.alpha, [[0, 1], [1, 0]])


def test_webp_and_jpeg_outputs(tmp_path: Path) -> None:
    rgba = _rand(6, 8, 4)
    rgba[0, 0, 3] = 0
    d = read_image(_save(Image.fromarray(rgba), tmp_path / "a.png"))
    w = read_image(write_image(tmp_path / "a.webp", d.rgb, d, quality=100))  # lossless at 100
    assert np.array_equal(_u8(w.rgb), rgba[..., :3]) and np.array_equal(_u8(w.alpha), rgba[..., 3])
    j = read_image(write_image(tmp_path / "a.jpg", d.rgb, d, fmt="jpg"))
    assert j.alpha is None and np.allclose(j.rgb[0, 0], 1.0, atol=0.1)  # alpha 0 -> white
    # A gray source writes a gray JPEG: the colour result goes through luma.
    g = read_image(_save(Image.fromarray(_rand(4, 4, None)), tmp_path / "g.jpg"))
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1
    out = write_image(tmp_path / "g_out.jpg", red, g)
    assert Image.open(out).mode == "L" and abs(int(np.asarray(Image.open(out))[2, 2]) - 76) <= 2


def test_write_is_atomic_and_never_overwrites_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _save(Image.fromarray(_rand(4, 4)), tmp_path / "in.png")
    d = read_image(src)
    with pytest.raises(ImageWriteError, match="input"):
        write_image(src, d.rgb, d)
    existing = tmp_path / "old.png"
    existing.write_bytes(b"previous result")

    from imgxlate import _atomic
    from imgxlate.errors import DiskFullError

    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:  # the disk filled half way through the write
        real_write(fd, bytes(memoryview(data)[: len(memoryview(data)) // 2]))
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(_atomic.os, "write", half_then_full)
        with pytest.raises(DiskFullError, match="disk full while writing"):
            write_image(existing, d.rgb, d)
    assert existing.read_bytes() == b"previous result" and _no_temp_files(tmp_path)

    def boom(*args: object, **kwargs: object) -> None:
        raise ValueError("encoder exploded")

    from imgxlate.imaging import encode as encode_mod

    monkeypatch.setattr(encode_mod, "encode_png", boom)  # PNG stills: imgxlate's own encoder
    with pytest.raises(ImageWriteError, match="encoder failed"):
        write_image(existing, d.rgb, d)
    monkeypatch.setattr(Image.Image, "save", boom)  # the other formats: Pillow's
    with pytest.raises(ImageWriteError, match="encoder failed"):
        write_image(existing, d.rgb, d, fmt="webp")
    assert existing.read_bytes() == b"previous result" and _no_temp_files(tmp_path)
    with pytest.raises(ImageWriteError, match="shape"):
        write_image(tmp_path / "bad.png", np.zeros((4, 4)), d)
    assert not (tmp_path / "bad.png").exists()


def test_write_checks_format_and_quality(tmp_path: Path) -> None:
    d = from_array(_rand(2, 2))
    with pytest.raises(ImageWriteError, match=r"\.bmp"):
        write_image(tmp_path / "x.bmp", d.rgb, d)
    with Image.open(write_image(tmp_path / "x.gif", d.rgb, d)) as im:  # asked for by name: a one-frame GIF
        assert im.format == "GIF" and im.size == (2, 2)
    assert write_image(tmp_path / "x.unknown", d.rgb, d, fmt="png").exists()
    with pytest.raises(UsageError, match="quality"):
        write_image(tmp_path / "x.jpg", d.rgb, d, quality=0)
    wide = from_array(np.zeros((1, 16384, 3), np.uint8))
    with pytest.raises(ImageWriteError, match="at most 16383"):
        write_image(tmp_path / "wide.webp", wide.rgb, wide)
    assert not (tmp_path / "wide.webp").exists()


def test_output_suffix() -> None:
    assert output_suffix(".JPG", "JPEG", "same") == ".JPG"
    assert output_suffix(".jpeg", "MPO", "same") == ".jpeg"
    assert output_suffix(".jpg", "PNG", "same") == ".png"  # the name lied about the format
    assert output_suffix(".tif", "TIFF", "same", bit_depth=16) == ".tif"
    assert output_suffix(".bmp", "BMP", "same") == ".png"
    assert output_suffix(".gif", None, "same") == ".png"
    assert output_suffix(".webp", None, "same") == ".webp"
    assert output_suffix(".png", "PNG", "JPEG") == ".jpg"
    assert output_suffix(".png", "PNG", "tif") == ".tif"
    with pytest.raises(UsageError, match="did you mean 'webp'"):
        output_suffix(".png", "PNG", "wepb")


def test_read_suffixes() -> None:
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= formats.READ_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in formats.READ_SUFFIXES)
    assert not {".eps", ".mpg", ".mpeg", ".h5", ".grib", ".bufr"} & formats.READ_SUFFIXES


# ----------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    ("shape", "dtype", "out_shape"),
    [
        ((3, 4), np.uint8, (3, 4)),
        ((3, 4, 1), np.uint8, (3, 4)),
        ((3, 4, 2), np.uint16, (3, 4, 2)),
        ((3, 4, 3), np.uint8, (3, 4, 3)),
        ((3, 4, 4), np.uint16, (3, 4, 4)),
        ((3, 4, 3), np.float32, (3, 4, 3)),
        ((3, 4, 4), np.float64, (3, 4, 4)),
    ],
)
def test_from_array_to_array_identity(
    shape: tuple[int, ...], dtype: type, out_shape: tuple[int, ...]
) -> None:
    if np.issubdtype(dtype, np.floating):
        a = RNG.random(shape).astype(dtype)
    else:
        a = _rand(shape[0], shape[1], shape[2] if len(shape) == 3 else None, dtype)
    d = from_array(a)
    assert d.rgb.shape == (3, 4, 3) and d.rgb.dtype == np.float32
    assert d.grayscale == (len(out_shape) == 2 or out_shape[2] == 2)
    back = to_array(d.rgb, d)
    assert back.shape == out_shape
    if np.issubdtype(dtype, np.floating):
        assert back.dtype == dtype and np.allclose(back, a.reshape(out_shape), atol=1e-6)
    else:
        assert back.dtype == dtype and np.array_equal(back, a.reshape(out_shape))


def test_from_array_rejects_bad_input() -> None:
    with pytest.raises(ImageReadError, match="shape"):
        from_array(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageReadError, match="shape"):
        from_array(np.zeros((0, 3), np.uint8))
    with pytest.raises(ImageReadError, match="NaN"):
        from_array(np.full((2, 2), np.nan))
    with pytest.raises(ImageReadError, match="span"):
        from_array(np.array([[-1, 3]]))
    assert from_array(np.array([[0, 255]])).bit_depth == 8  # int64 within 0..255 is 8-bit
    assert from_array(np.array([[0, 1000]])).bit_depth == 16


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "F", "1"])
def test_from_array_takes_pil_images(mode: str) -> None:
    im = Image.fromarray(_rand(4, 6)).convert(mode)
    d = from_array(im)
    assert d.rgb.shape == (4, 6, 3)
    assert d.grayscale == (mode in ("L", "LA", "I;16", "F", "1"))
    assert (d.alpha is not None) == (mode in ("RGBA", "LA"))
    out = to_array(d.rgb, d)
    assert out.shape[:2] == (4, 6)


def test_to_array_resizes_alpha_when_the_result_changed_size() -> None:
    d = from_array(_rand(4, 6, 4))
    out = to_array(np.zeros((8, 12, 3), np.float32), d)
    assert out.shape == (8, 12, 4)


def test_decoded_image_properties() -> None:
    d = DecodedImage(np.zeros((2, 3, 3), np.float32), None, 8, False, "PNG", None, None)
    assert (d.height, d.width) == (2, 3)


# ----------------------------------------------------------------------------------------- corpus

CORPUS = {
    # name: (height, width, alpha, bit depth, grayscale, converted to sRGB)
    "mixed/00003.png": (256, 512, False, 8, False, False),
    "mixed/OST_009.png": (640, 448, False, 8, False, False),
    "mixed/0014.jpg": (179, 179, False, 8, False, False),
    "mixed/0030.jpg": (220, 220, False, 8, False, False),
    "mixed/00017_gray.png": (351, 500, False, 8, True, False),
    "mixed/wolf_gray.jpg": (236, 236, False, 8, True, False),
    "mixed/children-alpha.png": (350, 566, True, 8, False, False),
    "mixed/tree_alpha_16bit.png": (256, 342, True, 16, False, True),  # Adobe RGB
    "mixed/ADE_val_00000114.jpg": (256, 256, False, 8, False, False),
    "photos/2014-08-01 17:41:55.jpg": (256, 256, False, 8, False, True),  # ProPhoto RGB
    "photos/2014-08-03 17:39:45.jpg": (256, 256, False, 8, False, True),  # Adobe RGB
    "photos/2014-08-02 00:36:32.jpg": (256, 256, False, 8, False, False),  # sRGB
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_reads_and_round_trips(corpus_dir: Path, tmp_path: Path, name: str) -> None:
    src = corpus_dir / name
    h, w, has_alpha, depth, gray, converted = CORPUS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no corpus file should need a warning
        d = read_image(src)
    assert (d.height, d.width, d.alpha is not None, d.bit_depth, d.grayscale) == (
        h,
        w,
        has_alpha,
        depth,
        gray,
    )
    assert (d.icc_profile == srgb_profile()) == converted
    if converted and depth == 8:
        icc = Image.open(src).info["icc_profile"]
        ref = _littlecms_to_srgb(np.asarray(Image.open(src).convert("RGB")), icc)
        assert np.max(np.abs(d.rgb - ref)) * 255 <= 1.0
    dst = tmp_path / ("out" + output_suffix(src.suffix, d.format, "same", bit_depth=d.bit_depth))
    write_image(dst, d.rgb, d)
    e = read_image(dst)
    assert (e.height, e.width, e.alpha is not None, e.bit_depth, e.grayscale) == (
        h,
        w,
        has_alpha,
        depth,
        gray,
    )
    if dst.suffix == ".png":
        q = _u16 if depth == 16 else _u8
        assert np.array_equal(q(e.rgb), q(d.rgb))
    else:  # JPEG re-encode at quality 95, 4:4:4
        assert np.mean(np.abs(e.rgb - d.rgb)) < 0.01
    if has_alpha:
        q = _u16 if depth == 16 else _u8
        assert np.array_equal(q(e.alpha), q(d.alpha))


def test_corpus_every_image_reads(corpus_dir: Path) -> None:
    files = [p for p in sorted(corpus_dir.rglob("*")) if p.suffix.lower() in formats.READ_SUFFIXES]
    assert len(files) >= 20
    for p in files:
        d = read_image(p)
        assert d.rgb.dtype == np.float32 and 0.0 <= d.rgb.min() and d.rgb.max() <= 1.0


def test_multi_page_tiff_pages(tmp_path: Path) -> None:
    """Every page is decoded like a still (8-bit RGB, gray, 16-bit gray), the first being the image
    itself; frames=False gives the first page and counts the others; 16-bit colour pages (Pillow would
    cut them to 8 bits) leave the file at its first page, the others counted."""
    from imgxlate.imaging import fit_to_target, read_image

    rgb = [Image.fromarray(np.full((8, 10, 3), 50 * i, np.uint8)) for i in range(4)]
    rgb[0].save(tmp_path / "rgb.tif", save_all=True, append_images=rgb[1:])
    first = read_image(tmp_path / "rgb.tif")
    assert len(first.pages) == 3 and first.pages_left_out == 0 and len(first.frames) == 4
    assert [int(p.pixels[0, 0, 0]) for p in first.frames] == [0, 50, 100, 150]
    assert all(p.format == "TIFF" and p.source == first.source for p in first.pages)
    still = read_image(tmp_path / "rgb.tif", frames=False)
    assert still.pages == () and still.pages_left_out == 3
    as_png = fit_to_target(first, tmp_path / "out.png")
    assert as_png.pages == () and as_png.pages_left_out == 3
    assert fit_to_target(first, tmp_path / "out.tiff") is first

    gray = [Image.fromarray(np.full((6, 7), 9000 * (i + 1), np.uint16)) for i in range(2)]
    gray[0].save(tmp_path / "gray16.tif", save_all=True, append_images=gray[1:])
    g = read_image(tmp_path / "gray16.tif")
    assert len(g.pages) == 1 and g.grayscale and g.bit_depth == 16 and g.pages[0].bit_depth == 16

    assert cv2.imwritemulti(str(tmp_path / "deep.tif"), [np.full((5, 6, 3), 40000, np.uint16)] * 2)
    deep = read_image(tmp_path / "deep.tif")
    assert deep.pages == () and deep.pages_left_out == 1 and deep.bit_depth == 16
    rgb[0].save(tmp_path / "one.tif")
    one = read_image(tmp_path / "one.tif")
    assert one.pages == () and one.pages_left_out == 0


def test_multi_page_tiff_pixel_limit_counts_every_page(tmp_path: Path) -> None:
    from imgxlate.errors import ImageReadError
    from imgxlate.imaging import read_image

    pages = [Image.fromarray(np.zeros((10, 10, 3), np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "three.tif", save_all=True, append_images=pages[1:])
    assert len(read_image(tmp_path / "three.tif", max_pixels=300).pages) == 2
    with pytest.raises(ImageReadError, match="3 pages"):
        read_image(tmp_path / "three.tif", max_pixels=299)
