"""`imgxlate video` frames/s and flicker, with and without stabilisation, on the corpus clip.

    python bench/video_speed.py                   # 2 s of ../shared/corpus/video/onepiece_demo.mp4
    python bench/video_speed.py --quick           # 0.5 s, tiny random model (ngf 8 / 2 blocks)
    python bench/video_speed.py --seconds 5 --model path/to/b2a.onnx --json out.json

Each mode is the real CLI (``imgxlate video CLIP --duration S --device cpu``, subprocess, MP4 out);
frames/s = frames written / wall time of the command (start-up and model load included: that is what
a user waits for). Flicker is measured on what the user gets: the output MP4 is decoded again and
``imgxlate.video.flicker_ratio(input frames, output frames)`` computed (mean |out[t] - out[t-1]| over
mean |in[t] - in[t-1]|: 1.0 = the output changes as much as the input does), plus ``static_flicker``
(output change where the input did not change, 0-255 scale) when the video module has it.

Model: ``--model`` or the bundled ``vangogh2photo/b2a.onnx``; else a random generator (``--ngf`` /
``--n-blocks``, default 16 / 6; ``--quick`` 8 / 2). The clip is skipped (reported, not failed) when
../shared is absent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _util as U

CLIP = U.CORPUS / "video" / "onepiece_demo.mp4"


def _flicker(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float | None]:
    """flicker_ratio (and static_flicker) from imgxlate.video; the documented formula when absent."""
    try:
        from imgxlate.video import flicker_ratio
    except ImportError:
        def flicker_ratio(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> float:
            a, b = list(a), list(b)
            num = np.mean([np.abs(b[i].astype(float) - b[i - 1]).mean() for i in range(1, len(b))])
            den = np.mean([np.abs(a[i].astype(float) - a[i - 1]).mean() for i in range(1, len(a))])
            return float(num / den)
    n = min(len(inputs), len(outputs))
    out: dict[str, float | None] = {"flicker_ratio": flicker_ratio(inputs[:n], outputs[:n])}
    try:
        from imgxlate.video import static_flicker

        out["static_flicker"] = static_flicker(inputs[:n], outputs[:n])
    except ImportError:
        out["static_flicker"] = None
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from imgxlate.video import probe_video, read_frames

    clip = Path(args.clip)
    seconds = args.seconds or (0.5 if args.quick else 2.0)
    threads = args.threads or os.cpu_count() or 1
    result: dict[str, Any] = {"part": "video_speed", "clip": str(clip), "seconds": seconds, "threads": threads,
                              "quick": args.quick, "machine": U.machine_info(), "modes": {}}
    if not clip.is_file():
        result["skipped"] = f"{clip} not found (../shared/corpus is absent)"
        return result
    if args.model is not None:
        model = Path(args.model)
    elif U.BUNDLED_B2A.is_file() and not args.quick and args.ngf is None:
        model = U.BUNDLED_B2A
    else:
        model = U.random_generator_onnx(args.ngf or (8 if args.quick else 16),
                                        args.n_blocks or (2 if args.quick else 6))
    result["model"] = str(model)
    result["architecture"] = U.model_architecture(model)
    info = probe_video(clip)
    result["clip_info"] = {k: str(getattr(info, k, None)) for k in ("width", "height", "fps", "duration")}
    inputs = [f.rgb.copy() for f in read_frames(clip, duration=seconds)]
    work = Path(tempfile.mkdtemp(prefix="imgxlate-video-speed-"))
    try:
        modes = ("stabilized", "per_frame")
        for r in range(args.rounds or 1):
            for mode in modes:  # interleaved when --rounds > 1
                dst = work / f"{mode}_{r}.mp4"
                cmd = U.imgxlate_cmd("video", str(clip), "--out", str(dst), "--model", str(model),
                                     "--device", args.device, "--threads", str(threads), "--duration", str(seconds),
                                     "--stabilize" if mode == "stabilized" else "--no-stabilize", "--quiet",
                                     "--overwrite")
                entry = result["modes"].setdefault(mode, {"runs": []})
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=U.thread_env(threads),
                                      cwd=U.REPO)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    entry["error"] = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
                    continue
                outputs = [f.rgb.copy() for f in read_frames(dst)]
                run = {"frames": len(outputs), "wall_s": round(wall, 3), "fps": len(outputs) / wall,
                       "load_average": U.load_average()}
                if r == 0:
                    run.update(_flicker(inputs, outputs))
                entry["runs"].append(run)
        for mode, entry in result["modes"].items():
            runs = entry["runs"]
            if runs:
                entry["fps"] = sum(x["frames"] for x in runs) / sum(x["wall_s"] for x in runs)
                entry["flicker_ratio"] = runs[0].get("flicker_ratio")
                entry["static_flicker"] = runs[0].get("static_flicker")
            result[f"{mode}_fps"] = entry.get("fps")
            result[f"{mode}_flicker_ratio"] = entry.get("flicker_ratio")
        a, b = result.get("stabilized_flicker_ratio"), result.get("per_frame_flicker_ratio")
        result["flicker_reduction"] = b / a if a and b else None
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_end"] = U.load_average()
    return result


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"video_speed: skipped: {result['skipped']}"
    rows = [{"mode": m, "frames/s": e.get("fps"), "flicker ratio": e.get("flicker_ratio"),
             "static flicker": e.get("static_flicker"), "error": (e.get("error") or "")[:100] or None}
            for m, e in result["modes"].items()]
    title = (f"video_speed: {Path(result['clip']).name}, {result['seconds']} s, model {result['model']} "
             f"({result['architecture'] or 'no metadata'}), load {result['machine']['load_average']} -> "
             f"{result['machine'].get('load_average_end')}")
    return U.table(rows, ["mode", "frames/s", "flicker ratio", "static flicker", "error"], title=title) + (
        f"\nflicker per-frame / stabilized: {U.fmt(result.get('flicker_reduction'))}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/video_speed.py", description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--seconds", type=float, default=None, help="convert this much of the clip (default 2, quick 0.5)")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--ngf", type=int, default=None)
    p.add_argument("--n-blocks", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 1)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = bench(args)
    print(report(result))
    U.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
