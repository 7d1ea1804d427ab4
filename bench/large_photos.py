"""Large photos: 1, 12, 48 and 96 MP through ``imgxlate convert`` vs OpenVINO on the whole image.

Each contender converts one JPEG (a procedural landscape, upscaled above 12 MP) to PNG in its own
process; wall time covers decode, model and encode (``totals.seconds`` of ``imgxlate convert --json``;
process start and model load excluded for every contender; `process_cpu_s`, the child's CPU time
including start-up, is the figure to read on a loaded machine), peak RSS is the child's own
(``os.wait4`` through a small launcher: see ``_util.run_measured``). Contenders, interleaved per size and model:

- ``exact_ort`` / ``exact_ov``: ``imgxlate convert`` with automatic tiling, ``--backend onnxruntime`` /
  ``openvino`` (the exact tiler's segments on that runtime);
- ``exact_ort_plain``: ``exact_ort`` with ``IMGXLATE_GRAPH_REWRITES=0`` (no :mod:`imgxlate.graphs.rewrite`:
  the segment graphs and whole runs as the file has them), for what the rewrites are worth;
- ``whole_ort``: ``imgxlate convert --tile 0 --backend onnxruntime``, where a whole run fits in memory:
  the reference the PSNR column is measured against;
- ``tiler_u8``: the exact tiler alone on the decoded uint8 image, output tiles quantised to uint8 as
  they come (``ExactTiler.run(hwc=True, sink=...)``, ONNX Runtime, automatic tile and store): what the
  memory bound is with a uint8 decode/encode path (the CLI decodes to float32 today);
- ``openvino``: OpenVINO 2026 used directly, as a user would: PIL decode, one whole-image run
  (``INFERENCE_PRECISION_HINT=f32``), PIL PNG encode; where it fits;
- ``torch64`` (smallest size only; size ``0`` is 768x576): the same weights in PyTorch in float64, the
  arbiter of which runtime is right (``--no-torch`` skips it).

Models: the bundled ``vangogh2photo/b2a.onnx`` (third edition: ngf 32, 9 blocks) and a reference-size random
generator (ngf 64, 9 blocks; exported once with the trainer, needs torch). ``--quick``: 1 and 12 MP,
bundled model only. Machine load matters: run with ``nice`` on a shared machine and read the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _util as U
from imgxlate.graphs.rewrite import ENV

SIZES = {0: (768, 576), 1: (1152, 864), 12: (4000, 3000), 48: (8000, 6000), 96: (12000, 8000)}  # MP -> (W, H)
CONTENDERS = ("exact_ort", "exact_ort_plain", "exact_ov", "tiler_u8", "whole_ort", "openvino", "torch64")
GOALS = {"bundled_12mp_peak_mib": 1536, "bundled_96mp_peak_mib": 2048, "reference_12mp_peak_mib": 2560,
         "psnr_db": 50.0, "flat_time_per_mp": 1.2}


# ------------------------------------------------------------------------------------------- inputs


def photo(mp: int, folder: Path) -> Path:
    """``folder/photo_{mp}mp.jpg``: a 12 MP procedural landscape, resized to the size (cached)."""
    from PIL import Image

    w, h = SIZES[mp]
    path = folder / f"photo_{mp}mp.jpg"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    base_w, base_h = SIZES[12] if mp >= 12 else (w, h)
    img = Image.fromarray(U.landscape(base_h, base_w, seed=12))
    if (base_w, base_h) != (w, h):
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    Image.MAX_IMAGE_PIXELS = None
    img.save(path, quality=92)
    return path


def models(quick: bool) -> dict[str, Path]:
    out = {"bundled": U.BUNDLED_B2A}
    if not quick:
        try:
            out["reference"] = U.random_generator_onnx(64, 9, "transpose")
        except ImportError as exc:  # no torch: the reference-size model cannot be exported here
            print(f"reference-size model skipped: {exc}", file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------------ running


def contender_cmd(kind: str, model: Path, src: Path, out_dir: Path, threads: int) -> list[str]:
    if kind in ("exact_ort", "exact_ort_plain", "exact_ov", "whole_ort"):
        backend = "openvino" if kind == "exact_ov" else "onnxruntime"
        cmd = U.imgxlate_cmd("convert", str(src), "--out", str(out_dir), "--model", str(model), "--format", "png",
                             "--device", "cpu", "--threads", str(threads), "--backend", backend, "--json",
                             "--overwrite")
        return cmd + (["--tile", "0"] if kind == "whole_ort" else [])
    return [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--model", str(model),
            "--image", str(src), "--out", str(out_dir / (src.stem + ".png")), "--threads", str(threads)]


def fits_whole(model: Path, mp: int, kind: str) -> bool:
    """Would a whole-image run fit in the memory available now (OpenVINO needs about half of ONNX
    Runtime's: 5.8 GB vs 10.7 GB measured at 12 MP with the bundled model)?"""
    from imgxlate.tiling.auto import available_memory, whole_need

    ngf = int(U.model_architecture(model).get("ngf", 64) or 64)
    w, h = SIZES[mp]
    return whole_need(h, w, ngf) * WHOLE_FACTOR.get(kind, 1.0) < 0.7 * available_memory()


# A whole-image contender's peak against ONNX Runtime's estimate (tiling.auto.whole_need), measured with
# the bundled model: OpenVINO about half of it (5.8 GB vs 10.7 GB at 12 MP); PyTorch eager in float64
# about 12 times (12.6 GB at 1 MP against an estimate of 1.07 GB: every map in float64, autograd off).
WHOLE_FACTOR = {"openvino": 0.5, "torch64": 12.0}


def worker(args: argparse.Namespace) -> None:
    """One non-imgxlate contender in this process: decode, run the whole image, encode; JSON line."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    if args.worker == "tiler_u8":
        tiler_u8(args)
        return
    if args.worker == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(str(args.model), "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                                "INFERENCE_PRECISION_HINT": "f32"})
        run = lambda x: np.asarray(compiled(x)[0])
    else:  # torch64
        import torch

        torch.set_num_threads(args.threads)
        gen = U.torch_generator_from_onnx(args.model).double().eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return gen(torch.from_numpy(x.astype(np.float64))).numpy()

    t0 = time.perf_counter()
    with Image.open(args.image) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    ph, pw = -(-h // 4) * 4, -(-w // 4) * 4
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(127.5) - np.float32(1.0)
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
    y = run(x)[0, :, :h, :w]
    u8 = np.clip(np.rint((y.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    Image.fromarray(u8).save(args.out)
    print(json.dumps({"totals": {"seconds": round(time.perf_counter() - t0, 3)}}))


def tiler_u8(args: argparse.Namespace) -> None:

    from PIL import Image

    from imgxlate.engine import runner_factory
    from imgxlate.tiling.auto import choose_tiling
    from imgxlate.tiling.exact import ExactTiler, MapStore

    Image.MAX_IMAGE_PIXELS = None
    tiler = ExactTiler(args.model, runner_factory("cpu", args.threads, backend="onnxruntime"))
    ngf = int(U.model_architecture(args.model).get("ngf", 64) or 64)
    t0 = time.perf_counter()
    with Image.open(args.image) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    choice = choose_tiling(h, w, ngf=ngf)
    store = MapStore.for_choice(choice.store)
    out = np.empty_like(rgb)

    def sink(region: tuple[int, int, int, int], y: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        out[y0:y1, x0:x1] = np.clip(np.rint((y.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255)

    tiler.run(rgb, max(choice.exact_tile, 256), hwc=True, scale=1 / 127.5, offset=-1.0, sink=sink, store=store)
    Image.fromarray(out).save(args.out)
    print(json.dumps({"totals": {"seconds": round(time.perf_counter() - t0, 3)}, "tile": choice.exact_tile,
                      "store": choice.store}))


def psnr8(a: Path, b: Path) -> float | None:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    if not a.is_file() or not b.is_file():
        return None
    with Image.open(a) as ia, Image.open(b) as ib:
        x, y = np.asarray(ia.convert("RGB")), np.asarray(ib.convert("RGB"))
    if x.shape != y.shape:
        return None
    mse = 0.0
    for r in range(0, x.shape[0], 1024):  # in bands: a 96 MP difference in float64 would be 2.3 GB
        d = x[r : r + 1024].astype(np.float64) - y[r : r + 1024]
        mse += float(np.sum(d * d))
    mse /= x.size
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=None, help="megapixels, comma-separated, from 1,12,48,96 (default: all)")
    p.add_argument("--models", default=None, help="bundled,reference (default: both; --quick: bundled)")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per contender run")
    p.add_argument("--quick", action="store_true", help="1 and 12 MP, bundled model")
    p.add_argument("--no-torch", action="store_true", help="skip the float64 PyTorch arbiter")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", choices=["openvino", "torch64", "tiler_u8"], help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    sizes = [int(s) for s in (args.sizes or ("1,12" if args.quick else "1,12,48,96")).split(",")]
    all_models = models(args.quick)
    wanted = (args.models or ("bundled" if args.quick else "bundled,reference")).split(",")
    chosen = {k: v for k, v in all_models.items() if k in wanted}
    contenders = [c for c in args.contenders.split(",") if c in CONTENDERS]
    if (args.no_torch or args.quick) and "torch64" in contenders:
        contenders.remove("torch64")  # the float64 reference: minutes and ~12 GB, not for a quick pass
    try:
        import openvino  # noqa: F401
    except ImportError:
        contenders = [c for c in contenders if c not in ("exact_ov", "openvino")]
        print("openvino not installed: OpenVINO contenders skipped", file=sys.stderr)
    env = U.thread_env(args.threads)
    cache = U.CACHE / "large_photos"
    rows: list[dict[str, Any]] = []
    started = U.load_average()
    with tempfile.TemporaryDirectory(prefix="imgxlate-large-") as tmp:
        for mp in sizes:
            src_dir = cache / f"{mp}mp"
            src = photo(mp, src_dir)
            for name, model in chosen.items():
                outs: dict[str, Path] = {}
                for rnd in range(args.rounds):
                    for kind in contenders:
                        if kind == "torch64" and mp != min(sizes):
                            continue  # float64 PyTorch needs ~6 GB at 1 MP (im2col): the smallest size only
                        if kind in ("whole_ort", "openvino", "torch64") and not fits_whole(model, mp, kind):
                            if rnd == 0:
                                rows.append({"mp": mp, "model": name, "contender": kind, "skipped": "does not fit in memory"})
                            continue
                        out_dir = U.fresh_dir(Path(tmp) / f"{mp}-{name}-{kind}")
                        res = U.run_measured(contender_cmd(kind, model, src_dir, out_dir, args.threads)
                                           if kind.startswith(("exact", "whole"))
                                           else contender_cmd(kind, model, src, out_dir, args.threads),
                                           {**env, ENV: "0"} if kind == "exact_ort_plain" else env, args.timeout)
                        row: dict[str, Any] = {"mp": mp, "size": "x".join(map(str, SIZES[mp])), "model": name,
                                               "contender": kind, "round": rnd + 1,
                                               "peak_rss_mib": res["peak_rss_mib"], "process_s": res["process_s"],
                                               "process_cpu_s": res["cpu_s"]}
                        if res["returncode"] != 0:
                            row["error"] = res["stderr"].strip().splitlines()[-1:] or [f"exit {res['returncode']}"]
                        else:
                            try:
                                data = json.loads(res["stdout"].strip().splitlines()[-1]
                                                  if kind in ("openvino", "torch64", "tiler_u8") else res["stdout"])
                                row["seconds"] = data["totals"]["seconds"]
                                row["s_per_mp"] = round(row["seconds"] / (SIZES[mp][0] * SIZES[mp][1] / 1e6), 3)
                            except (ValueError, KeyError, IndexError):
                                row["error"] = ["no JSON summary"]
                            keep = Path(tmp) / f"keep-{mp}-{name}-{kind}.png"
                            pngs = sorted(out_dir.glob("*.png"))
                            if pngs:
                                pngs[0].replace(keep)
                                outs[kind] = keep
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                ref = outs.get("whole_ort")
                for row in rows:
                    if row.get("mp") == mp and row.get("model") == name and row.get("contender") in outs:
                        if ref is not None and row["contender"] != "whole_ort":
                            row["psnr_vs_whole_db"] = psnr8(outs[row["contender"]], ref)
                        if "openvino" in outs and row["contender"] != "openvino":
                            row["psnr_vs_openvino_db"] = psnr8(outs[row["contender"]], outs["openvino"])
                        if "torch64" in outs and row["contender"] != "torch64":
                            row["psnr_vs_torch64_db"] = psnr8(outs[row["contender"]], outs["torch64"])
                for f in outs.values():
                    f.unlink(missing_ok=True)
    result = {"machine": U.machine_info(), "threads": args.threads, "load_average_start": started,
              "load_average_end": U.load_average(), "rows": rows, "goals": goals(rows)}
    cols = ["mp", "model", "contender", "seconds", "process_cpu_s", "s_per_mp", "peak_rss_mib", "psnr_vs_whole_db",
            "psnr_vs_openvino_db", "psnr_vs_torch64_db", "skipped"]
    print(U.table([r for r in rows], cols, "large photos (seconds: decode + model + PNG encode)"))
    for g in result["goals"]:
        print(f"goal {g['goal']}: {U.goal_state(g)} ({g.get('detail', '')})")
    U.write_json(args.json, result)
    return 0


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def best(mp: int, model: str, kind: str, key: str) -> Any:
        vals = [r[key] for r in rows if r.get("mp") == mp and r.get("model") == model and r.get("contender") == kind
                and r.get(key) is not None]
        return min(vals) if vals else None

    out = []
    for mp, model, limit in ((12, "bundled", GOALS["bundled_12mp_peak_mib"]), (96, "bundled", GOALS["bundled_96mp_peak_mib"]),
                             (12, "reference", GOALS["reference_12mp_peak_mib"])):
        peak = best(mp, model, "exact_ort", "peak_rss_mib") or best(mp, model, "tiler_u8", "peak_rss_mib")
        out.append(U.goal(f"{model} {mp} MP peak RSS <= {limit} MiB", peak, None if peak is None else peak <= limit))
    ours, ov = best(12, "bundled", "exact_ort", "seconds"), best(12, "bundled", "openvino", "seconds")
    out.append(U.goal("bundled 12 MP no slower than OpenVINO whole", ours,
                      None if ours is None or ov is None else ours <= ov, detail=f"OpenVINO {ov}"))
    psnrs = [r["psnr_vs_whole_db"] for r in rows if r.get("contender", "").startswith("exact") and r.get("psnr_vs_whole_db")]
    out.append(U.goal("exact >= 50 dB vs whole", min(psnrs) if psnrs else None,
                      None if not psnrs else min(psnrs) >= GOALS["psnr_db"]))
    spm = [best(mp, "bundled", "exact_ort", "s_per_mp") for mp in SIZES if mp >= 1]
    spm = [v for v in spm if v]
    out.append(U.goal("time per MP flat (max/min <= 1.2), bundled", round(max(spm) / min(spm), 3) if len(spm) > 1 else None,
                      None if len(spm) < 2 else max(spm) / min(spm) <= GOALS["flat_time_per_mp"]))
    return out


if __name__ == "__main__":
    sys.exit(main())
