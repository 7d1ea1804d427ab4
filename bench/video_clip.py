"""A procedural test clip for temporal stability: a camera pan, a moving object and one scene cut.

    python bench/video_clip.py out.mp4                      # 640x480, 48 frames at 24 fps
    python bench/video_clip.py out.mp4 --size 1280x720 --frames 72

Scene A (first half): the camera pans right over a landscape (sky gradient, hills, textured ground,
a few trees), 4 px per frame, while a textured ball crosses the frame diagonally (7 px per frame) in
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


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scales: tuple[int, ...]) -> np.ndarray:
    import cv2

    out = np.zeros((h, w), np.float32)
    for k, s in enumerate(scales):
        small = rng.standard_normal((max(2, h // s), max(2, w // s))).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (k + 1)
    return out / (np.abs(out).max() + 1e-6)


def landscape(h: int, w: int, seed: int) -> np.ndarray:
    """A (h, w, 3) uint8 landscape: sky, two hill lines, textured fields, trees."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ones = np.ones((h, w), np.float32)
    sky = np.stack([(110 + 90 * y) * ones, (160 + 60 * y) * ones, (235 - 30 * y) * ones], axis=-1)
    img = sky + 12 * _smooth_noise(rng, h, w, (64, 32))[..., None]
    ridge1 = 0.45 + 0.08 * np.sin(x * 9 + seed) + 0.04 * np.sin(x * 23)
    ridge2 = 0.62 + 0.06 * np.sin(x * 5 + 2 * seed) + 0.03 * np.sin(x * 31)
    tex = _smooth_noise(rng, h, w, (16, 8, 4, 2))[..., None]
    hill1 = np.array([70, 110, 150], np.float32) + 35 * tex
    hill2 = np.array([60, 140, 60], np.float32) + 50 * tex
    img = np.where((y > ridge1)[..., None], hill1, img).astype(np.float32)
    img = np.where((y > ridge2)[..., None], hill2, img).astype(np.float32)
    # trees: dark ellipses on the near hills
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(max(3, w // 80)):
        cx, cy = rng.uniform(0, w), rng.uniform(0.62 * h, 0.95 * h)
        r = rng.uniform(0.02, 0.05) * h
        inside = ((xx - cx) / r) ** 2 + ((yy - cy) / (1.6 * r)) ** 2 < 1
        img[inside] = np.array([30, 70, 35], np.float32) + 25 * tex[inside]
    return np.clip(img, 0, 255).astype(np.uint8)


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
