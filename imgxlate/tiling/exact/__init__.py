"""Exact (seamless) tiling: run an ONNX generator on tiles with whole-image InstanceNorm statistics.

InstanceNorm normalises every channel with the mean and variance of the *whole* feature map, so a
generator run on tiles normalises each tile differently (visible colour steps at the seams). The exact
tiler reproduces the whole-image computation piece by piece, in three parts, each readable alone:

- :mod:`.graph`: the ONNX graph as spatial ops and their window geometry (what a tile needs);
- :mod:`.plan`: for one image size, the passes (one per norm, plus residual checkpoints and the
  output), their segments and tiles; built once per size and cached;
- :mod:`.executor`: runs a plan on ONNX Runtime or OpenVINO runners, keeps the stored maps (float32,
  float16 or spilled to a file), combines the statistics, reports progress.

The result equals ``pad_to_multiple`` + one whole-image run + crop up to float rounding. See
docs/tiling.md.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from imgxlate.errors import UsageError
from imgxlate.tiling.exact.executor import Executor, ImageSource, Progress, Sink, StatsHook
from imgxlate.tiling.exact.graph import Graph
from imgxlate.tiling.exact.plan import Plan, build_plan
from imgxlate.tiling.exact.store import MapStore

_PLANS_KEPT = 4


class ExactTiler:
    """One generator, ready to run exactly tiled on images of any size.

    ``session_factory``: makes a runner (``run(feeds) -> [arrays]``, see
    :func:`imgxlate.engine.runner_factory`) or an ONNX Runtime session from serialized ONNX bytes;
    default: ONNX Runtime on the CPU, arena off. Raises InvalidModelError when the graph has an op
    this tiler cannot cut; callers fall back to blend tiling.

    One image at a time: :meth:`run` from several threads (a Translator shared by them) takes turns.
    A run's state lives on the executor, and the memory budget that chose the tile size is one run's.
    """

    def __init__(self, model_path: str | os.PathLike[str], session_factory: Callable[[bytes], Any] | None = None) -> None:
        self.graph = Graph(model_path)
        self.path = self.graph.path
        if session_factory is None:
            from imgxlate.engine import runner_factory

            session_factory = runner_factory("cpu", backend="onnxruntime")
        self.executor = Executor(self.graph, session_factory)
        self.norms = self.graph.norms
        self.n_norm_layers = len(self.norms)
        self.multiple = self.graph.multiple
        self._plans: OrderedDict[tuple[int, int, int], Plan] = OrderedDict()
        self._lock = threading.RLock()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m

    def plan(self, height: int, width: int, tile: int) -> Plan:
        """The plan for an image of this size (cached: the last few sizes)."""
        if tile < 0:
            raise UsageError(f"tile size must be >= 0 (0 = no tiling), got {tile}")
        ph, pw = self.padded_size(height, width)
        key = (ph, pw, tile)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = build_plan(self.graph, ph, pw, tile)
                self._plans[key] = plan
                while len(self._plans) > _PLANS_KEPT:
                    self._plans.popitem(last=False)
            else:
                self._plans.move_to_end(key)
            return plan

    def run(
        self,
        image: np.ndarray,
        tile: int = 0,
        stats_hook: StatsHook | None = None,
        *,
        progress: Progress | None = None,
        store: MapStore | None = None,
        sink: Sink | None = None,
        hwc: bool = False,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> np.ndarray | None:
        """Run the model on ``image``; returns (C', H, W) float32 in the model's output range.

        ``image``: (C, H, W) float32 in model range, or with ``hwc`` (H, W, C) samples of any dtype
        mapped to model range by ``x * scale + offset``. ``tile``: tile edge in input pixels (0: whole
        feature maps). ``stats_hook(i, mean, var)`` is called for every InstanceNormalization in
        graph order with this image's exact per-channel statistics (float64, shape (C,)) and returns
        the (mean, var) to normalise with. ``progress(done, total)`` after every tile. ``store``:
        where kept maps live (default float32 in RAM). ``sink(region, tile)``: receive the output
        tile by tile instead (then None is returned).
        """
        image = np.asarray(image)
        if image.ndim != 3:
            raise UsageError(f"expected a (C, H, W) image array, got shape {image.shape}")
        h, w = image.shape[:2] if hwc else image.shape[1:]
        if h < 1 or w < 1:
            raise UsageError(f"the image is empty ({h}x{w} pixels)")
        with self._lock:
            plan = self.plan(h, w, tile)
            source = ImageSource(image, (plan.height, plan.width), hwc=hwc, scale=scale, offset=offset)
            return self.executor.run(
                plan, source, stats_hook=stats_hook, progress=progress, store=store, sink=sink, crop=(h, w)
            )


def stats_shapes(tiler: ExactTiler) -> list[int]:
    """Channel count of every InstanceNormalization, in graph order (for callers that keep stats)."""
    return [int(op.consts[0].shape[0]) for op in tiler.norms]  # type: ignore[union-attr]


__all__ = ["ExactTiler", "MapStore", "StatsHook", "stats_shapes"]
