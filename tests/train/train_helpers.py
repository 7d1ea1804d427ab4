"""Helpers for the trainer tests: tiny image folders and configs (CPU, ngf 8, 2 blocks, 32-px crops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgxlate.train.config import TrainConfig


def write_images(
    folder: Path, n: int, seed: int, size: tuple[int, int] = (40, 48), tint: int = 0
) -> list[Path]:
    """n random smooth-ish RGB PNGs (some with spaces in the name) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = size[0] + 2 * i, size[1]
        small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
        if tint:
            arr = np.asarray(img).astype(np.int16)
            arr[..., 0] = np.clip(arr[..., 0] + tint, 0, 255)
            img = Image.fromarray(arr.astype(np.uint8))
        path = folder / f"img {i:02d}.png"
        img.save(path)
        paths.append(path)
    return paths


def tiny_config(a: Path, b: Path, out: Path, **kw: object) -> TrainConfig:
    base = {
        "domain_a": str(a),
        "domain_b": str(b),
        "out": str(out),
        "ngf": 8,
        "ndf": 8,
        "n_blocks": 2,
        "image_size": 32,
        "load_size": 36,
        "workers": 0,
        "max_steps": 4,
        "epochs": 1,
        "epochs_decay": 1,
        "pool_size": 3,
        "checkpoint_every": 0,
        "sample_every": 0,
        "log_every": 1,
        "export": False,
        "threads": 1,
    }
    base.update(kw)
    return TrainConfig(**base)
