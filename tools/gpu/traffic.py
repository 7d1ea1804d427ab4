"""Bytes an exact-tiled run moves between host and GPU, counted on the CPU with the same plan and graphs:
host staging (every segment's fed arrays up, every output down) against tiles kept on the device
(image windows up, output tiles down; the per-channel sums are a few KB).

    python tools/gpu/traffic.py 3000 4000 1024     # height, width, tile (the bundled model, b2a)
"""

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.engine import runner_factory
from imgxlate.tiling.exact import ExactTiler, MapStore
from imgxlate.tiling.exact import executor as ex

MODEL = Path(__file__).resolve().parents[2] / "imgxlate" / "models" / "vangogh2photo" / "b2a.onnx"


def main(height: int, width: int, tile: int) -> None:
    base = runner_factory("cpu", threads=2, backend="onnxruntime")
    count = {"calls": 0, "up": 0, "up_small": 0, "down": 0, "windows": 0, "tiles": 0}

    def factory(model: bytes) -> Any:
        runner = base(model)

        class Counted:
            def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
                count["calls"] += 1
                for v in feeds.values():  # maps and windows; the int64 amounts and norm statistics are small
                    count["up" if v.ndim == 4 and v.shape[2] > 1 else "up_small"] += v.nbytes
                outs = runner.run(feeds)
                count["down"] += sum(o.nbytes for o in outs)
                return outs

            def release(self) -> None:
                runner.release()

        return Counted()

    read = ex.ImageSource.read

    def counted_read(self: Any, region: Any) -> np.ndarray:
        window = read(self, region)
        count["windows"] += window.nbytes
        return window

    ex.ImageSource.read = counted_read  # type: ignore[method-assign]
    tiler = ExactTiler(MODEL, factory)
    img = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)

    def sink(region: Any, y: np.ndarray) -> None:
        count["tiles"] += y.nbytes

    t0 = time.perf_counter()
    tiler.run(img, tile, hwc=True, scale=2 / 255, offset=-1, store=MapStore("float32"), sink=sink)
    gb = 1e9
    print(f"{height}x{width}, tile {tile}: {count['calls']} segment calls in {time.perf_counter() - t0:.1f} s")
    print(f"host staging: up {count['up'] / gb:.2f} GB (+{count['up_small'] / 1e6:.1f} MB small), "
          f"down {count['down'] / gb:.2f} GB")
    print(f"tiles on the device: up {count['windows'] / gb:.3f} GB (image windows, float32), "
          f"down {count['tiles'] / gb:.3f} GB (output tiles)")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
