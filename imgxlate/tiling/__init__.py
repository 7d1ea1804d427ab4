"""Tiling: run a generator on pieces of an image that is too large to run whole.

Two tilers:

- **overlap-blend** (:func:`run_blended`): cut the image into overlapping windows, run each, and
  average the results with smooth weights. Any model, any ``run`` callable; approximate, because
  InstanceNorm statistics are computed per tile (colours drift slightly from tile to tile; the blend
  hides the seams but not the drift).
- **exact** (:class:`ExactTiler`, implemented in :mod:`imgxlate.tiling.exact`): cuts the ONNX graph at its
  InstanceNormalization nodes and accumulates the statistics over the whole image, so the tiled result
  equals the whole-image result up to float rounding.

The "whole-image result" both are measured against is: :func:`pad_to_multiple`, one model run, crop.
See docs/tiling.md for the design and the measurements.
"""

from __future__ import annotations

from imgxlate.tiling.auto import auto_tile_size
from imgxlate.tiling.blend import Tile, blend_window, plan_tiles, run_blended
from imgxlate.tiling.exact import ExactTiler, StatsHook, stats_shapes
from imgxlate.tiling.pad import pad_to_multiple

__all__ = [
    "ExactTiler",
    "StatsHook",
    "Tile",
    "auto_tile_size",
    "blend_window",
    "pad_to_multiple",
    "plan_tiles",
    "run_blended",
    "stats_shapes",
]
