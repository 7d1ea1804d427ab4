"""Training data from large photos: a full JPEG decode against the DCT-scaled one the loader now uses.

    python bench/train_data.py                      # 4 photos of 12 MP, --load-size 286, 3 rounds
    python bench/train_data.py --mp 24 --load-size 572 --json out.json

For each photo, what the training loader does before cropping (``imgxlate.train.data``): decode to
8-bit sRGB and resize the shorter side to ``--load-size``. ``full`` decodes every pixel first
(``load_rgb(path)``); ``scaled`` lets libjpeg decode at 1/2, 1/4 or 1/8 in the DCT as far as the
shorter side allows (``load_rgb(path, load_size)``, the loader's call). Rounds alternate the two in
one process; printed: ms per photo for each, the ratio, and the PSNR of the scaled result against the
full one (8-bit, after the same resize).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _util as U


def photos(mp: int, count: int, folder: Path) -> list[Path]:
    """``count`` procedural landscapes of about ``mp`` megapixels (4:3), as JPEG quality 92 (cached)."""
    from PIL import Image

    w = round((mp * 1e6 * 4 / 3) ** 0.5) // 8 * 8
    h = w * 3 // 4
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{mp}mp_{i}.jpg"
        if not path.is_file():
            Image.fromarray(U.landscape(h, w, seed=100 + i)).save(path, quality=92)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--mp", type=int, default=12, help="megapixels per photo (default 12)")
    p.add_argument("--count", type=int, default=4, help="photos (default 4)")
    p.add_argument("--load-size", type=int, default=286, help="the training --load-size (default 286)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=Path, default=U.CACHE / "train_data", help="where the photos are made")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from imgxlate.train.data import load_rgb, resize_shorter

    files = photos(args.mp, args.count, args.cache)
    times: dict[str, list[float]] = {"full": [], "scaled": []}
    for _ in range(args.rounds):
        for kind, hint in (("full", 0), ("scaled", args.load_size)):
            t0 = time.perf_counter()
            for f in files:
                resize_shorter(load_rgb(f, hint), args.load_size)
            times[kind].append((time.perf_counter() - t0) / len(files) * 1000)
    psnr = []
    for f in files:
        a = np.asarray(resize_shorter(load_rgb(f), args.load_size), np.float64)
        b = np.asarray(resize_shorter(load_rgb(f, args.load_size), args.load_size), np.float64)
        # libjpeg rounds a scaled side up, so the resized width can differ by a pixel: compare the overlap
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        a, b = a[:h, :w], b[:h, :w]
        psnr.append(10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)))
    full, scaled = min(times["full"]), min(times["scaled"])
    result = {
        "mp": args.mp, "count": args.count, "load_size": args.load_size,
        "ms_per_photo": {k: [round(v, 1) for v in vs] for k, vs in times.items()},
        "speedup": round(full / scaled, 2), "psnr_db_min": round(min(psnr), 2),
    }
    print(f"{args.count} photos of {args.mp} MP -> shorter side {args.load_size}, {args.rounds} rounds alternating")
    for kind in ("full", "scaled"):
        print(f"  {kind:7s} " + " / ".join(f"{v:.1f}" for v in times[kind]) + " ms per photo")
    print(f"  scaled is {result['speedup']}x faster; PSNR of scaled vs full >= {result['psnr_db_min']} dB")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
