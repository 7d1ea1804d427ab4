"""The Ray path against the local path on one machine: the overhead a distributed run pays.

    python bench/scale_out.py [--quick] [--count 120] [--size 256] [--threads 2] [--json PATH]

Both paths convert the same folder of ``--count`` JPEGs (``--size`` px, procedural landscapes) with
the bundled model, in the same process order, interleaved over ``--rounds`` rounds (local, ray,
local, ray, ...), best round kept:

- local: :func:`imgxlate.convert_paths` with a Translator of ``--threads`` ONNX Runtime threads;
- ray: :func:`imgxlate.distributed.convert` on a local Ray instance started once (``num_cpus`` =
  the machine's CPUs), one model actor with ``--threads`` threads.

Two figures per path: **steady-state images/s** (images after the first result / time from the first
result to the last: start-up, model loading and Ray's actor start are left out, since on a cluster
they are paid once per job) and **end-to-end wall** (including them). Goal (issue 16): Ray steady
state >= 0.85x local at 256 px.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _util as U
from imgxlate.extras import pip_install

GOAL = 0.85


def _timed(results: Any) -> dict[str, Any]:
    """Consume a FileResult stream; steady-state rate from the first result to the last."""
    t0 = time.perf_counter()
    stamps, statuses = [], []
    for r in results:
        stamps.append(time.perf_counter())
        statuses.append(r.status)
    wall = time.perf_counter() - t0
    n = statuses.count("converted")
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    return {"converted": n, "wall_s": wall, "steady_images_per_s": steady}


def run_local(src: Path, out: Path, threads: int) -> dict[str, Any]:
    import imgxlate

    t0 = time.perf_counter()
    translator = imgxlate.load_model(to="vangogh", device="cpu", threads=threads)
    load = time.perf_counter() - t0
    row = _timed(imgxlate.convert_paths([src], U.fresh_dir(out), translator=translator))
    row["wall_s"] += load
    return row


def run_ray(src: Path, out: Path, threads: int) -> dict[str, Any]:
    import imgxlate.distributed as dist
    from imgxlate.options import ModelSpec

    spec = ModelSpec(to="vangogh", device="cpu", threads=threads)
    return _timed(dist.convert([src], U.fresh_dir(out), spec=spec, quiet=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=None, help="images (default 120, quick 40)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads on both paths")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2, quick 1)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    count = args.count or (40 if args.quick else 120)
    rounds = args.rounds or (1 if args.quick else 2)
    try:
        import ray
    except ImportError:
        print(f"scale_out: ray is not installed ({pip_install('ray')}); nothing measured", file=sys.stderr)
        U.write_json(args.json, {"skipped": "ray not installed", "machine": U.machine_info()})
        return 0
    work = U.fresh_dir(U.CACHE / "scale_out")
    src = work / "in"
    U.write_jpeg_folder(src, count, args.size)
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_start = time.perf_counter() - t0
    rows: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    try:
        for _ in range(rounds):
            rows["local"].append(run_local(src, work / "out-local", args.threads))
            rows["ray"].append(run_ray(src, work / "out-ray", args.threads))
    finally:
        ray.shutdown()

    def best(name: str) -> dict[str, Any]:
        return max(rows[name], key=lambda r: r["steady_images_per_s"] or 0.0)

    local, on_ray = best("local"), best("ray")
    ratio = (on_ray["steady_images_per_s"] / local["steady_images_per_s"]
             if on_ray["steady_images_per_s"] and local["steady_images_per_s"] else None)
    table = [
        {"path": "local", "images/s (steady)": local["steady_images_per_s"], "wall s": local["wall_s"],
         "converted": local["converted"]},
        {"path": "ray", "images/s (steady)": on_ray["steady_images_per_s"], "wall s": on_ray["wall_s"],
         "converted": on_ray["converted"]},
    ]
    print(U.table(table, ["path", "images/s (steady)", "wall s", "converted"],
                  title=f"scale_out: {count} JPEGs at {args.size} px, {args.threads} threads, best of {rounds}"))
    print(f"Ray start-up (once per job): {ray_start:.1f} s")
    goal = U.goal(f"Ray steady state >= {GOAL}x the local path at {args.size} px", ratio,
                  None if ratio is None else ratio >= GOAL)
    print(f"goal: {goal['goal']}: {U.fmt(ratio)}x -> {U.goal_state(goal)}")
    U.write_json(args.json, {"machine": U.machine_info(), "count": count, "size": args.size,
                             "threads": args.threads, "rounds": rows, "ray_start_s": ray_start,
                             "ratio": ratio, "goals": [goal]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
