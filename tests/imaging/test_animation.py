"""Animated GIF, WebP and APNG in and out (imgxlate.imaging.animation), against the frames written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgxlate.errors import ImageReadError, ImageWriteError
from imgxlate.imaging import output_suffix, read_image, write_image
from imgxlate.imaging.formats import is_animated_file

DURATIONS = [80, 120, 200]


def frames(n: int = 3, h: int = 10, w: int = 14, colours: int = 0) -> list[np.ndarray]:
    """n distinct RGB frames; ``colours`` > 0: drawn from that many colours (exact in a GIF)."""
    rng = np.random.default_rng(n * 1000 + h)
    if colours:
        palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
        return [palette[rng.integers(0, colours, (h, w))] for _ in range(n)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def save_animation(path: Path, arrays: list[np.ndarray], fmt: str, **extra: object) -> Path:
    ims = [Image.fromarray(a) for a in arrays]
    opts: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    ims[0].save(path, format=fmt, save_all=True, append_images=ims[1:], duration=DURATIONS[: len(ims)], **opts,
                **extra)
    return path


def pil_frames(path: Path) -> tuple[list[np.ndarray], list[int], object]:
    """Every frame as Pillow composes it (RGBA), the durations and the loop count."""
    with Image.open(path) as im:
        loop = im.info.get("loop")
        out, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGBA")))
            durations.append(int(im.info.get("duration") or 0))  # WebP sets it when the frame loads
    return out, durations, loop


@pytest.mark.parametrize(("fmt", "suffix"), [("GIF", ".gif"), ("WEBP", ".webp"), ("PNG", ".png")])
def test_every_frame_is_read_with_its_duration_and_the_loop_count(tmp_path: Path, fmt: str, suffix: str) -> None:
    written = frames(colours=40)
    src = save_animation(tmp_path / f"a{suffix}", written, fmt, loop=0)
    decoded = read_image(src)
    assert decoded.animation is not None and decoded.animation.count == 3
    assert decoded.animation.durations == tuple(DURATIONS)
    assert decoded.animation.loop == 0
    got = [decoded.pixels, *(f.pixels for f in decoded.animation.frames)]
    for g, w in zip(got, written):
        np.testing.assert_array_equal(g, w)  # few colours: exact in every format
    assert decoded.alpha is None and decoded.format == fmt and decoded.source == src
    assert is_animated_file(src)


def test_a_still_gif_is_not_an_animation_and_becomes_a_png(tmp_path: Path) -> None:
    src = tmp_path / "still.gif"
    Image.fromarray(frames(1, colours=8)[0]).save(src)
    assert read_image(src).animation is None and not is_animated_file(src)
    assert output_suffix(".gif", "GIF", "same") == ".png"
    assert output_suffix(".GIF", "GIF", "same", animated=True) == ".GIF"
    assert output_suffix(".gif", "GIF", "webp", animated=True) == ".webp"


@pytest.mark.parametrize(("suffix", "quality"), [(".png", 95), (".webp", 100)])
def test_results_are_written_as_an_animation_with_the_sources_timing(
    tmp_path: Path, suffix: str, quality: int
) -> None:
    src = save_animation(tmp_path / "a.gif", frames(colours=30), "GIF", loop=3)
    decoded = read_image(src)
    results = frames(h=10, w=14)  # any (H, W, 3) uint8 results, one per frame
    out = write_image(tmp_path / f"out{suffix}", results, decoded, quality=quality)
    got, durations, loop = pil_frames(out)
    assert len(got) == 3 and durations == DURATIONS and loop == 3
    for g, r in zip(got, results):
        np.testing.assert_array_equal(g[..., :3], r)  # APNG and lossless WebP: exact
        assert np.all(g[..., 3] == 255)


def test_an_animated_gif_is_written_back_as_a_gif_and_transparency_survives(tmp_path: Path) -> None:
    arrays = [np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]) for a in frames(colours=20)]
    for a in arrays:
        a[:3, :4, 3] = 0  # a transparent corner in every frame
    src = tmp_path / "t.gif"
    ims = [Image.fromarray(a) for a in arrays]
    ims[0].save(src, save_all=True, append_images=ims[1:], duration=DURATIONS, disposal=2, loop=0)
    decoded = read_image(src)
    assert decoded.alpha is not None and decoded.animation is not None
    results = [a[..., :3] for a in frames(colours=20)]
    out = write_image(tmp_path / "out.gif", results, decoded)
    got, durations, loop = pil_frames(out)
    with Image.open(out) as im:
        assert im.format == "GIF"
    assert len(got) == 3 and durations == DURATIONS and loop == 0
    for g, r in zip(got, results):
        assert np.all(g[:3, :4, 3] == 0) and np.all(g[4:, 5:, 3] == 255)
        np.testing.assert_array_equal(g[4:, 5:, :3], r[4:, 5:])  # 20 colours: exact in a GIF


def test_an_animation_is_not_written_to_a_one_picture_format(tmp_path: Path) -> None:
    decoded = read_image(save_animation(tmp_path / "a.webp", frames(), "WEBP"))
    for name, why in (("out.jpg", "JPEG holds one picture"), ("out.tif", "TIFF keeps no frame timing")):
        # (TIFF holds pages, which is not why: the reason said it held one picture)
        with pytest.raises(ImageWriteError, match=f"a.webp is an animation and {why}.*--format webp or png"):
            write_image(tmp_path / name, frames(), decoded)
        assert not (tmp_path / name).exists()
    with pytest.raises(ImageWriteError, match="2 results for 3 frames"):
        write_image(tmp_path / "out.png", frames(2), decoded)


def test_the_pixel_limit_counts_every_frame(tmp_path: Path) -> None:
    src = save_animation(tmp_path / "a.png", frames(3, 10, 14), "PNG")
    assert read_image(src, max_pixels=3 * 10 * 14).animation is not None
    with pytest.raises(ImageReadError, match="animation of 3 frames of 14x10, 420 pixels in all"):
        read_image(src, max_pixels=3 * 10 * 14 - 1)


def test_a_truncated_frame_is_a_read_error_naming_the_frame(tmp_path: Path) -> None:
    buf = io.BytesIO()
    ims = [Image.fromarray(a) for a in frames(3, 40, 40)]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=DURATIONS)
    src = tmp_path / "cut.gif"
    src.write_bytes(buf.getvalue()[: len(buf.getvalue()) - 600])
    with pytest.raises(ImageReadError, match=r"cut\.gif"):
        read_image(src)


def test_training_and_previews_read_the_first_frame_only(tmp_path: Path) -> None:
    from imgxlate.imaging import read_rgb8

    written = frames(colours=12)
    src = save_animation(tmp_path / "a.png", written, "PNG")
    first = read_image(src, frames=False)
    assert first.animation is None and first.format == "PNG"
    np.testing.assert_array_equal(first.pixels, written[0])
    np.testing.assert_array_equal(read_rgb8(src, max_pixels=10 * 14), written[0])  # one frame's pixels count


@pytest.mark.parametrize(("suffix", "quality"), [(".webp", 95), (".webp", 100), (".png", 95)])
def test_transparency_survives_in_an_animated_webp_or_png_at_any_quality(
    tmp_path: Path, suffix: str, quality: int
) -> None:
    """An animation whose transparent part covers whole 16 px blocks, written as lossy WebP, came out
    opaque (libwebp's animation encoder dropped the alpha); every output frame keeps the source's."""
    arrays = [np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]) for a in frames(h=32, w=48)]
    for a in arrays:
        a[:, :16, 3] = 0  # a whole column of 16 px blocks (the case that lost its alpha)
    src = save_animation(tmp_path / "t.webp", arrays, "WEBP", loop=0)
    decoded = read_image(src)
    assert decoded.alpha is not None and decoded.animation is not None
    out = write_image(tmp_path / f"out{suffix}", [a[..., :3] for a in frames(h=32, w=48)], decoded, quality=quality)
    got, _, _ = pil_frames(out)
    assert len(got) == 3
    for g, a in zip(got, arrays):
        assert np.abs(g[..., 3].astype(int) - a[..., 3]).max() <= 2  # lossy WebP: alpha lossless by default


def test_an_animated_avif_is_read_frame_by_frame_and_written_as_an_animated_png(tmp_path: Path) -> None:
    """It was read as its first frame, and converted as a still without a word."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    ims = [Image.fromarray(a) for a in frames(n=3, h=16, w=24)]
    ims[0].save(tmp_path / "a.avif", save_all=True, append_images=ims[1:], duration=DURATIONS)
    assert is_animated_file(tmp_path / "a.avif")
    decoded = read_image(tmp_path / "a.avif")
    assert decoded.animation is not None and len(decoded.frames) == 3
    assert output_suffix(".avif", "AVIF", "same", animated=True) == ".png"
    out = write_image(tmp_path / "a.png", [f.pixels for f in decoded.frames], decoded)
    got, durations, loop = pil_frames(out)
    assert len(got) == 3 and durations == DURATIONS
    # libavif (so Pillow) writes a sequence that repeats for an indefinite time: the APNG loops forever
    # (Pillow gives no loop for AVIF, and it was written to play once)
    assert decoded.animation.loop == 0 and loop == 0


def test_an_avif_loop_is_read_from_its_edit_list_and_movie_header() -> None:
    """ISO BMFF: moov/trak/edts/elst flag 1 = repeat; moov/mvhd duration all ones = indefinite."""
    from imgxlate.imaging.animation import avif_loop

    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    def avif(repeat: bool, duration: bytes, version: int = 1) -> bytes:
        times = b"\0" * 16 if version == 1 else b"\0" * 8
        mvhd = box(b"mvhd", bytes([version, 0, 0, 0]) + times + (1000).to_bytes(4, "big") + duration)
        elst = box(b"elst", bytes([1, 0, 0, int(repeat)]) + (1).to_bytes(4, "big") + b"\0" * 20)
        trak = box(b"trak", box(b"tkhd", b"\0" * 20) + box(b"edts", elst))
        return box(b"ftyp", b"avis\0\0\0\0") + box(b"moov", mvhd + trak)

    assert avif_loop(avif(True, b"\xff" * 8)) == 0
    assert avif_loop(avif(True, b"\xff" * 4, version=0)) == 0
    assert avif_loop(avif(False, b"\xff" * 8)) is None  # no repeat: plays once
    assert avif_loop(avif(True, (3000).to_bytes(8, "big"))) is None  # a finite time: read as once
    assert avif_loop(avif(True, b"\xff" * 8)[:40]) is None  # cut off: nothing read, no error
    assert avif_loop(b"") is None
