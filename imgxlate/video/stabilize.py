"""Temporal stability: :class:`FlowStabilizer` (a flow-guided blend of the previous output into the
current one), and the measures of flicker and ghosting (:func:`flicker_ratio`, :func:`static_flicker`,
:func:`moving_psnr`, :func:`warp_error`, :func:`measure_stability`).

Why and how:

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

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgxlate.errors import UsageError, VideoError
from imgxlate.video.probe import read_frames

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

    def get_state(self) -> dict[str, np.ndarray] | None:
        """What the blend carries from frame to frame (to resume a conversion), or None at a start."""
        if self._state is None or self._prev_in is None:
            return None
        return {"prev_in": self._prev_in.astype(np.uint8), "state": self._state.astype(np.float32),
                "counts": np.array([self.cuts, self.frames], np.int64)}

    def set_state(self, state: dict[str, np.ndarray] | None) -> None:
        if state is None:
            self.reset()
            return
        prev_in = np.asarray(state["prev_in"], np.uint8)
        self._prev_in = prev_in.astype(np.float32)
        self._prev_gray, _ = self._gray(np.ascontiguousarray(prev_in))
        self._state = np.asarray(state["state"], np.float32)
        if "counts" in state:
            self.cuts, self.frames = (int(v) for v in state["counts"])

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


def warp_error(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], tol: float = 10.0) -> float:
    """Temporal warping error: mean |out[t] - W(out[t-1])| (0-255) over the pixels where the input itself
    warps well (|in[t] - W(in[t-1])| < ``tol``), W = backward warp along Farneback optical flow of the
    input (another flow than :class:`FlowStabilizer`'s DIS, so the measure does not grade its own warp).

    Unlike :func:`flicker_ratio`, motion does not count: a translation that moves with the content
    scores near 0 however much texture it adds; flicker scores high. A margin of 8 px is left out.
    """
    import cv2

    total, count = 0.0, 0
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    grid: tuple[np.ndarray, np.ndarray] | None = None
    for a, b in zip(inputs, outputs, strict=True):
        a8 = np.ascontiguousarray(a, dtype=np.uint8)
        gray = cv2.cvtColor(a8, cv2.COLOR_RGB2GRAY)
        if prev is not None:
            h, w = gray.shape
            if grid is None or grid[0].shape != (h, w):
                grid = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))  # type: ignore[assignment]
            assert grid is not None
            f = cv2.calcOpticalFlowFarneback(gray, prev[0], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            mx, my = grid[0] + f[..., 0], grid[1] + f[..., 1]
            win = cv2.remap(prev[1], mx, my, cv2.INTER_LINEAR)
            wout = cv2.remap(prev[2], mx, my, cv2.INTER_LINEAR)
            ok = np.abs(win - a8.astype(np.float32)).mean(axis=2) < tol
            m = min(8, h // 4, w // 4)
            ok[:m], ok[h - m:], ok[:, :m], ok[:, w - m:] = False, False, False, False
            total += float(np.abs(wout - np.asarray(b, np.float32)).mean(axis=2)[ok].sum())
            count += int(ok.sum())
        prev = (gray, a8.astype(np.float32), np.asarray(b, np.float32))
    return total / count if count else 0.0


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
    settings: TemporalSettings | None = None,
) -> dict[str, float]:
    """Flicker of per-frame and flow-stabilised output on (a part of) a real video, for docs and benches.

    Returns ``flicker_per_frame`` and ``flicker_stable`` (:func:`flicker_ratio` of each),
    ``static_flicker_*`` (:func:`static_flicker`), ``warp_error_*`` (:func:`warp_error`), ``moving_psnr`` (:func:`moving_psnr` of stable vs
    per-frame: ghosting), ``faithful_mad`` (mean abs difference, 0-255, stable vs per-frame), ``cuts``
    and ``frames``. Measured on the decoded frames (no encoder in between).
    """
    frames = [f.rgb.copy() for f in read_frames(src, start=start, duration=duration)]
    if len(frames) < 2:
        raise VideoError(f"{src}: need at least two frames to measure flicker, got {len(frames)}")
    per_frame = [np.asarray(translator.translate_batch(f[None]))[0] for f in frames]
    stab = FlowStabilizer(settings)
    stable = [stab(x, y) for x, y in zip(frames, per_frame, strict=True)]
    return {
        "frames": float(len(frames)),
        "flicker_per_frame": flicker_ratio(frames, per_frame),
        "flicker_stable": flicker_ratio(frames, stable),
        "static_flicker_per_frame": static_flicker(frames, per_frame),
        "static_flicker_stable": static_flicker(frames, stable),
        "moving_psnr": moving_psnr(frames, stable, per_frame),
        "warp_error_per_frame": warp_error(frames, per_frame),
        "warp_error_stable": warp_error(frames, stable),
        "faithful_mad": _mean_abs_diff(per_frame, stable),
        "cuts": float(stab.cuts),
    }
