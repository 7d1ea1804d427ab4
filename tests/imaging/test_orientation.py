"""imgxlate.imaging: EXIF orientation, applied once, for every kind that carries it."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from image_helpers import _rand, _save, _u8, _u16
from PIL import Image, ImageOps

from imgxlate.imaging import (
    apply_orientation,
    read_image,
    reset_exif_orientation,
)

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
