"""Padding to a size multiple: the reference every tiler and the whole-image run agree on.
"""

from __future__ import annotations

import numpy as np

from imgxlate.errors import UsageError


def pad_to_multiple(image: np.ndarray, multiple: int = 4) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (C, H, W) on the bottom/right so H and W are multiples of ``multiple``; also return (H, W).

    Reflect padding (no repeated edge row, like the model's own ReflectionPad) where the axis is long
    enough (reflect needs size > pad), symmetric padding where it is not (e.g. a 1- or 2-pixel axis).
    Returns the input itself (no copy) when nothing needs padding.
    """
    if image.ndim != 3:
        raise UsageError(f"expected a (C, H, W) image array, got shape {image.shape}")
    if multiple < 1:
        raise UsageError(f"multiple must be >= 1, got {multiple}")
    _, h, w = image.shape
    if h < 1 or w < 1:
        raise UsageError(f"the image is empty ({h}x{w} pixels)")
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return image, (h, w)
    out = image
    for axis, pad, size in ((1, pad_h, h), (2, pad_w, w)):
        if pad == 0:
            continue
        widths = [(0, 0)] * 3
        widths[axis] = (0, pad)
        out = np.pad(out, widths, mode="reflect" if size > pad else "symmetric")
    return out, (h, w)
