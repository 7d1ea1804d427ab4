"""imgxlate.imaging.decode.read_rgb8: the decoder training and benchmarks share with inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgxlate.errors import ImageReadError
from imgxlate.imaging.decode import read_image, read_rgb8


def test_opaque_pixels_are_read_images(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_rgb8(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    assert np.array_equal(out, np.rint(read_image(tmp_path / "a.png").rgb * 255).astype(np.uint8))


def test_alpha_is_composited_on_the_background(tmp_path: Path) -> None:
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("RGBA", (2, 2), (200, 0, 0, 255)).save(tmp_path / "solid.png")
    Image.new("LA", (2, 2), (0, 51)).save(tmp_path / "la.png")  # 20% black on white
    assert read_rgb8(tmp_path / "clear.png").tolist() == [[[255] * 3] * 2] * 2
    assert read_rgb8(tmp_path / "clear.png", background=0.0).max() == 0
    assert read_rgb8(tmp_path / "solid.png")[0, 0].tolist() == [200, 0, 0]
    assert read_rgb8(tmp_path / "la.png")[0, 0].tolist() == [204, 204, 204]


def test_errors_and_size_limit_are_read_images(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text file"):
        read_rgb8(tmp_path / "t.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="pixels"):
        read_rgb8(tmp_path / "big.png", max_pixels=100)


def test_training_loader_gets_the_same_pixels(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from imgxlate.train.data import load_rgb

    img = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    img.save(tmp_path / "c.jpg")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "c.jpg")), read_rgb8(tmp_path / "c.jpg"))


@pytest.mark.parametrize(("orientation", "upright"), [(1, (1200, 800)), (6, (800, 1200))])
def test_a_large_jpeg_bound_for_a_small_size_decodes_smaller_and_upright(
    tmp_path: Path, orientation: int, upright: tuple[int, int]
) -> None:
    """shorter_at_least: libjpeg scales in the DCT (1/2, 1/4, 1/8) as far as the shorter side allows;
    orientation is applied after, and scaled to the same size the picture is the full decode's."""
    yy, xx = np.mgrid[0:800, 0:1200].astype(np.float32)
    rgb = np.stack([xx / 1200 * 255, yy / 800 * 255, (xx + yy) % 256], axis=2).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95, exif=exif)
    full = read_rgb8(tmp_path / "big.jpg")
    assert full.shape[1::-1] == upright
    for target, scale in ((300, 2), (200, 4), (100, 8), (500, 1)):
        small = read_rgb8(tmp_path / "big.jpg", shorter_at_least=target)
        assert small.shape[1::-1] == (upright[0] // scale, upright[1] // scale), target
        assert min(small.shape[:2]) >= target
    small = read_rgb8(tmp_path / "big.jpg", shorter_at_least=200)
    reduced = np.asarray(Image.fromarray(full).resize(small.shape[1::-1], Image.Resampling.BOX), np.float32)
    mse = np.mean((reduced - small.astype(np.float32)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # the same picture, not a crop or a rotation of it
