"""Flow-guided temporal stability for per-frame video translation.

A CycleGAN generator translates every frame on its own, so texture it invents (brush strokes) is
re-invented slightly differently in every frame: the output flickers although the input is calm.
:class:`FlowStabilizer` removes most of it after the generator, from the input's own motion:

1. dense optical flow (OpenCV's DIS) from the current input frame to the previous one;
2. the previous *stable output* is warped along that flow onto the current frame (backward warp);
3. the previous *input* is warped with the same flow, and its difference to the current input is the
   warping error: small where the flow is right, large where it is wrong, where something was
   occluded or uncovered, or where the light changed. A confidence ``exp(-(err / sigma)^2)`` follows
   from it (and is zero where the flow leaves the frame);
4. ``stable = w * conf * warped + (1 - w * conf) * current``: a running average along the motion
   trajectories, falling back to the current output wherever the warp is not trusted.

A scene cut (most of the frame cannot be warped from the previous one) restarts the average, so
nothing of the old scene bleeds into the new one. The blend needs no model internals: it works with
any generator and any backend, costs one flow field and two remaps per frame, and the picture of
every frame stays the generator's translation of that frame where anything moved unpredictably.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from imgxlate.errors import UsageError

__all__ = ["TEMPORAL_MODES", "FlowStabilizer", "TemporalSettings", "moving_psnr"]

TEMPORAL_MODES = ("flow", "off")


@dataclass(frozen=True)
class TemporalSettings:
    """Parameters of :class:`FlowStabilizer` (defaults chosen on the corpus clip, docs/video.md).

    ``weight``: share of the warped history where the warp is fully trusted (0.9 ~ a 10-frame memory);
    ``sigma``: warping error (0-255, mean over RGB, blurred) at which trust falls to 1/e;
    ``cut_fraction``: a frame where more than this share of pixels is untrusted is a scene cut;
    ``flow_width``: the flow is computed on a copy at most this wide (cheap on HD/4K, upsampled after);
    ``preset``: DIS preset (0 ultrafast, 1 fast, 2 medium).
    """

    weight: float = 0.9
    sigma: float = 8.0
    cut_fraction: float = 0.6
    flow_width: int = 640
    preset: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise UsageError(f"temporal weight must be in [0, 1), not {self.weight}")
        if self.sigma <= 0:
            raise UsageError(f"temporal sigma must be > 0, not {self.sigma}")
        if not 0.0 < self.cut_fraction <= 1.0:
            raise UsageError(f"cut fraction must be in (0, 1], not {self.cut_fraction}")


class FlowStabilizer:
    """Call with (input frame, generator output frame), both (H, W, 3) uint8, in display order; returns
    the stable output frame (uint8, same shape). ``cuts`` counts the scene cuts it detected,
    ``frames`` the frames seen, ``trusted`` the mean confidence of the last frame (1 = all warped)."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        import cv2

        self.s = settings or TemporalSettings()
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(self.s.preset)
        self._prev_in: np.ndarray | None = None  # float32 RGB of the previous input
        self._prev_gray: np.ndarray | None = None  # flow-size grey of the previous input
        self._state: np.ndarray | None = None  # float32 stable output of the previous frame
        self._grid: tuple[np.ndarray, np.ndarray] | None = None
        self.cuts = 0
        self.frames = 0
        self.trusted = 0.0

    def reset(self) -> None:
        self._prev_in = self._prev_gray = self._state = None

    def _gray(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        cv2 = self._cv2
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        w = g.shape[1]
        if w > self.s.flow_width:
            scale = self.s.flow_width / w
            g = cv2.resize(g, (self.s.flow_width, max(8, round(g.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            return g, w / self.s.flow_width
        return g, 1.0

    def _map(self, flow: np.ndarray, shape: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
        cv2 = self._cv2
        h, w = shape
        if scale != 1.0:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(scale)
        if self._grid is None or self._grid[0].shape != (h, w):
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            self._grid = (xs, ys)
        return self._grid[0] + flow[..., 0], self._grid[1] + flow[..., 1]

    def __call__(self, rgb_in: np.ndarray, rgb_out: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        if rgb_in.shape[:2] != rgb_out.shape[:2]:
            raise UsageError(f"input {rgb_in.shape[:2]} and output {rgb_out.shape[:2]} frames differ in size")
        self.frames += 1
        gray, scale = self._gray(np.ascontiguousarray(rgb_in))
        cur_in = rgb_in.astype(np.float32)
        cur_out = rgb_out.astype(np.float32)
        if self._state is None or self._prev_gray is None or self._prev_in is None \
                or self._prev_gray.shape != gray.shape or self._state.shape != cur_out.shape:
            self._prev_gray, self._prev_in, self._state = gray, cur_in, cur_out
            self.trusted = 0.0
            return rgb_out
        flow = self._dis.calc(gray, self._prev_gray, None)
        mx, my = self._map(flow, rgb_in.shape[:2], scale)
        # Outside the frame the history is unknown: a sentinel far from any pixel value -> no trust.
        warped_in = cv2.remap(self._prev_in, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(-1000.0, -1000.0, -1000.0))
        err = np.abs(warped_in - cur_in).mean(axis=2)
        err = cv2.blur(err, (5, 5))
        conf = np.exp(-np.square(err * np.float32(1.0 / self.s.sigma)))
        self.trusted = float(conf.mean())
        self._prev_gray, self._prev_in = gray, cur_in
        if (conf < 0.5).mean() > self.s.cut_fraction:
            self.cuts += 1
            self._state = cur_out
            return rgb_out
        warped = cv2.remap(self._state, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = (np.float32(self.s.weight) * conf)[..., None]
        state = cur_out + a * (warped - cur_out)
        self._state = state
        return np.clip(np.rint(state), 0, 255).astype(np.uint8)


def moving_psnr(inputs: Iterable[np.ndarray], a: Iterable[np.ndarray], b: Iterable[np.ndarray],
                threshold: float = 8.0) -> float:
    """PSNR (dB) between output sequences ``a`` and ``b`` over the pixels whose *input* moved.

    A pixel moved when its input changed by more than ``threshold`` (0-255, max over RGB) since the
    previous frame; the first frame has no motion. This is where a temporal blend could ghost (keep
    what was there before); a high PSNR there means the stable output is still the per-frame picture.
    Returns ``inf`` when the sequences agree exactly there, ``nan`` when nothing moved.
    """
    sq, n = 0.0, 0
    prev: np.ndarray | None = None
    for x, y, z in zip(inputs, a, b, strict=True):
        x16 = np.asarray(x, dtype=np.int16)
        if prev is not None:
            moving = (np.abs(x16 - prev) > threshold).any(axis=-1)
            if moving.any():
                d = np.asarray(y, dtype=np.float64)[moving] - np.asarray(z, dtype=np.float64)[moving]
                sq += float(np.square(d).sum())
                n += d.size
        prev = x16
    if n == 0:
        return float("nan")
    mse = sq / n
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
