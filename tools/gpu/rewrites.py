"""Are the CPU graph rewrites (imgxlate/graphs/rewrite.py) worth having on CUDA too? Run on the GPU
machine by tools/gpu/check.sh: the bundled model as the file has it and rewritten, same session
options (imgxlate.engine.make_session), median time of a run and the largest difference, at 1024x1024
and 2048x1536. Today the rewrites apply on ONNX Runtime's CPU provider only (make_runner);
``python tools/gpu/rewrites.py cpu`` is the dry run here."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgxlate import engine
from imgxlate.graphs.rewrite import for_cpu

MODEL = Path(__file__).resolve().parents[2] / "imgxlate" / "models" / "vangogh2photo" / "b2a.onnx"


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    provider = engine.CUDA if device == "cuda" else engine.CPU
    rewritten = for_cpu(MODEL)
    assert rewritten is not None
    sessions = {name: engine.make_session(data, provider, 0) for name, data in
                (("file", MODEL.read_bytes()), ("rewritten", rewritten.data))}
    for w, h in ((1024, 1024), (2048, 1536)):
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        outs = {}
        for name, sess in sessions.items():
            outs[name] = sess.run(None, {"input": x})[0]  # warm-up (cuDNN picks its algorithms)
        runs: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(5):  # interleaved
            for name, sess in sessions.items():
                t = time.perf_counter()
                sess.run(None, {"input": x})
                runs[name].append(time.perf_counter() - t)
        times = {name: round(statistics.median(v) * 1e3, 2) for name, v in runs.items()}
        print(json.dumps({"provider": provider, "size": f"{w}x{h}", "ms": times,
                          "rewritten_over_file": round(times["rewritten"] / times["file"], 3),
                          "max_abs_diff": float(np.abs(outs["rewritten"] - outs["file"]).max())}), flush=True)


if __name__ == "__main__":
    main()
