"""Training images/s: `imgxlate-train` in its fastest setting vs the reference configuration, side by side.

    python bench/train_speed.py                      # 256 px, ngf 64 / 9 blocks, 30 steps per run
    python bench/train_speed.py --quick              # 64 px, ngf 16 / 3 blocks, 12 steps (CPU smoke)
    python bench/train_speed.py --image-size 128 --steps 20 --json out.json
    python bench/train_speed.py --quick --method cut  # the same for CUT (one direction) or fastcut

Two contenders train the same model size on the same generated data (two folders of landscape JPEGs):

    reference   --precision fp32 --no-channels-last --batch-size 1 --no-compile (the original CycleGAN)
    fast        --precision auto (bf16 on a GPU that has it, fp32 on CPU) --channels-last
                --batch-size B (default 4) [--compile with --compile]

Each run is the real ``imgxlate-train`` command (subprocess) with ``--max-steps``; images/s is read from
its ``log.jsonl`` (one line per step) as (images between the first logged step after warm-up and the
last) / (time between them): start-up, the first steps (allocator, cuDNN autotune, compile) and the
final checkpoint are excluded. Runs are interleaved (ref, fast, ref, fast) when ``--rounds`` > 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _util as U

GOAL_GPU = 3.0  # fast >= 3x reference on a GPU (the issue's target)


def steady_images_per_s(log: Path, batch: int, warmup: int) -> dict[str, Any]:
    """Images/s between step ``warmup`` and the last step of ``log.jsonl`` (fields ``step``, ``time``)."""
    recs = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "step" in r and "time" in r:
            recs.append(r)
    if len(recs) < 2:
        raise RuntimeError(f"{log}: fewer than two logged steps")
    first = next((r for r in recs if r["step"] >= warmup), recs[0])
    if first is recs[-1]:
        first = recs[-2]
    span = recs[-1]["time"] - first["time"]
    steps = recs[-1]["step"] - first["step"]
    return {"img_per_s": steps * batch / span if span > 0 else None, "steps_timed": steps,
            "seconds_timed": round(span, 3), "first_step_s": recs[0]["time"]}


def run_training(name: str, flags: list[str], data: Path, out: Path, common: list[str], batch: int,
                 warmup: int, threads: int) -> dict[str, Any]:
    cmd = [*_train_cmd(), "--domain-a", str(data / "a"), "--domain-b", str(data / "b"), "--out", str(out),
           *common, *flags]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=U.thread_env(threads), cwd=U.REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise RuntimeError(f"{name}: exit {proc.returncode}: " + " | ".join(tail))
    res = steady_images_per_s(out / "log.jsonl", batch, warmup)
    res["wall_s"] = round(wall, 2)
    res["load_average"] = U.load_average()
    return res


def _train_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("imgxlate-train")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "imgxlate.train"]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    quick = args.quick
    size = args.image_size or (64 if quick else 256)
    ngf = args.ngf or (16 if quick else 64)
    n_blocks = args.n_blocks or (3 if quick else 9)
    steps = args.steps or (12 if quick else 30)
    rounds = args.rounds or 1
    batch = args.batch_size
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    threads = args.threads or os.cpu_count() or 1
    warmup = max(2, steps // 4)
    common = ["--image-size", str(size), "--load-size", str(size + size // 8), "--ngf", str(ngf),
              "--ndf", str(ngf), "--n-blocks", str(n_blocks), "--max-steps", str(steps), "--log-every", "1",
              "--sample-every", "0", "--checkpoint-every", "0", "--no-export", "--quiet", "--seed", "0",
              "--device", device, "--workers", str(4 if cuda else 0), "--threads", str(threads),
              "--method", args.method]
    configs = {
        "reference": (["--precision", "fp32", "--no-channels-last", "--batch-size", "1", "--no-compile"], 1),
        "fast": (["--precision", "auto", "--channels-last", "--batch-size", str(batch),
                  "--compile" if args.compile else "--no-compile"], batch),
    }
    result: dict[str, Any] = {
        "part": "train_speed", "method": args.method, "device": device, "image_size": size, "ngf": ngf, "n_blocks": n_blocks,
        "steps": steps, "warmup_steps": warmup, "rounds": rounds, "threads": threads, "quick": quick,
        "machine": U.machine_info(), "configs": {k: " ".join(v[0]) for k, v in configs.items()},
    }
    work = Path(tempfile.mkdtemp(prefix="imgxlate-train-speed-"))
    try:
        n_images = max(8, 4 * batch)
        U.write_jpeg_folder(work / "data" / "a", n_images, size + size // 8, seed=1)
        U.write_jpeg_folder(work / "data" / "b", n_images, size + size // 8, seed=2)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
        errors: dict[str, str | None] = dict.fromkeys(configs)
        for r in range(rounds):
            for name, (flags, b) in configs.items():  # interleaved: ref, fast, ref, fast
                if errors[name]:
                    continue
                try:
                    runs[name].append(run_training(name, flags, work / "data", U.fresh_dir(work / f"run_{name}_{r}"),
                                                   common, b, warmup, threads))
                except Exception as err:  # noqa: BLE001 - reported, the other config still runs
                    errors[name] = str(err)[-600:]
                print(f"  train {name} round {r + 1}/{rounds}: "
                      f"{errors[name] or format(runs[name][-1]['img_per_s'] or 0, '.3g') + ' img/s'}",
                      file=sys.stderr)
        for name in configs:
            ok = [x["img_per_s"] for x in runs[name] if x.get("img_per_s")]
            result[f"{name}_img_per_s"] = sorted(ok)[len(ok) // 2] if ok else None  # median of rounds
            result[f"{name}_runs"] = runs[name]
            result[f"{name}_error"] = errors[name]
        ref, fast = result["reference_img_per_s"], result["fast_img_per_s"]
        result["ratio_fast_vs_reference"] = fast / ref if ref and fast else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_end"] = U.load_average()
    v = result["ratio_fast_vs_reference"]
    result["goals"] = [U.goal("GPU: training fastest setting >= 3x the reference configuration", v,
                              (v is not None and v >= GOAL_GPU) if cuda else None, target=GOAL_GPU)]
    return result


def report(result: dict[str, Any]) -> str:
    rows = [{"config": name, "img/s": result.get(f"{name}_img_per_s"), "flags": result["configs"][name],
             "error": (result.get(f"{name}_error") or "")[:100] or None} for name in ("reference", "fast")]
    lines = [U.table(rows, ["config", "img/s", "flags", "error"], title=(
        f"train_speed: {result['device']}, {result['image_size']} px, ngf {result['ngf']} / {result['n_blocks']} "
        f"blocks, {result['steps']} steps (first {result['warmup_steps']} not timed), load "
        f"{result['machine']['load_average']} -> {result['machine'].get('load_average_end')}"))]
    lines.append(f"fast / reference: {U.fmt(result.get('ratio_fast_vs_reference'))}")
    for g in result["goals"]:
        state = U.goal_state(g, na="n/a on CPU")
        lines.append(f"goal: {g['goal']}: {U.fmt(g['value'])} {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/train_speed.py", description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=None, help="crop size (default 256, quick 64)")
    p.add_argument("--ngf", type=int, default=None, help="generator/discriminator width (default 64, quick 16)")
    p.add_argument("--n-blocks", type=int, default=None, help="residual blocks (default 9, quick 3)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default 30, quick 12)")
    p.add_argument("--batch-size", type=int, default=4, help="batch of the fast configuration")
    p.add_argument("--compile", action="store_true", help="torch.compile in the fast configuration")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 1)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--method", choices=["cyclegan", "cut", "fastcut"], default="cyclegan",
                   help="training method (cut/fastcut: one direction, as they are meant to be used)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = bench(args)
    print(report(result))
    U.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
