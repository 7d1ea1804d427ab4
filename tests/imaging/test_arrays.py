"""imgxlate.imaging: from_array / to_array and DecodedImage."""

from __future__ import annotations

import numpy as np
import pytest
from image_helpers import RNG, _rand
from PIL import Image

from imgxlate.errors import ImageReadError
from imgxlate.imaging import (
    DecodedImage,
    from_array,
    to_array,
)

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
    if mode == "F":  # float samples are read as 0..1 (0..255 ones are refused: they came back flat gray)
        im = Image.fromarray(np.asarray(im, np.float32) / 255, mode="F")
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
