"""--temporal flow and the flicker measures (imgxlate.video.stabilize).

Clips made here with the FFmpeg binary of imageio-ffmpeg (an independent reference: imgxlate
itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from video_helpers import (
    FPS,
    read_png,
)

from imgxlate import video
from imgxlate.errors import UsageError


def test_flow_conversion_is_the_stabiliser_applied_to_the_per_frame_output(clip: Path, translator,
                                                                          tmp_path: Path) -> None:
    r = video.convert_video(clip, None, translator, temporal="flow", frames_dir=tmp_path / "f", frames_only=True)
    assert r.temporal == "flow" and r.frames == 2 * FPS
    frames_in = [f.rgb for f in video.read_frames(clip)]
    stable = [read_png(p) for p in sorted((tmp_path / "f").glob("frame_*.png"))]
    plain = list(translator.translate_batch(np.stack(frames_in)))
    stab = video.FlowStabilizer()
    expect = [stab(x, y) for x, y in zip(frames_in, plain)]
    assert len(stable) == 2 * FPS
    assert all(np.array_equal(a, b) for a, b in zip(stable, expect))
    assert video.flicker_ratio(frames_in, stable) < video.flicker_ratio(frames_in, plain)


def test_flicker_ratio() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (4, 5, 3)).astype(np.uint8) for _ in range(5)]
    assert video.flicker_ratio(frames, frames) == pytest.approx(1.0)
    const = [np.full((4, 5, 3), 7, np.uint8)] * 5
    assert video.flicker_ratio(frames, const) == 0.0
    doubled = [f.astype(np.float64) * 2 for f in frames]
    assert video.flicker_ratio(frames, doubled) == pytest.approx(2.0)
    with pytest.raises(UsageError):
        video.flicker_ratio(frames[:1], frames[:1])


def test_static_flicker_counts_only_unchanged_pixels() -> None:
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 100  # one pixel of the input changes
    out_a = np.zeros((2, 2, 3), np.uint8)
    out_b = np.full((2, 2, 3), 4, np.uint8)  # the whole output moves by 4
    out_b[0, 0] = 200
    assert video.static_flicker([a, b], [out_a, out_b]) == pytest.approx(4.0)
    assert video.static_flicker([a, a], [out_a, out_a]) == 0.0


def _scene(i: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A textured background panning 2 px per frame with a bright square moving 3 px per frame."""
    rng = np.random.default_rng(seed)
    import cv2

    world = cv2.resize(rng.integers(0, 255, (h // 4, (w + 200) // 4, 3)).astype(np.uint8), (w + 200, h),
                       interpolation=cv2.INTER_CUBIC)
    f = world[:, 2 * i:2 * i + w].copy()
    x = 5 + 3 * i
    f[15:30, x:x + 15] = (250, 240, 30)
    return f


def test_flow_stabiliser_removes_flicker_without_ghosting() -> None:
    rng = np.random.default_rng(1)
    inputs = [_scene(i) for i in range(12)]
    clean = [255 - x for x in inputs]  # a translation that is consistent over time ...
    noisy = [np.clip(c.astype(int) + rng.integers(-20, 21, c.shape), 0, 255).astype(np.uint8) for c in clean]
    stab = video.FlowStabilizer()
    stable = [stab(x, y) for x, y in zip(inputs, noisy)]  # ... plus per-frame noise (the flicker)
    assert np.array_equal(stable[0], noisy[0])
    assert video.flicker_ratio(inputs, stable) < video.flicker_ratio(inputs, noisy)
    # The per-frame noise is averaged away along the motion: the stable frames are nearer the clean ones.
    err = [np.abs(a.astype(int) - c).mean() for a, c in zip(stable[4:], clean[4:])]
    err_noisy = [np.abs(a.astype(int) - c).mean() for a, c in zip(noisy[4:], clean[4:])]
    assert np.mean(err) < 0.75 * np.mean(err_noisy)
    # No ghosting: the moving square and the panning background stay where the input has them.
    assert video.moving_psnr(inputs, stable, clean) > video.moving_psnr(inputs, noisy, clean) - 1
    assert video.moving_psnr(inputs, stable, clean) > 25
    assert stab.cuts == 0
    assert video.warp_error(inputs, stable) < 0.75 * video.warp_error(inputs, noisy)


def test_warp_error_ignores_motion_and_sees_flicker() -> None:
    inputs = [_scene(i) for i in range(6)]
    consistent = [255 - x for x in inputs]  # moves with the content: no flicker
    rng = np.random.default_rng(3)
    flickering = [np.clip(c.astype(int) + rng.integers(-15, 16, c.shape), 0, 255).astype(np.uint8) for c in consistent]
    assert video.warp_error(inputs, consistent) < 3
    assert video.warp_error(inputs, flickering) > 3 * video.warp_error(inputs, consistent)


def test_flow_stabiliser_restarts_at_a_scene_cut() -> None:
    a = [_scene(i, seed=0) for i in range(4)]
    b = [_scene(i, seed=7)[::-1] for i in range(3)]
    stab = video.FlowStabilizer()
    outs = [stab(x, 255 - x) for x in a + b]
    assert stab.cuts == 1
    assert np.array_equal(outs[4], 255 - b[0])  # nothing of the old scene is blended into the new one
    state = stab.get_state()
    again = video.FlowStabilizer()
    again.set_state(state)
    nxt = _scene(3, seed=7)[::-1]
    assert np.array_equal(again(nxt, 255 - nxt), stab(nxt, 255 - nxt))


def test_moving_psnr_only_counts_moving_pixels() -> None:
    still = np.zeros((4, 4, 3), np.uint8)
    moved = still.copy()
    moved[0, 0] = 200
    a = [still, moved]
    out_a = [still, moved]
    out_b = [still, moved.copy()]
    out_b[1][3, 3] = 90  # differs where the input did not move: not counted
    assert video.moving_psnr(a, out_a, out_b) == float("inf")
    out_b[1][0, 0] = 190
    assert video.moving_psnr(a, out_a, out_b) == pytest.approx(10 * np.log10(255**2 / 100))
    assert np.isnan(video.moving_psnr([still, still], [still, still], [still, still]))
