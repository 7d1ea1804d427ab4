"""Overlap-blend tiling: overlapping windows, run each, average with smooth weights.

Any model and any ``run`` callable; approximate, because InstanceNorm statistics are computed per
tile (the blend hides the seams, not the colour drift). See :mod:`imgxlate.tiling.exact` for the
exact tiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgxlate.errors import UsageError
from imgxlate.tiling.pad import pad_to_multiple


@dataclass(frozen=True)
class Tile:
    """One window of :func:`plan_tiles`: input rows ``y0:y1`` and columns ``x0:x1``.

    ``top``/``bottom``/``left``/``right`` are True where another tile overlaps this side (the blend
    weight ramps there); False at the image border (weight stays 1, so borders are not darkened).
    """

    y0: int
    y1: int
    x0: int
    x1: int
    top: bool = False
    bottom: bool = False
    left: bool = False
    right: bool = False

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _starts(size: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """Window starts along one axis and the window length; every start and the length are multiples
    of ``multiple`` when ``size`` is, and the last window ends exactly at ``size`` (shifted inward)."""
    length = min(tile, size)
    if length >= size:
        return [0], size
    # step = tile - overlap, rounded down to the stride multiple so every window sees the same
    # stride phase as the whole-image run (the downsampling convs then sample the same pixels).
    step = max(multiple, (length - overlap) // multiple * multiple)
    starts = list(range(0, size - length, step))
    starts.append(size - length)  # last window flush with the far border, never padded
    return starts, length


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 4) -> list[Tile]:
    """Windows of ``tile`` x ``tile`` pixels (less when the image is smaller) overlapping by at least
    ``overlap`` that together cover ``height`` x ``width``, row-major.

    Window sizes are multiples of ``multiple`` (the image is expected to be padded to a multiple
    first, see :func:`pad_to_multiple`; a smaller axis gets one window of the rounded-up size). Edge
    windows are shifted inward rather than padded, so every window lies inside the image.
    """
    if height < 1 or width < 1:
        raise UsageError(f"cannot tile an empty {height}x{width} image")
    if tile < multiple or tile % multiple:
        raise UsageError(f"tile size {tile} must be a positive multiple of {multiple}")
    if overlap < 0 or overlap >= tile:
        raise UsageError(f"overlap {overlap} must be >= 0 and smaller than the tile size {tile}")
    ph = -(-height // multiple) * multiple
    pw = -(-width // multiple) * multiple
    ys, th = _starts(ph, tile, overlap, multiple)
    xs, tw = _starts(pw, tile, overlap, multiple)
    tiles = []
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            tiles.append(
                Tile(
                    y,
                    y + th,
                    x,
                    x + tw,
                    top=iy > 0,
                    bottom=iy < len(ys) - 1,
                    left=ix > 0,
                    right=ix < len(xs) - 1,
                )
            )
    return tiles


def _ramp(n: int) -> np.ndarray:
    # Raised cosine sampled at pixel centres: r[i] + r[n-1-i] == 1, so two windows whose ramps
    # cover the same n pixels sum to exactly 1 there (partition of unity); never exactly 0.
    i = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / n)


def blend_window(
    h: int,
    w: int,
    overlap: int,
    top: bool = True,
    bottom: bool = True,
    left: bool = True,
    right: bool = True,
) -> np.ndarray:
    """(h, w) float32 blend weights: a raised-cosine ramp over ``overlap`` pixels on each flagged side
    (the sides another tile overlaps), 1 elsewhere."""
    wy = np.ones(h, dtype=np.float64)
    wx = np.ones(w, dtype=np.float64)
    if overlap > 0:
        ny, nx = min(overlap, h), min(overlap, w)
        if top:
            wy[:ny] *= _ramp(ny)
        if bottom:
            wy[h - ny :] *= _ramp(ny)[::-1]
        if left:
            wx[:nx] *= _ramp(nx)
        if right:
            wx[w - nx :] *= _ramp(nx)[::-1]
    return np.outer(wy, wx).astype(np.float32)


def run_blended(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int,
    overlap: int,
    multiple: int = 4,
    batch: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``run`` ((N, C, h, w) -> (N, C', h, w)) on overlapping tiles of ``image`` (C, H, W), blend.

    The image is padded with :func:`pad_to_multiple`, cut by :func:`plan_tiles`, and each output
    pixel is the weighted average of the tiles covering it (weights from :func:`blend_window`,
    normalised by their sum, so the weights need not add up to 1). Up to ``batch`` tiles go to
    ``run`` at once (all tiles have the same shape). ``progress(done, total)`` after every batch of
    tiles. Returns (C', H, W) float32.
    """
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    padded, (h, w) = pad_to_multiple(np.asarray(image, dtype=np.float32), multiple)
    tiles = plan_tiles(padded.shape[1], padded.shape[2], tile, overlap, multiple)
    acc: np.ndarray | None = None
    weight = np.zeros(padded.shape[1:], dtype=np.float32)
    for start in range(0, len(tiles), batch):
        group = tiles[start : start + batch]
        x = np.stack([padded[:, t.y0 : t.y1, t.x0 : t.x1] for t in group])
        y = np.asarray(run(x))
        if y.ndim != 4 or y.shape[0] != len(group) or y.shape[2:] != x.shape[2:]:
            raise UsageError(f"the model returned shape {y.shape} for tiles of shape {x.shape}")
        if acc is None:
            acc = np.zeros((y.shape[1], *padded.shape[1:]), dtype=np.float32)
        for t, out in zip(group, y):
            wgt = blend_window(t.height, t.width, overlap, t.top, t.bottom, t.left, t.right)
            acc[:, t.y0 : t.y1, t.x0 : t.x1] += out * wgt
            weight[t.y0 : t.y1, t.x0 : t.x1] += wgt
        if progress is not None:
            progress(start + len(group), len(tiles))
    assert acc is not None  # plan_tiles never returns an empty plan
    acc /= weight
    return acc[:, :h, :w]
