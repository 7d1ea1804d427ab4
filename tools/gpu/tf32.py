"""CUDA vs CPU on the bundled model, with ONNX Runtime's TF32 convolutions on and off (run on the GPU
machine by tools/gpu/check.sh): the largest difference in 8-bit levels, the share of values that
differ, PSNR, and the median time of a run. Decides CUDA_OPTIONS["use_tf32"] in imgxlate/engine.py."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL = Path(__file__).resolve().parents[2] / "imgxlate" / "models" / "vangogh2photo" / "b2a.onnx"


def to8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.int16)


def photo(w: int, h: int, seed: int) -> np.ndarray:
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 255, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return (img.transpose(2, 0, 1)[None] / 127.5 - 1).copy()


def timed(sess: ort.InferenceSession, x: np.ndarray, n: int = 5) -> tuple[np.ndarray, float]:
    name = sess.get_inputs()[0].name
    y = sess.run(None, {name: x})[0]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return y, statistics.median(times)


def main() -> None:
    ort.preload_dlls()
    cpu = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    cuda = {
        tf32: ort.InferenceSession(
            str(MODEL),
            providers=[("CUDAExecutionProvider", {"use_tf32": str(tf32), "cudnn_conv_algo_search": "HEURISTIC"})],
        )
        for tf32 in (0, 1)
    }
    for i, (w, h) in enumerate([(333, 217), (1024, 1024), (2048, 1536)]):
        x = photo(w, h, i)
        ref, t_cpu = timed(cpu, x, n=1)
        for tf32, sess in cuda.items():
            y, t = timed(sess, x)
            d = np.abs(to8(y) - to8(ref))
            mse = float(np.mean((to8(y).astype(np.float64) - to8(ref)) ** 2))
            psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
            print(f"{w}x{h} use_tf32={tf32}: max {int(d.max())} levels, {100 * float((d > 0).mean()):.3f}% differ, "
                  f"{psnr:.1f} dB vs CPU; {1000 * t:.1f} ms (CPU {1000 * t_cpu:.0f} ms)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
