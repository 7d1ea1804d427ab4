"""Pixel values <-> model values: the one place that maps images to the generator's value range.

Images are (..., H, W, 3) RGB, either float32 in [0, 1] (decoded stills, :mod:`imgxlate.imaging.decode`)
or uint8 (video frames). Model tensors are (..., 3, H, W) float32 in ``metadata.input_range`` /
``metadata.output_range`` (normally [-1, 1]). Outputs are clipped to the image range; uint8 results
are rounded to nearest.
"""

from __future__ import annotations

import numpy as np

Range = tuple[float, float]


def to_model(rgb: np.ndarray, input_range: Range) -> np.ndarray:
    """(..., H, W, 3) float in [0, 1] -> (..., 3, H, W) float32 in ``input_range`` (contiguous)."""
    lo, hi = input_range
    x = np.asarray(rgb, dtype=np.float32) * np.float32(hi - lo) + np.float32(lo)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def from_model(y: np.ndarray, output_range: Range) -> np.ndarray:
    """(..., 3, H, W) in ``output_range`` -> (..., H, W, 3) float32 in [0, 1], clipped."""
    lo, hi = output_range
    out = (np.moveaxis(y, -3, -1) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def uint8_to_model(frames: np.ndarray, input_range: Range) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in ``input_range`` (contiguous)."""
    lo, hi = input_range
    x = np.asarray(frames).astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def model_to_uint8(y: np.ndarray, output_range: Range) -> np.ndarray:
    """(..., 3, H, W) in ``output_range`` -> (..., H, W, 3) uint8, rounded to nearest and clipped."""
    lo, hi = output_range
    u = (np.moveaxis(np.asarray(y), -3, -1).astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(u), 0, 255).astype(np.uint8)
