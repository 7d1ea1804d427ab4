"""Where an exact tiled run's time goes: the segment graphs against the map store's writes, flushes
and reads, for one image and one store kind.

    python tools/profile_tiler.py PHOTO [--store float16|float32|spill] [--tile N] [--threads 2]

Runs :class:`imgxlate.tiling.exact.ExactTiler` on the bundled model (or ``--model``) directly, without
decode or encode around it, and prints the wall time, s/MP, peak RSS and the seconds spent in each
timed call (the figures of docs/benchmarks.md, "Background spill writes and 4 KiB map pages").
"""

from __future__ import annotations

import argparse
import collections
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgxlate import engine
from imgxlate.tiling.auto import cpu_exact_tile
from imgxlate.tiling.exact import ExactTiler, MapStore
from imgxlate.tiling.exact import store as store_mod

BUNDLED = Path(__file__).resolve().parents[1] / "imgxlate" / "models" / "vangogh2photo" / "b2a.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--store", choices=("float16", "float32", "spill"), default="float16")
    ap.add_argument("--tile", type=int, default=0, help="image tile edge (default: the CPU's cache-sized one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=BUNDLED)
    args = ap.parse_args()

    seconds: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                seconds[label] += time.perf_counter() - t0
                calls[label] += 1

        setattr(owner, name, wrapper)

    for name in ("write", "read", "release"):
        timed(store_mod.MapStore, name, f"store.{name}")
    timed(store_mod._SpillMap, "_pwrite", "spill pwrite (background thread)")
    timed(store_mod._SpillMap, "_pread", "spill pread")
    base = engine.runner_factory("cpu", threads=args.threads, backend="onnxruntime")

    def factory(model: bytes) -> Any:
        runner = base(model)
        timed(runner, "run", "segment graphs")
        return runner

    Image.MAX_IMAGE_PIXELS = None
    img = np.asarray(Image.open(args.photo).convert("RGB"))
    tile = args.tile or cpu_exact_tile(32)
    tiler = ExactTiler(str(args.model), factory)
    t0 = time.perf_counter()
    tiler.run(img, tile=tile, hwc=True, scale=1 / 127.5, offset=-1, store=MapStore.for_choice(args.store),
              sink=lambda region, tile_out: None)
    wall = time.perf_counter() - t0
    mp = img.shape[0] * img.shape[1] / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{args.photo.name}: {mp:.1f} MP, store {args.store}, tile {tile}: {wall:.1f} s ({wall / mp:.2f} s/MP), "
          f"peak RSS {peak} MiB")
    for label, s in seconds.most_common():
        print(f"  {s:8.2f} s  {calls[label]:6d} calls  {label}")


if __name__ == "__main__":
    main()
