"""A procedural test clip for temporal stability: a camera pan, a moving object and one scene cut.

    python bench/video_clip.py out.mp4                      # 640x480, 48 frames at 24 fps
    python bench/video_clip.py out.mp4 --size 1280x720 --frames 72

Scene A (first half): the camera pans right over a landscape (``bench._util.landscape``: sky, sun,
hills, a lake, grain), 4 px per frame, while a textured ball crosses the frame diagonally (7 px per frame) in
front of it, so part of the background is occluded and uncovered in every frame. Scene B (second
half, after a hard cut): another landscape, panning left and down, with no object. The frames are a
pure function of (size, frame index, seed); the file is H.264 (crf 16, yuv420p) written with PyAV.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import landscape


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scales: tuple[int, ...]) -> np.ndarray:
    import cv2

    out = np.zeros((h, w), np.float32)
    for k, s in enumerate(scales):
        small = rng.standard_normal((max(2, h // s), max(2, w // s))).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (k + 1)
    return out / (np.abs(out).max() + 1e-6)


def frames(width: int, height: int, count: int, seed: int = 0):
    """Yield the clip's frames, (height, width, 3) uint8."""
    half = count // 2
    pan_a, pan_b = 4, 3
    world_a = landscape(height, width + pan_a * half + 8, seed)
    world_b = landscape(height + pan_b * (count - half) + 8, width + pan_b * (count - half) + 8, seed + 1)
    rng = np.random.default_rng(seed + 2)
    r = max(6, height // 8)
    ball_tex = (60 * _smooth_noise(rng, 2 * r + 1, 2 * r + 1, (4, 2))).astype(np.float32)
    by, bx = np.mgrid[-r:r + 1, -r:r + 1]
    ball = (bx**2 + by**2) <= r * r
    for i in range(count):
        if i < half:
            f = world_a[:, pan_a * i:pan_a * i + width].copy()
            cx = int(-r + 7 * i * (width + 2 * r) / (7 * half))
            cy = int(height * 0.3 + 0.4 * height * i / max(half, 1))
            ys, xs = np.nonzero(ball)
            ys, xs = ys + cy - r, xs + cx - r
            ok = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
            col = np.array([220, 60, 40], np.float32) + ball_tex[ball][:, None]
            f[ys[ok], xs[ok]] = np.clip(col[ok], 0, 255).astype(np.uint8)
        else:
            j = i - half
            off = pan_b * (count - half - j)
            f = world_b[off:off + height, off:off + width].copy()
        yield f


def write_clip(path: str | Path, width: int = 640, height: int = 480, count: int = 48, fps: int = 24,
               seed: int = 0) -> Path:
    """Write the clip as H.264 MP4 (PyAV) and return its path."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps))
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.options = {"crf": "16", "preset": "fast"}
        for f in frames(width, height, count, seed):
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/video_clip.py", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--size", default="640x480")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    print(write_clip(a.out, w, h, a.frames, a.fps, a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
