"""imgxlate.imaging: writing results (PNG writer, round trips, metadata, atomic writes, suffixes)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_helpers import ADOBE_ICC, _cv2_write, _no_temp_files, _rand, _save, _u8, _u16
from PIL import Image, ImageCms

from imgxlate.errors import ImageWriteError, UsageError
from imgxlate.imaging import (
    color,
    encode_png,
    from_array,
    output_suffix,
    read_image,
    srgb_profile,
    write_image,
)
from imgxlate.imaging.formats import webp_is_lossless


def test_16bit_gray_alpha_to_tiff_is_stored_as_rgba(tmp_path: Path) -> None:
    la = _rand(3, 4, 2, np.uint16)
    d = from_array(la)
    e = read_image(write_image(tmp_path / "la.tif", d.rgb, d))
    assert e.bit_depth == 16 and not e.grayscale  # documented: RGBA with R = G = B
    assert np.array_equal(_u16(e.rgb[..., 1]), la[..., 0]) and np.array_equal(_u16(e.alpha), la[..., 1])


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
    with pytest.warns(UserWarning, match="transparency was flattened onto white"):
        j = read_image(write_image(tmp_path / "a.jpg", d.rgb, d, fmt="jpg"))
    assert j.alpha is None and np.allclose(j.rgb[0, 0], 1.0, atol=0.1)  # alpha 0 -> white
    # A gray source writes a gray JPEG: the colour result goes through luma.
    g = read_image(_save(Image.fromarray(_rand(4, 4, None)), tmp_path / "g.jpg"))
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1
    out = write_image(tmp_path / "g_out.jpg", red, g)
    assert Image.open(out).mode == "L" and abs(int(np.asarray(Image.open(out))[2, 2]) - 76) <= 2


def test_a_jpeg_output_says_when_it_flattened_transparency(tmp_path: Path) -> None:
    """JPEG has no alpha: a transparent source is composited on white and the result says so (it was
    reported converted without a word); an alpha that is opaque everywhere loses nothing and says nothing."""
    from imgxlate.imaging.notices import collected

    for name, alpha, notes in (("holes", 0, 1), ("opaque", 255, 0)):
        rgba = _rand(6, 8, 4)
        rgba[..., 3] = 255
        rgba[0, 0, 3] = alpha
        d = read_image(_save(Image.fromarray(rgba), tmp_path / f"{name}.png"))
        with collected() as said:
            write_image(tmp_path / f"{name}.jpg", d.rgb, d)
        assert len(said) == notes, (name, said)
        assert all("--format png or webp" in text for text in said)
    # an opaque alpha resized to a smaller result (Python callers) comes out a hair under 1: no note
    opaque = from_array(np.dstack([_rand(300, 400, 3), np.full((300, 400), 255, np.uint8)]))
    with collected() as said:
        write_image(tmp_path / "smaller.jpg", np.zeros((123, 177, 3), np.float32), opaque)
    assert said == []


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


def _webp_bytes(frames: list[np.ndarray], **options: object) -> bytes:
    buf = io.BytesIO()
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(buf, "WEBP", save_all=len(ims) > 1, append_images=ims[1:], **options)
    return buf.getvalue()


def test_webp_is_lossless_walks_the_riff_chunks() -> None:
    rgb, rgba = _rand(16, 16), _rand(16, 16, 4)
    assert webp_is_lossless(_webp_bytes([rgb], lossless=True))  # simple: one VP8L chunk
    assert not webp_is_lossless(_webp_bytes([rgb], quality=90))  # simple: one "VP8 " chunk
    assert not webp_is_lossless(_webp_bytes([rgba], quality=90))  # VP8X + ALPH + "VP8 "
    # an ICC profile makes it an extended file whose VP8L chunk comes after the ICCP chunk
    assert webp_is_lossless(_webp_bytes([rgb], lossless=True, icc_profile=ADOBE_ICC))
    assert not webp_is_lossless(_webp_bytes([rgb], quality=80, icc_profile=ADOBE_ICC))
    # animations: the first frame's sub-chunk, inside ANMF
    assert webp_is_lossless(_webp_bytes([rgb, rgb[::-1]], lossless=True))
    assert not webp_is_lossless(_webp_bytes([rgb, rgb[::-1]], quality=70))
    for junk in (b"", b"RIFF", b"RIFF\x00\x00\x00\x00WEBP", b"RIFF\x10\x00\x00\x00WEBPVP8L", b"\x89PNG\r\n\x1a\n" * 3):
        assert not webp_is_lossless(junk)


def test_a_lossless_webp_stays_lossless_unless_a_quality_is_asked_for(tmp_path: Path) -> None:
    rgb = _rand(12, 16)
    lossless = read_image(_save_bytes(tmp_path / "lossless.webp", _webp_bytes([rgb], lossless=True)))
    lossy = read_image(_save_bytes(tmp_path / "lossy.webp", _webp_bytes([rgb], quality=90)))
    assert lossless.lossless and not lossy.lossless
    result = _rand(12, 16)
    out = write_image(tmp_path / "out.webp", result, lossless)  # default quality: lossless
    assert webp_is_lossless(out.read_bytes()) and np.array_equal(np.asarray(Image.open(out).convert("RGB")), result)
    assert not webp_is_lossless(write_image(tmp_path / "q90.webp", result, lossless, quality=90).read_bytes())
    assert not webp_is_lossless(write_image(tmp_path / "from_lossy.webp", result, lossy).read_bytes())
    # another target format, or a WebP made from a PNG, keeps the default quality
    png = read_image(_save(Image.fromarray(rgb), tmp_path / "src.png"))
    assert not webp_is_lossless(write_image(tmp_path / "from_png.webp", result, png).read_bytes())
    with Image.open(write_image(tmp_path / "out.jpg", result, lossless)) as im:
        assert im.format == "JPEG"


def _save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
