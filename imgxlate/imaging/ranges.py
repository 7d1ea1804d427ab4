"""Pixel values <-> model values: the one place that maps images to the generator's value range.

Images are (..., H, W, 3) RGB, either uint8 (8-bit stills and video frames) or float32 in [0, 1]
(other stills, :mod:`imgxlate.imaging.decode`). Model tensors are (..., 3, H, W) float32 in
``metadata.input_range`` / ``metadata.output_range`` (normally [-1, 1]). Outputs are clipped to the
image range; uint8 results are rounded to nearest.
"""

from __future__ import annotations

import numpy as np

Range = tuple[float, float]


def pixel_affine(dtype: np.dtype | type, input_range: Range) -> tuple[float, float]:
    """(scale, offset) with ``model value = pixel * scale + offset`` for pixels of ``dtype`` (uint8:
    0..255, float: 0..1); the exact tiler applies it to each window it reads."""
    lo, hi = input_range
    return ((hi - lo) / 255.0 if np.dtype(dtype) == np.uint8 else hi - lo), lo


def to_model(rgb: np.ndarray, input_range: Range) -> np.ndarray:
    """(..., H, W, 3) uint8 or float in [0, 1] -> (..., 3, H, W) float32 in ``input_range`` (contiguous)."""
    rgb = np.asarray(rgb)
    scale, offset = pixel_affine(rgb.dtype, input_range)
    x = rgb.astype(np.float32, copy=False) * np.float32(scale) + np.float32(offset)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def from_model(y: np.ndarray, output_range: Range) -> np.ndarray:
    """(..., 3, H, W) in ``output_range`` -> (..., H, W, 3) float32 in [0, 1], clipped."""
    lo, hi = output_range
    out = (np.moveaxis(y, -3, -1) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def uint8_to_model(frames: np.ndarray, input_range: Range) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in ``input_range`` (contiguous)."""
    return to_model(np.asarray(frames, dtype=np.uint8), input_range)


def from_model_as(y: np.ndarray, output_range: Range, dtype: np.dtype | type) -> np.ndarray:
    """(..., 3, H, W) in ``output_range`` -> (..., H, W, 3) as float32 [0, 1] or uint8 (``dtype``)."""
    if np.dtype(dtype) == np.uint8:
        return model_to_uint8(y, output_range)
    return from_model(y, output_range)


def model_to_uint8(y: np.ndarray, output_range: Range) -> np.ndarray:
    """(..., 3, H, W) in ``output_range`` -> (..., H, W, 3) uint8, rounded to nearest and clipped."""
    lo, hi = output_range
    u = (np.moveaxis(np.asarray(y), -3, -1).astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(u), 0, 255).astype(np.uint8)
