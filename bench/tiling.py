"""Whole-image vs overlap-blend tiling vs exact tiling: fidelity, time and peak memory.

Run ``python bench/tiling.py`` (or ``python -m bench.tiling``). Every mode runs in its own
subprocess so its peak resident memory (``ru_maxrss``) is its own; the table shows the peak RSS of the
run and the increase over the same process just before the run (image loaded, session built).

Model ``--model PATH`` (default ``imgxlate/models/vangogh2photo/b2a.onnx`` when present, else a random
ngf-32 / 6-block generator exported once with ``imgxlate.train.export`` into the temp folder). Image
1024x768: a corpus photo upscaled (``../shared/corpus/photos``) when present, else a synthetic one
(smooth gradients + shapes + noise). PSNR is over [-1, 1] outputs (peak-to-peak 2) against the
whole-image run. ``--large`` adds exact tiling at 6000x4000, ``--huge`` at 12000x8000 (synthetic
images generated in the worker; no whole-image run: that is what tiling is for). ``--json PATH``
writes the rows. ``--threads`` sets ORT's intra-op threads (default 1: the machine is shared and one
thread gives steadier ratios).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "imgxlate" / "models" / "vangogh2photo" / "b2a.onnx"
CORPUS = Path(os.environ.get("IMGXLATE_SHARED", REPO.parent / "shared")) / "corpus" / "photos"


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(3, h, w) float32 in [-1, 1]: smooth colour gradients, a few discs and bars, fine noise."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    img = np.empty((3, h, w), np.float32)
    img[0] = 0.6 * np.sin(2.5 * xx + 1.0) * np.cos(1.7 * yy)
    img[1] = 0.8 * yy - 0.4 + 0.2 * np.sin(6.0 * xx)
    img[2] = 0.5 * np.cos(3.0 * (xx + yy))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
        colour = rng.uniform(-1, 1, 3).astype(np.float32)
        mask = ((yy - cy) ** 2 * (h / w) ** 2 + (xx - cx) ** 2) < r * r
        img[:, mask] = colour[:, None]
    for _ in range(6):
        y0 = int(rng.integers(0, h))
        img[:, y0 : y0 + max(1, h // 60), :] = rng.uniform(-1, 1, (3, 1, 1)).astype(np.float32)
    img += 0.04 * rng.standard_normal((3, h, w)).astype(np.float32)
    return np.clip(img, -1, 1)


def bench_image(h: int, w: int) -> tuple[np.ndarray, str]:
    photos = sorted(CORPUS.glob("*.jpg")) if CORPUS.is_dir() else []
    if photos:
        from PIL import Image

        with Image.open(photos[0]) as im:
            im = im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        return np.ascontiguousarray(arr), f"corpus photo {photos[0].name!r} upscaled to {w}x{h}"
    return synthetic_image(h, w), f"synthetic {w}x{h}"


def default_model() -> Path:
    if BUNDLED.is_file():
        return BUNDLED
    out = Path(tempfile.gettempdir()) / "imgxlate-bench-ngf32-b6"
    path = out / "a2b.onnx"
    if not path.is_file():
        import torch

        from imgxlate.train.export import export_pair
        from imgxlate.train.networks import ResnetGenerator, init_weights

        torch.manual_seed(0)
        cfg = {"ngf": 32, "n_blocks": 6, "upsample": "transpose"}
        gens = [init_weights(ResnetGenerator(**cfg), gain=0.05) for _ in range(2)]
        export_pair(gens[0], gens[1], out, "a", "b", cfg, image_size=64, steps=0, epochs=0.0, overwrite=True)
    return path


def _maxrss_mib() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _session_factory(threads: int, exact: bool):
    """Sessions exactly as ``imgxlate convert`` builds them (engine.py): ONNX Runtime, CPU, an own arena
    for the whole-image session, the shared one for the exact tiler's segments."""
    from imgxlate import engine

    if exact:
        return engine.runner_factory("cpu", threads, backend="onnxruntime")

    def make(data: bytes | str):
        return engine.make_session(data, engine.CPU, threads)

    return make


def worker(args: argparse.Namespace) -> None:
    """One mode in this process; prints a JSON line."""
    from imgxlate.tiling.blend import run_blended
    from imgxlate.tiling.exact import ExactTiler
    from imgxlate.tiling.pad import pad_to_multiple

    if args.image:
        image = np.load(args.image)
    else:
        h, w = (int(v) for v in args.size.split("x")[::-1])
        image = synthetic_image(h, w, seed=1)
    make = _session_factory(args.threads, args.worker == "exact")
    t0 = time.perf_counter()
    if args.worker == "exact":
        tiler = ExactTiler(args.model, session_factory=make)
        run_once = lambda: tiler.run(image, tile=args.tile)
    else:
        sess = make(str(args.model))

        def call(x: np.ndarray) -> np.ndarray:
            return sess.run(None, {"input": x})[0]

        if args.worker == "whole":

            def run_once() -> np.ndarray:
                padded, (h, w) = pad_to_multiple(image)
                return call(padded[None])[0, :, :h, :w]

        else:
            run_once = lambda: run_blended(call, image, args.tile, args.overlap)
    setup = time.perf_counter() - t0
    before = _maxrss_mib()
    times = []
    out = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = run_once()
        times.append(time.perf_counter() - t0)
    assert out is not None
    if args.out:
        np.save(args.out, out)
    print(
        json.dumps(
            {
                "mode": args.worker,
                "setup_s": setup,
                "time_s": min(times),
                "maxrss_mib": _maxrss_mib(),
                "before_mib": before,
            }
        )
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)  # peak-to-peak 2 for [-1, 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--tile", type=int, default=512, help="tile edge in input pixels (blend and exact)")
    p.add_argument("--overlap", type=int, default=64, help="blend overlap in pixels")
    p.add_argument("--size", default="1024x768", help="WxH of the comparison image")
    p.add_argument("--repeat", type=int, default=2, help="runs per mode; the fastest is reported")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (0: ORT default)")
    p.add_argument("--large", action="store_true", help="add exact tiling at 6000x4000")
    p.add_argument("--huge", action="store_true", help="add exact tiling at 12000x8000")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", choices=["whole", "blend", "exact"], help=argparse.SUPPRESS)
    p.add_argument("--image", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.model is None:
        args.model = default_model()
    if args.worker:
        worker(args)
        return 0

    w, h = (int(v) for v in args.size.split("x"))
    image, what = bench_image(h, w)
    print(
        f"model {args.model}\nimage {what}; tile {args.tile}, blend overlap {args.overlap}, "
        f"ORT threads {args.threads or 'default'}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img_path = Path(tmp) / "image.npy"
        np.save(img_path, image)
        outputs = {}
        jobs = [
            ("whole", f"{w}x{h}", str(img_path)),
            ("blend", f"{w}x{h}", str(img_path)),
            ("exact", f"{w}x{h}", str(img_path)),
        ]
        if args.large:
            jobs.append(("exact", "6000x4000", ""))
        if args.huge:
            jobs.append(("exact", "12000x8000", ""))
        for mode, size, img in jobs:
            out = Path(tmp) / f"{mode}-{size}.npy"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                mode,
                "--model",
                str(args.model),
                "--tile",
                str(args.tile),
                "--overlap",
                str(args.overlap),
                "--size",
                size,
                "--threads",
                str(args.threads),
                "--repeat",
                str(args.repeat if img else 1),
            ]
            if img:
                cmd += ["--image", img, "--out", str(out)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["size"] = size
            # RUSAGE_CHILDREN is the peak of the largest child so far; the child reports its own.
            row["children_maxrss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
            if img:
                outputs[mode] = np.load(out)
            rows.append(row)
        whole_time = rows[0]["time_s"]
        for row in rows:
            if row["size"] == f"{w}x{h}":
                row["psnr_db"] = psnr(outputs[row["mode"]], outputs["whole"])
                row["max_abs"] = float(np.abs(outputs[row["mode"]] - outputs["whole"]).max())
                row["time_ratio"] = row["time_s"] / whole_time
    print(
        f"\n{'mode':6} {'size':>10} {'PSNR dB':>8} {'max abs':>9} {'time s':>7} {'ratio':>6} "
        f"{'peak MiB':>9} {'+run MiB':>9}"
    )
    for r in rows:
        ps = r.get("psnr_db")
        print(
            f"{r['mode']:6} {r['size']:>10} {('inf' if ps == math.inf else f'{ps:.1f}') if ps is not None else '-':>8} "
            f"{r.get('max_abs', float('nan')):9.2e} {r['time_s']:7.2f} {r.get('time_ratio', float('nan')):6.2f} "
            f"{r['maxrss_mib']:9.0f} {r['maxrss_mib'] - r['before_mib']:9.0f}"
        )
    if args.json:
        from imgxlate._atomic import atomic_path

        with atomic_path(args.json) as tmp_json:
            tmp_json.write_text(
                json.dumps(
                    {
                        "model": str(args.model),
                        "image": what,
                        "tile": args.tile,
                        "overlap": args.overlap,
                        "threads": args.threads,
                        "rows": rows,
                    },
                    indent=2,
                    default=str,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
