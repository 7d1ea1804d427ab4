"""Run the whole benchmark suite, each part in its own process, and print one summary against the goals.

    python -m bench --quick --json results.json      # ~13 min on a 2-core machine
    python -m bench --only convert_speed,video_speed
    python -m bench --device cuda --json gpu.json

Parts (in this order): convert_speed, train_speed, tiling, large_photos, learning_check, video_speed,
model_quality when the bundled vangogh2photo pair exists, and scale_out (Ray vs local; skipped
without the ray extra). ``--quick`` is passed to every part that has
it (tiling has none: it gets ``--repeat 1`` instead). Each part writes its own JSON into a temp file;
they are collected under ``parts.<name>.result`` in ``--json PATH`` with the part's status, exit code,
wall time and the tail of its stderr when it failed. A part that fails or times out is reported and
the others still run. The exit status is 0 when every part ran (goals missed are reported, not
errors) and 1 when a part failed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _util as U

PARTS = ("convert_speed", "train_speed", "tiling", "large_photos", "learning_check", "video_speed", "model_quality", "scale_out")
# arguments a part gets for --quick when it has no --quick flag of its own
QUICK_FALLBACK = {"tiling": ["--repeat", "1"]}
DEVICE_PARTS = {"convert_speed": ("cpu", "cuda"), "train_speed": ("cpu", "cuda"), "video_speed": ("cpu", "cuda")}


def _has_flag(script: Path, flag: str) -> bool:
    try:
        return f'"{flag}"' in script.read_text(encoding="utf-8")
    except OSError:
        return False


def part_command(name: str, json_path: Path, quick: bool, device: str, extra: list[str]) -> list[str]:
    script = U.REPO / "bench" / f"{name}.py"
    cmd = [sys.executable, str(script), "--json", str(json_path)]
    if quick:
        cmd += ["--quick"] if _has_flag(script, "--quick") else QUICK_FALLBACK.get(name, [])
    if name in DEVICE_PARTS and device in DEVICE_PARTS[name]:
        cmd += ["--device", device]
    return cmd + extra


def run_part(name: str, quick: bool, device: str, timeout: float, extra: list[str], stream: bool) -> dict[str, Any]:
    script = U.REPO / "bench" / f"{name}.py"
    if not script.is_file():
        return {"status": "missing", "reason": f"{script} does not exist"}
    if name == "model_quality" and not (U.BUNDLED_PAIR / "a2b.onnx").is_file():
        return {"status": "skipped", "reason": f"no bundled model at {U.BUNDLED_PAIR}"}
    with tempfile.TemporaryDirectory(prefix=f"imgxlate-bench-{name}-") as tmp:
        json_path = Path(tmp) / "result.json"
        cmd = part_command(name, json_path, quick, device, extra)
        entry: dict[str, Any] = {"command": " ".join(cmd), "load_average_start": U.load_average()}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=U.REPO, stdout=None if stream else subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, stderr = proc.communicate(timeout=timeout)
            entry["returncode"] = proc.returncode
            stderr = stderr or ""
            if stream and stderr:
                sys.stderr.write(stderr[-4000:])
            entry["stdout"] = None if stream else out
        except subprocess.TimeoutExpired:
            entry["returncode"] = None
            stderr = _stop_part(proc)
            entry["timed_out"] = True
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["load_average_end"] = U.load_average()
        result = None
        if json_path.is_file():
            try:
                result = json.loads(json_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                entry["json_error"] = str(err)
        entry["result"] = result
        if entry.get("timed_out"):
            entry["status"] = "timeout"
        elif entry["returncode"] != 0:
            entry["status"] = "failed"
        elif result is None:
            entry["status"] = "failed"
            entry["reason"] = "exited 0 but wrote no JSON"
        else:
            entry["status"] = "skipped" if isinstance(result, dict) and "skipped" in result else "ok"
        if entry["status"] in ("failed", "timeout"):
            entry["stderr_tail"] = stderr.strip().splitlines()[-12:]
        return entry


def _stop_part(proc: subprocess.Popen[str]) -> str:
    """Stop a part that ran past --timeout, and everything it started: SIGTERM first (the part unwinds:
    its measured commands' process groups are killed, its temporary folders removed), then SIGKILL for
    whatever is left below it. Returns what it wrote on stderr."""
    import signal

    from imgxlate.distributed.processes import descendants, wait_gone

    below = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    wait_gone(below | descendants(proc.pid), 5.0)
    return err or ""


def headline(name: str, result: Any) -> list[str]:
    """A few lines per part for the combined summary (ratios first: absolute numbers are noisy here)."""
    if not isinstance(result, dict):
        return []
    out: list[str] = []
    if name == "convert_speed":
        for row in result.get("sizes", []):
            out.append(f"{row['size']} px: imgxlate {U.fmt(row.get('imgxlate_img_per_s'))} img/s; x torch eager "
                       f"{U.fmt(row.get('ratio_vs_torch_eager'))}, x OpenCV {U.fmt(row.get('ratio_vs_opencv'))}, "
                       f"x OpenVINO {U.fmt(row.get('ratio_vs_openvino'))}")
    elif name == "train_speed":
        out.append(f"{result.get('device')} {result.get('image_size')} px: fast {U.fmt(result.get('fast_img_per_s'))} "
                   f"img/s vs reference {U.fmt(result.get('reference_img_per_s'))}: "
                   f"x{U.fmt(result.get('ratio_fast_vs_reference'))}")
    elif name == "tiling":
        for row in result.get("rows", []):
            out.append(f"{row.get('mode')} {row.get('size')}: PSNR vs whole {U.fmt(row.get('psnr_db'))} dB, "
                       f"time x{U.fmt(row.get('time_ratio'))}, peak {U.fmt(row.get('maxrss_mib'))} MiB")
    elif name == "large_photos":
        for row in result.get("rows", []):
            if row.get("seconds") is not None:
                out.append(f"{row['mp']} MP {row['model']} {row['contender']}: {U.fmt(row['seconds'])} s, peak "
                           f"{U.fmt(row.get('peak_rss_mib'))} MiB, PSNR vs whole {U.fmt(row.get('psnr_vs_whole_db'))} dB")
        for g in result.get("goals", []):
            out.append(f"goal {g['goal']}: {U.goal_state(g)}")
    elif name == "learning_check":
        for d, m in (result.get("margin_over_mean_db") or {}).items():
            out.append(f"{d}: model beats the mean-image baseline by {U.fmt(m)} dB")
    elif name == "video_speed":
        if "skipped" in result:
            out.append(f"skipped: {result['skipped']}")
        for mode, e in (result.get("modes") or {}).items():
            out.append(f"{mode}: {U.fmt(e.get('fps'))} frames/s, flicker ratio {U.fmt(e.get('flicker_ratio'))}"
                       + (f", error {e['error'][:80]}" if e.get("error") else ""))
        if result.get("flicker_reduction"):
            out.append(f"stabilisation cuts flicker x{U.fmt(result['flicker_reduction'])}")
    elif name == "model_quality":
        for k, v in result.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(f"{k}: {U.fmt(v)}")
        out = out[:8]
    return out


def collect_goals(parts: dict[str, Any]) -> list[dict[str, Any]]:
    """Every part's goal records (:func:`bench._util.goal`), in part order. A part whose ``goals`` are
    not such records is marked failed with the reason: a crash in the summary lost every result."""
    out: list[dict[str, Any]] = []
    for entry in parts.values():
        goals = entry["result"].get("goals", []) if isinstance(entry.get("result"), dict) else []
        bad = goals if not isinstance(goals, list) else \
            [g for g in goals if not (isinstance(g, dict) and {"goal", "value", "met"} <= g.keys())]
        if bad:
            entry["status"] = "failed"
            entry["reason"] = f"its goals are not goal records (bench._util.goal): {bad!r}"[:300]
            continue
        out += goals
    return out


def summary(results: dict[str, Any]) -> str:
    head = (f"imgxlate benchmark summary ({'quick' if results['quick'] else 'full'}, device {results['device']}) "
            f"on {results['machine']['cpu']}, {results['machine']['logical_cores']} logical cores, load "
            f"{results['machine']['load_average']} -> {results['load_average_end']}")
    lines = ["", "=" * 100, head,
             "absolute numbers are noisy on a shared machine: ratios (same run, interleaved) are the result", ""]
    for name, entry in results["parts"].items():
        state = entry["status"].upper()
        result = entry.get("result")
        reason = entry.get("reason") or (result.get("skipped") if isinstance(result, dict) else None)
        lines.append(f"[{state}] {name} ({entry.get('seconds', 0)} s)" + (f": {reason}" if reason else ""))
        for h in headline(name, entry.get("result")):
            lines.append(f"    {h}")
        for t in entry.get("stderr_tail", [])[-4:]:
            lines.append(f"    ! {t}")
    lines.append("")
    lines.append("goals:")
    for g in results["goals"]:
        state = U.goal_state(g)
        lines.append(f"  {state:6} {g['goal']}: {U.fmt(g['value'], 4)}")
    if not results["goals"]:
        lines.append("  (no part produced a goal figure)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short pass of every part (~13 min on 2 cores)")
    p.add_argument("--json", type=Path, default=None, help="write every part's results into this file")
    p.add_argument("--only", default="", help=f"comma-separated parts to run (of {', '.join(PARTS)})")
    p.add_argument("--skip", default="", help="comma-separated parts not to run")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="for convert/train/video")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per part before it is stopped")
    p.add_argument("--part-args", action="append", default=[], metavar="PART:ARGS",
                   help="extra arguments for one part, e.g. 'convert_speed:--count 1 --sizes 64' (repeatable)")
    p.add_argument("--capture", action="store_true", help="keep the parts' tables out of the terminal")
    args = p.parse_args(argv)
    only = [x for x in args.only.split(",") if x]
    skip = {x for x in args.skip.split(",") if x}
    unknown = [x for x in [*only, *skip] if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; parts are {', '.join(PARTS)}")
    extra: dict[str, list[str]] = {}
    for spec in args.part_args:
        name, _, rest = spec.partition(":")
        if name not in PARTS:
            p.error(f"--part-args {spec!r}: unknown part {name!r}")
        extra.setdefault(name, []).extend(shlex.split(rest))
    results: dict[str, Any] = {"quick": args.quick, "device": args.device, "machine": U.machine_info(), "parts": {}}
    for name in only or PARTS:
        if name in skip:
            continue
        print(f"\n--- {name} ---", flush=True)
        results["parts"][name] = run_part(name, args.quick, args.device, args.timeout, extra.get(name, []),
                                          stream=not args.capture)
        print(f"--- {name}: {results['parts'][name]['status']} in {results['parts'][name].get('seconds', 0)} s",
              flush=True)
    results["load_average_end"] = U.load_average()
    results["goals"] = collect_goals(results["parts"])
    print(summary(results))
    U.write_json(args.json, results)
    return 1 if any(e["status"] in ("failed", "timeout", "missing") for e in results["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
