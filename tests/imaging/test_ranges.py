"""imgxlate.imaging.ranges: image values <-> model values, the one mapping every path uses."""

from __future__ import annotations

import numpy as np

from imgxlate.imaging.ranges import from_model, model_to_uint8, to_model, uint8_to_model


def test_uint8_ends_map_to_range_ends_and_back() -> None:
    frames = np.array([[[[0, 128, 255]]]], dtype=np.uint8)  # (1, 1, 1, 3)
    x = uint8_to_model(frames, (-1.0, 1.0))
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x[0, :, 0, 0], [-1.0, 128 / 127.5 - 1.0, 1.0], atol=1e-6)
    assert np.array_equal(model_to_uint8(x, (-1.0, 1.0)), frames)


def test_model_to_uint8_rounds_and_clips() -> None:
    column = np.array([-2.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32).reshape(1, 1, 5, 1)
    y = np.repeat(column, 3, axis=1)  # (1, 3, H=5, W=1)
    out = model_to_uint8(y, (-1.0, 1.0))
    assert out.shape == (1, 5, 1, 3)
    assert out[0, :, 0, 0].tolist() == [0, 0, 128, 255, 255]  # 127.5 rounds half to even: 128


def test_float_round_trip_any_range_and_unbatched() -> None:
    rgb = np.random.default_rng(0).random((4, 6, 3), dtype=np.float32)
    x = to_model(rgb, (0.0, 255.0))
    assert x.shape == (3, 4, 6) and np.allclose(x, rgb.transpose(2, 0, 1) * 255.0)
    back = from_model(x, (0.0, 255.0))
    assert back.shape == (4, 6, 3) and np.allclose(back, rgb, atol=1e-6)
    assert from_model(np.full((3, 1, 1), 9.0, np.float32), (-1.0, 1.0)).max() == 1.0  # clipped
