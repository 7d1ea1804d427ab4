"""Render the bundled sample images (imgxlate/samples/*.jpg): procedural landscapes made by this script.

The repository may only ship images the project made itself, so the samples for the README's first
command are drawn here: sky gradient, sun, fractal mountain ridges, a lake with a blurred reflection,
grass with noise. Deterministic (fixed seeds). Run: python tools/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "imgxlate" / "samples"


def ridge(rng: np.random.Generator, width: int, base: float, rough: float) -> np.ndarray:
    """1-D midpoint-displacement ridge line of `width` heights around `base` (fraction of height)."""
    n = 1
    pts = np.array([base + rng.normal(0, rough), base + rng.normal(0, rough)])
    scale = rough
    while n < width:
        mid = (pts[:-1] + pts[1:]) / 2 + rng.normal(0, scale, len(pts) - 1)
        out = np.empty(len(pts) * 2 - 1)
        out[0::2], out[1::2] = pts, mid
        pts, n, scale = out, len(out) - 1, scale * 0.55
    x = np.linspace(0, len(pts) - 1, width)
    return np.interp(x, np.arange(len(pts)), pts)


def landscape(seed: int, w: int, h: int, sky_top, sky_bottom, sun, mountains, ground, lake: bool) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h)[..., None]
    img = np.array(sky_top, np.float32) * (1 - t) + np.array(sky_bottom, np.float32) * t
    sx, sy, sr, scol = sun
    d = np.sqrt((xx - sx * w) ** 2 + (yy - sy * h) ** 2)
    glow = np.clip(1 - d / (sr * w * 4), 0, 1) ** 2
    img += glow[..., None] * np.array(scol, np.float32) * 0.5
    img[d < sr * w] = scol
    horizon = int(h * (0.68 if lake else 0.78))
    for i, (base, rough, col) in enumerate(mountains):
        line = ridge(rng, w, base, rough) * h
        mask = yy > line[None, :]
        shade = 1 - 0.25 * ((yy - line[None, :]) / h)
        img[mask] = (np.array(col, np.float32)[None, :] * shade[mask][:, None])
    g = ground
    tex = rng.normal(0, 12, (h, w)).astype(np.float32)
    low = yy >= horizon
    img[low] = np.array(g, np.float32) + tex[low][:, None]
    if lake:
        ref = np.flipud(img[2 * horizon - h : horizon]).copy()
        ripple = np.sin(yy[horizon:] * 0.9 + rng.normal(0, 0.5)) * 3
        water = ref * 0.65 + np.array((40, 70, 110), np.float32) * 0.35 + ripple[..., None]
        shore = horizon + int(h * 0.18)
        img[horizon:shore] = water[: shore - horizon]
        img[shore:] = np.array(g, np.float32) + tex[shore:][..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    return Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.6))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    scenes = {
        "lake_dawn.jpg": landscape(
            1, 512, 384, (70, 110, 190), (250, 190, 140), (0.7, 0.35, 0.04, (255, 230, 160)),
            [(0.45, 0.10, (110, 110, 140)), (0.55, 0.06, (70, 90, 90))], (60, 100, 50), True,
        ),
        "hills_noon.jpg": landscape(
            2, 512, 384, (40, 110, 210), (170, 210, 240), (0.2, 0.15, 0.035, (255, 250, 220)),
            [(0.5, 0.08, (90, 130, 90)), (0.62, 0.05, (60, 120, 50))], (90, 150, 60), False,
        ),
        "valley_dusk.jpg": landscape(
            3, 448, 448, (30, 40, 90), (240, 120, 80), (0.5, 0.55, 0.05, (255, 170, 90)),
            [(0.4, 0.12, (80, 60, 90)), (0.52, 0.08, (50, 45, 60)), (0.62, 0.05, (35, 40, 40))],
            (50, 70, 40), True,
        ),
    }
    for name, img in scenes.items():
        img.save(OUT / name, quality=92)
        print(OUT / name, img.size)


if __name__ == "__main__":
    main()
