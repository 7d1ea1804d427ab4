"""8-bit images stay uint8 from the decoder to the encoder: what is held, and that what is written
does not change (the float path is the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgxlate.imaging import read_image, read_rgb8, result_dtype, write_image
from imgxlate.imaging.color import quantize
from imgxlate.imaging.notices import collected
from imgxlate.imaging.ranges import from_model_as, model_to_uint8, pixel_affine, to_model
from imgxlate.translator import load_model


def _rgb8(h: int = 30, w: int = 41, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_8bit_files_decode_to_uint8_and_others_to_float(tmp_path: Path) -> None:
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray((rgb.astype(np.uint16) * 257)[..., 0]).save(tmp_path / "gray16.png")

    d = read_image(tmp_path / "rgb.png")
    assert d.pixels.dtype == np.uint8 and d.bit_depth == 8
    np.testing.assert_array_equal(d.pixels, rgb)
    # .rgb is the float view of the same pixels: k / 255, exactly as the float decoder gave them
    np.testing.assert_array_equal(d.rgb, rgb.astype(np.float32) / np.float32(255))
    assert d.rgb.dtype == np.float32
    assert result_dtype(d) == np.uint8
    assert read_rgb8(tmp_path / "rgb.png") is not None and np.array_equal(read_rgb8(tmp_path / "rgb.png"), rgb)

    g = read_image(tmp_path / "gray.png")
    assert g.pixels.dtype == np.uint8 and g.pixels.shape == (30, 41, 3) and g.grayscale
    assert result_dtype(g) == np.float32  # gray is made from the colour result, in float

    assert read_image(tmp_path / "rgb.jpg").pixels.dtype == np.uint8
    g16 = read_image(tmp_path / "gray16.png")
    assert g16.pixels.dtype == np.float32 and g16.bit_depth == 16 and result_dtype(g16) == np.float32


def test_converted_icc_profiles_give_float_pixels(corpus_dir: Path) -> None:
    kinds = {}
    for path in sorted((corpus_dir / "photos").glob("*.jpg")):
        d = read_image(path)
        kinds.setdefault(d.pixels.dtype.name, []).append(d)
    # the corpus has both: sRGB-like or no profile (kept as 8-bit samples) and profiles converted to
    # sRGB in float (no 8-bit rounding added by the conversion)
    assert set(kinds) == {"uint8", "float32"}
    assert all(d.icc_profile for d in kinds["float32"])
    assert any(not d.icc_profile for d in kinds["uint8"])
    assert all(result_dtype(d) == np.uint8 for d in kinds["float32"] + kinds["uint8"])


def test_uint8_model_mapping_matches_the_float_one() -> None:
    u = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    for lo, hi in ((-1.0, 1.0), (0.0, 1.0), (0.0, 255.0)):
        via_float = to_model(u.astype(np.float32) / np.float32(255), (lo, hi))
        np.testing.assert_allclose(to_model(u, (lo, hi)), via_float, rtol=0, atol=2e-7 * max(1.0, hi))
        scale, offset = pixel_affine(np.uint8, (lo, hi))
        assert np.isclose(0 * scale + offset, lo) and np.isclose(255 * scale + offset, hi)
    y = np.random.default_rng(1).uniform(-1.2, 1.2, (3, 20, 20)).astype(np.float32)
    # the uint8 result is exactly the float result rounded the way the encoder rounds it
    np.testing.assert_array_equal(from_model_as(y, (-1.0, 1.0), np.uint8),
                                  quantize(from_model_as(y, (-1.0, 1.0), np.float32), 8))
    np.testing.assert_array_equal(model_to_uint8(y, (-1.0, 1.0)), from_model_as(y, (-1.0, 1.0), np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_uint8_results_write_the_same_file_as_float_results(tmp_path: Path, suffix: str) -> None:
    rgb = _rgb8(seed=2)
    Image.fromarray(rgb).save(tmp_path / "src.png")
    like = read_image(tmp_path / "src.png")
    result = _rgb8(seed=3)
    write_image(tmp_path / f"u8{suffix}", result, like)
    write_image(tmp_path / f"f32{suffix}", result.astype(np.float32) / 255, like)
    assert (tmp_path / f"u8{suffix}").read_bytes() == (tmp_path / f"f32{suffix}").read_bytes()


def test_uint8_results_for_gray_or_alpha_sources_go_through_float(tmp_path: Path) -> None:
    rgb = _rgb8(seed=4)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "g.png")
    result = _rgb8(seed=5)
    for name in ("a.png", "g.png"):
        like = read_image(tmp_path / name)
        for suffix in (".png", ".jpg"):
            with collected():  # a.png's half transparency, flattened onto white in the JPEG, is said there
                write_image(tmp_path / f"u8_{name}{suffix}", result, like)
                write_image(tmp_path / f"f_{name}{suffix}", result.astype(np.float32) / 255, like)
            assert (tmp_path / f"u8_{name}{suffix}").read_bytes() == (tmp_path / f"f_{name}{suffix}").read_bytes()


@pytest.mark.parametrize("tile", [0, 16])
def test_translate_uint8_pixels_to_uint8_results(tiny_pair: Path, tile: int) -> None:
    t = load_model(tiny_pair, to="zebra", device="cpu", threads=1)
    rgb = _rgb8(37, 45, seed=6)
    reference = quantize(t.translate_rgb(rgb.astype(np.float32) / 255, tile=0), 8)
    out = t.translate_rgb(rgb, tile=tile, dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    # the same pixels as the float path: exact tiles agree with a whole run to ~1e-6, so a level at
    # most where a value sits on a rounding edge
    diff = np.abs(out.astype(np.int16) - reference)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    as_float = t.translate_rgb(rgb, tile=tile)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(quantize(as_float, 8), out)
