"""Automatic tile size: whole image when a whole run fits the memory budget, else a tile edge.
"""

from __future__ import annotations

import math
import os

# Peak memory of a whole-image ORT run of the ResNet generator, in full-resolution ngf-channel float32
# maps: measured ~10 (bench/tiling.py: +993 MiB for 1024x768 with ngf 32; ORT keeps the padded input,
# conv outputs and the normalised copies of several layers alive in its arena).
_WHOLE_MAPS = 10.0
# The exact tiler keeps a few bottleneck maps and one half-resolution map whole (1.5 full-resolution
# ngf maps together) plus per-tile full-resolution intermediates (~12 ngf maps of the tile, allocator
# slack included).
_KEPT_MAPS = 1.5
_TILE_MAPS = 12.0
_MIN_TILE, _MAX_TILE = 256, 2048


def _default_budget(provider: str) -> int:
    if provider == "CPUExecutionProvider":
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            total = 8 << 30
        return int(total // 4)
    # GPUs: stay well inside a small card's memory; ORT's arena also keeps freed blocks.
    return 3 << 30


def auto_tile_size(
    height: int,
    width: int,
    *,
    provider: str = "CPUExecutionProvider",
    ngf: int = 64,
    budget_bytes: int | None = None,
) -> int:
    """0 when a whole-image run of a (height x width) image fits in the memory budget, else a tile
    edge (input pixels, multiple of 4) for :class:`ExactTiler` / :func:`run_blended`.

    The estimate is ``_WHOLE_MAPS`` full-resolution ngf-channel float32 maps; the default budget is a
    quarter of physical RAM on CPU and 3 GiB on a GPU provider. The tile edge spends what the budget
    leaves after the maps the exact tiler keeps whole (at least a quarter of it) on one tile.
    """
    budget = int(budget_bytes) if budget_bytes is not None else _default_budget(provider)
    map_bytes = 4.0 * ngf  # one float32 ngf-channel pixel
    if height * width * map_bytes * _WHOLE_MAPS <= budget:
        return 0
    left = max(budget - height * width * map_bytes * _KEPT_MAPS, budget / 4)
    edge = int(math.sqrt(left / (map_bytes * _TILE_MAPS)))
    return int(min(_MAX_TILE, max(_MIN_TILE, edge // 4 * 4)))
