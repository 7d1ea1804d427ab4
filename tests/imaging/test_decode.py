"""imgxlate.imaging: every image kind users own reads to sRGB (modes, bit depths, limits, errors, plugins,
the corpus, multi-page TIFFs).

All inputs are tiny images generated here; corpus files (../shared/corpus) are checked when present.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_helpers import RNG, _cv2_write, _littlecms_to_srgb, _rand, _save, _u8, _u16
from PIL import Image

from imgxlate.errors import ImageReadError
from imgxlate.imaging import (
    encode_png,
    formats,
    output_suffix,
    read_image,
    srgb_profile,
    write_image,
)


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
    with pytest.raises(ImageReadError, match="truncated|corrupt") as err:
        read_image(path)
    assert "copy or download it again" in str(err.value)  # what to do, not only what happened


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
    with pytest.raises(ImageReadError, match=r"pip install 'pillow-heif>=0\.16'"):
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


def test_read_suffixes() -> None:
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= formats.READ_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in formats.READ_SUFFIXES)
    assert not {".eps", ".mpg", ".mpeg", ".h5", ".grib", ".bufr"} & formats.READ_SUFFIXES


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


@pytest.mark.parametrize("keep", [0.5, 0.8, 0.95])
def test_a_truncated_multi_page_tiff_never_passes_as_a_one_page_file(tmp_path: Path, keep: float) -> None:
    """Cut short, the file's chain of pages breaks off or its last page does. Its last page broken:
    reading its pages fails. Its chain broken: the first page is read and a note says the rest could
    not be (it passed as a one-page file before). Read for its first page alone (a target that is not
    TIFF), the left-out pages are counted, or the same note says they could not be."""
    from imgxlate.errors import ImageReadError
    from imgxlate.imaging import read_image

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    data = (tmp_path / "scan.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * keep)])
    from imgxlate.imaging.notices import collected

    for frames in (True, False):
        with collected() as said:
            try:
                d = read_image(tmp_path / "cut.tif", frames=frames)
            except ImageReadError as exc:  # the last page cut
                assert frames and "page 3 of 3 is truncated or corrupt" in str(exc)
                continue
        assert d.pages == ()
        if said:
            assert len(said) == 1 and "its list of pages breaks off" in said[0] and "only its first page" in said[0]
        else:
            assert d.pages_left_out == 2  # counted: the partial note says so


def test_a_16_bit_gray_png_with_a_transparent_value_keeps_it_as_alpha(tmp_path: Path) -> None:
    """tRNS in a 16-bit gray PNG names one sample value as transparent: that is alpha (the 8-bit
    version kept it; the 16-bit one dropped it)."""
    from imgxlate.imaging import read_image

    arr = np.tile((np.arange(40) * 1000).astype(np.uint16), (30, 1))
    arr[:, :5] = 1234
    Image.fromarray(arr).save(tmp_path / "g.png", transparency=1234)
    d = read_image(tmp_path / "g.png")
    assert d.bit_depth == 16 and d.grayscale and d.alpha is not None
    assert np.array_equal(d.alpha == 0, arr == 1234) and np.all(d.alpha[arr != 1234] == 1.0)


def _gray_alpha_16_tiff(h: int, w: int) -> bytes:
    """An uncompressed 16-bit gray + alpha TIFF (2 samples per pixel, ExtraSamples = unassociated
    alpha): a kind Pillow cannot open, which OpenCV reads as 8-bit gray."""
    import struct

    pixels = np.zeros((h, w, 2), "<u2")
    pixels[..., 0] = np.arange(w, dtype=np.uint16) * 400
    pixels[..., 1] = 65535
    pixels[:, : w // 4, 1] = 0
    body = pixels.tobytes()
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value
        (256, 3, 1, w), (257, 3, 1, h), (258, 3, 2, 16 | 16 << 16), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8), (277, 3, 1, 2), (278, 3, 1, h), (279, 4, 1, len(body)), (338, 3, 1, 2),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 8 + len(body)) + body + ifd


def test_a_tiff_only_opencv_reads_says_what_it_lost(tmp_path: Path) -> None:
    from imgxlate.imaging import read_image
    from imgxlate.imaging.notices import collected

    (tmp_path / "ga16.tif").write_bytes(_gray_alpha_16_tiff(12, 40))
    with collected() as said:
        d = read_image(tmp_path / "ga16.tif")
    assert (d.width, d.height) == (40, 12)
    assert len(said) == 1 and "1 of its 2 samples per pixel" in said[0] and "16-bit depth" in said[0]


def _mpo(path: Path, second_type: int) -> Path:
    """A two-picture MPO as Pillow writes it, with the second picture's MP type (CIPA DC-007) set to
    ``second_type``: the 4-byte attribute of MP entry 2, found through the MPF APP2 segment's IFD."""
    views = [Image.new("RGB", (64, 48), c) for c in ((200, 0, 0), (0, 200, 0))]
    views[0].save(path, format="MPO", save_all=True, append_images=views[1:])
    data = bytearray(path.read_bytes())
    tiff = data.index(b"MPF\x00") + 4  # offsets in the MP index count from here
    end = "<" if data[tiff:tiff + 2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "L", data, tiff + 4)
    (count,) = struct.unpack_from(end + "H", data, tiff + ifd)
    for i in range(count):
        tag, _, _, value = struct.unpack_from(end + "HHLL", data, tiff + ifd + 2 + 12 * i)
        if tag == 0xB002:  # MP entries: 16 bytes each, the attribute first
            (attr,) = struct.unpack_from(end + "L", data, tiff + value + 16)
            struct.pack_into(end + "L", data, tiff + value + 16, (attr & 0xFF000000) | second_type)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("mp_type", "said"), [(0x020002, "stereo"), (0x020003, "multi-angle"), (0x010001, None),
                                               (0x000000, None)])
def test_an_mpo_with_views_of_its_own_says_only_the_first_was_converted(tmp_path: Path, mp_type: int,
                                                                          said: str | None) -> None:
    """A 3D camera's stereo MPO named by hand converted its first view with no word of the second. Its
    other views are now said (a ``partial`` note on the result, as a multi-page TIFF's left-out pages);
    a preview (large thumbnail) or an undefined picture (gain maps) is not."""
    from imgxlate.batch import converted_notes

    path = _mpo(tmp_path / "DSCF0001.MPO", mp_type)
    assert Image.open(path).format == "MPO"
    d = read_image(path)
    assert (d.width, d.height, d.format) == (64, 48, "JPEG")
    assert tuple(d.rgb[0, 0].round(1)) == pytest.approx((200 / 255, 0, 0), abs=0.02)
    if said is None:
        assert d.views_left_out == ""
    else:
        assert d.views_left_out == (f"it is a {said} MPO with 2 views; only the first view was converted (export "
                                    "the other views as JPEG files of their own to convert them)")
        assert [(n.kind, n.text) for n in converted_notes(0, (), d.views_left_out)] == [("partial", d.views_left_out)]
    assert read_image(path, frames=False).views_left_out == ""  # the first view on purpose (training, previews)


def test_opencvs_own_log_lines_stay_off_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A 16-bit RGBA TIFF as OpenCV writes it (only OpenCV reads it back) made libtiff warn through
    OpenCV's log: "[ WARN:0@0.006] global grfmt_tiff.cpp:123 TIFF_Warning ..." on stderr, naming no file,
    between the progress lines. The image reads whole and nothing is printed."""
    import cv2

    rgba = np.random.default_rng(0).integers(0, 65535, (8, 10, 4)).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "rgba16.tif"), rgba)
    capfd.readouterr()
    decoded = read_image(tmp_path / "rgba16.tif")
    assert decoded.bit_depth == 16 and decoded.alpha is not None
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("fmt, cut", [("JPEG", 100), ("WEBP", 30)])
def test_a_file_cut_off_inside_its_header_says_to_copy_it_again(tmp_path: Path, fmt: str, cut: int) -> None:
    """A JPEG or WebP cut off inside its header fails when Pillow opens it ("Truncated File Read",
    "could not create decoder object"); that was "the file is corrupt (...)" with no next step."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
        buf, fmt, exif=Image.Exif().tobytes())
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[:cut])
    with pytest.raises(ImageReadError, match="truncated, corrupt, or a variant .*; copy or download it again"):
        read_image(path)


def test_decodes_on_many_threads_leave_opencvs_log_level_as_it_was(tmp_path: Path) -> None:
    """The log level is process-wide: threads that each saved and restored it left it at errors for good
    (a review reproduced it with 4 threads). The first decode in sets it, the last out restores it."""
    import threading

    import cv2

    from imgxlate.imaging.decode import _cv2_decode

    rgba = np.random.default_rng(0).integers(0, 65535, (8, 10, 4)).astype(np.uint16)
    data = cv2.imencode(".tif", rgba)[1].tobytes()
    before = cv2.utils.logging.getLogLevel()
    assert before != cv2.utils.logging.LOG_LEVEL_ERROR

    def decode() -> None:
        for _ in range(100):
            _cv2_decode(data, "x.tif")

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cv2.utils.logging.getLogLevel() == before
