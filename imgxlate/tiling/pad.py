"""Padding at the bottom/right: the one padding rule of the whole-image run and of both tilers.

Reflect (no repeated edge row, like the model's own ReflectionPad) where the axis is longer than the
pad, symmetric where it is not (a 1- or 2-pixel axis). Results are cropped back to the input size.
"""

from __future__ import annotations

import numpy as np

from imgxlate.errors import UsageError


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-n // multiple) * multiple


def pad_bottom_right(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes (H, W) of ``x`` at the bottom/right to (height, width); any leading axes
    ((C, H, W), (N, C, H, W)). Returns ``x`` itself when nothing needs padding."""
    h, w = x.shape[-2:]
    for axis, size, target in ((x.ndim - 2, h, height), (x.ndim - 1, w, width)):
        pad = target - size
        if pad <= 0:
            continue
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = np.pad(x, widths, mode="reflect" if size > pad else "symmetric")
    return x


def pad_to_multiple(image: np.ndarray, multiple: int = 4) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (C, H, W) on the bottom/right so H and W are multiples of ``multiple``; also return (H, W).

    Padding as :func:`pad_bottom_right`; returns the input itself (no copy) when nothing needs padding.
    """
    if image.ndim != 3:
        raise UsageError(f"expected a (C, H, W) image array, got shape {image.shape}")
    if multiple < 1:
        raise UsageError(f"multiple must be >= 1, got {multiple}")
    _, h, w = image.shape
    if h < 1 or w < 1:
        raise UsageError(f"the image is empty ({h}x{w} pixels)")
    return pad_bottom_right(image, round_up(h, multiple), round_up(w, multiple)), (h, w)
