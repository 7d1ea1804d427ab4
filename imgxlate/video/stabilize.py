"""Temporal stability: :class:`StatsSmoother` (InstanceNorm statistics averaged over frames, reset
at scene cuts) run through the exact tiler, and the flicker measures (:func:`flicker_ratio`,
:func:`static_flicker`, :func:`measure_stability`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from imgxlate.errors import UsageError, VideoError
from imgxlate.imaging.ranges import model_to_uint8, uint8_to_model
from imgxlate.video.probe import read_frames

# Defaults of the stabiliser, chosen on the corpus clip (docs/video.md): weight of the running
# average (0.8 -> ~5-frame memory) and the scene-cut threshold (see StatsSmoother). On the clip the
# layer-0 shift is 0.11-0.15 at its one hard cut and at most 0.04 on every other frame (two models).
DEFAULT_MOMENTUM = 0.8
DEFAULT_CUT_THRESHOLD = 0.07


class StatsSmoother:
    """A ``stats_hook`` for :class:`imgxlate.tiling.exact.ExactTiler`: temporally smoothed InstanceNorm stats.

    Called as ``hook(layer, mean, var)`` for every InstanceNormalization layer of one frame in graph
    order (mean, var: float64 (C,)); returns the statistics to normalise with::

        M_l <- m * M_l + (1 - m) * mean_l       (exponential moving average over frames)
        V_l <- m * V_l + (1 - m) * var_l

    ``layer == 0`` starts a new frame. Scene cuts: at layer 0 (the stem conv's output, which follows
    the input image closely) the shift of this frame's channel means from the running means, in units
    of the running standard deviation, ``sqrt(mean_c((mean - M)^2 / V))``, is compared to
    ``cut_threshold``; above it the averages restart from this frame (no blending across a cut).
    ``cuts`` counts them.
    """

    def __init__(self, momentum: float = DEFAULT_MOMENTUM, cut_threshold: float = DEFAULT_CUT_THRESHOLD,
                 eps: float = 1e-5) -> None:
        if not 0.0 <= momentum < 1.0:
            raise UsageError(f"momentum must be in [0, 1), not {momentum}")
        self.momentum = float(momentum)
        self.cut_threshold = float(cut_threshold)
        self.eps = float(eps)
        self.state: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cuts = 0
        self.frames = 0
        self.last_shift = 0.0
        self._fresh = True

    def reset(self) -> None:
        self.state.clear()
        self._fresh = True

    def shift(self, mean: np.ndarray, var: np.ndarray) -> float:
        """Distance of a frame's layer-0 statistics from the running ones (the cut detector)."""
        if 0 not in self.state:
            return float("inf")
        m0, v0 = self.state[0]
        return float(np.sqrt(np.mean((mean - m0) ** 2 / (v0 + self.eps))))

    def __call__(self, layer: int, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        if layer == 0:
            self.frames += 1
            self.last_shift = self.shift(mean, var)
            self._fresh = not np.isfinite(self.last_shift) or self.last_shift > self.cut_threshold
            if self._fresh and self.state:
                self.cuts += 1
            if self._fresh:
                self.state.clear()
        prev = self.state.get(layer)
        if prev is None or prev[0].shape != mean.shape:
            self.state[layer] = (mean, var)
            return mean, var
        m = self.momentum
        new = (m * prev[0] + (1 - m) * mean, m * prev[1] + (1 - m) * var)
        self.state[layer] = new
        return new


def _model_ranges(translator: Any) -> tuple[tuple[float, float], tuple[float, float], int]:
    meta = getattr(translator, "metadata", None)
    inr = tuple(getattr(meta, "input_range", (-1.0, 1.0)))
    outr = tuple(getattr(meta, "output_range", (-1.0, 1.0)))
    mult = int(getattr(meta, "size_multiple", 4) or 4)
    return (float(inr[0]), float(inr[1])), (float(outr[0]), float(outr[1])), mult


class _StableRunner:
    """Runs frames one by one through the ExactTiler with a StatsSmoother (or the identity hook)."""

    def __init__(self, translator: Any, smoother: StatsSmoother | None) -> None:
        from imgxlate.engine import session_factory
        from imgxlate.tiling.exact import ExactTiler

        engine = translator.engine
        path = getattr(translator, "model_path", None) or engine.model_path
        self.tiler = ExactTiler(path, session_factory(engine.device, engine.threads))
        self.smoother = smoother
        self.in_range, self.out_range, _ = _model_ranges(translator)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        # (H, W, 3) uint8 -> (3, H, W) in the model's input range; the tiler pads to its size multiple
        # (reflect) and crops back.
        y = self.tiler.run(uint8_to_model(rgb, self.in_range), tile=0, stats_hook=self.smoother)
        return model_to_uint8(y, self.out_range)


def flicker_ratio(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """Temporal flicker of a translation: mean |out[t] - out[t-1]| / mean |in[t] - in[t-1]|.

    ``inputs``/``outputs``: equal-length sequences of (H, W, C) frames (any dtype, same scale). 1.0
    means the output changes from frame to frame as much as the input does; per-frame CycleGAN output
    is typically well above 1 (whole-frame colour pumping). Consumed one frame at a time.
    """
    num = den = 0.0
    prev_in: np.ndarray | None = None
    prev_out: np.ndarray | None = None
    n = 0
    for a, b in zip(inputs, outputs, strict=True):
        a64 = np.asarray(a, dtype=np.float64)
        b64 = np.asarray(b, dtype=np.float64)
        if prev_in is not None and prev_out is not None:
            den += float(np.abs(a64 - prev_in).mean())
            num += float(np.abs(b64 - prev_out).mean())
        prev_in, prev_out = a64, b64
        n += 1
    if n < 2:
        raise UsageError("flicker_ratio needs at least two frames")
    if den == 0.0:
        return float("inf") if num > 0 else 1.0
    return num / den


def static_flicker(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], tol: float = 2.0) -> float:
    """Mean |out[t] - out[t-1]| over the pixels whose input did not change (every channel within ``tol``).

    There the output should not change at all; what it does change is the whole-frame colour pumping
    that per-frame InstanceNorm statistics cause (motion elsewhere in the frame moves them). 0-255 scale.
    """
    total, count = 0.0, 0
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for a, b in zip(inputs, outputs, strict=True):
        a16, b16 = np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.float64)
        if prev is not None:
            still = (np.abs(a16 - prev[0]) <= tol).all(axis=-1)
            total += float(np.abs(b16 - prev[1])[still].sum())
            count += int(still.sum()) * b16.shape[-1]
        prev = (a16, b16)
    return total / count if count else 0.0


def _mean_abs_diff(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> float:
    total, n = 0.0, 0
    for x, y in zip(a, b, strict=True):
        total += float(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)).mean())
        n += 1
    return total / max(n, 1)


def measure_stability(
    src: str | os.PathLike[str],
    translator: Any,
    *,
    start: float | str | None = None,
    duration: float | str | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
) -> dict[str, float]:
    """Flicker with and without stabilisation on (a part of) a real video, for docs and benchmarks.

    Returns ``flicker_per_frame`` and ``flicker_stabilized`` (:func:`flicker_ratio` of each),
    ``static_flicker_*`` (:func:`static_flicker`), ``faithful_mad``
    (mean abs difference, 0-255 scale, of stabilised vs per-frame output: how far stabilising moves the
    picture), ``cuts`` (scene cuts the smoother detected) and ``frames``.
    """
    frames = [f.rgb.copy() for f in read_frames(src, start=start, duration=duration)]
    if len(frames) < 2:
        raise VideoError(f"{src}: need at least two frames to measure flicker, got {len(frames)}")
    plain = _StableRunner(translator, None)
    smoother = StatsSmoother(momentum, cut_threshold)
    stable = _StableRunner(translator, smoother)
    per_frame = [plain(f) for f in frames]
    smoothed = [stable(f) for f in frames]
    return {
        "frames": float(len(frames)),
        "flicker_per_frame": flicker_ratio(frames, per_frame),
        "flicker_stabilized": flicker_ratio(frames, smoothed),
        "static_flicker_per_frame": static_flicker(frames, per_frame),
        "static_flicker_stabilized": static_flicker(frames, smoothed),
        "faithful_mad": _mean_abs_diff(per_frame, smoothed),
        "cuts": float(smoother.cuts),
    }
