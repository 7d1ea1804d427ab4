"""`imgxlate convert` end to end vs the PyTorch eager loop, OpenCV DNN and OpenVINO on the same ONNX model.

    python bench/convert_speed.py                 # 256/512/1024 px, ~1 min per contender and size
    python bench/convert_speed.py --quick         # 256 px only, 2 images, 2 rounds
    python bench/convert_speed.py --json out.json --model path/to/b2a.onnx --threads 2

A folder of N procedural landscape JPEGs per size is converted to PNG files by each contender:

    imgxlate      ``imgxlate convert DIR --format png --device cpu`` (subprocess, the real CLI)
    imgxlate_plain  the same with ``IMGXLATE_GRAPH_REWRITES=0``: the ONNX file as it is, without
                  :mod:`imgxlate.graphs.rewrite` (what the rewrites are worth, side by side)
    torch_eager   the reference script: PIL decode -> tensor -> ResnetGenerator (same weights, read from
                  the ONNX file and parity-checked) -> PIL save, batch 1, fp32, ``torch.no_grad``
    opencv_dnn    ``cv2.dnn.readNetFromONNX`` on the same file, same decode/save
    openvino      OpenVINO CPU (f32 precision hint) on the same file, when ``openvino`` is installed

Every contender runs in its own process with the same thread count (``--threads``, default all
logical cores), and is timed from its first image to its last file written: process start and model
load are excluded for all of them (``imgxlate convert --json`` reports that span as ``totals.seconds``).
Contenders are interleaved (a, b, c, d, a, b, c, d, ...) so background load hits them alike; images/s
is total images / total seconds over the rounds. The GFLOP/s column is the model's Conv/ConvTranspose
FLOPs (from its ONNX graph) x images / seconds: end to end for imgxlate, model calls only ("model
GFLOP/s") for the in-process contenders.

``--device cuda``: the same file-based comparison (imgxlate --device cuda vs PyTorch eager fp32 on
CUDA), then a model-only table at 256 and 1024 px: ORT CUDA fp32 and fp16 with IO binding vs PyTorch
eager fp32 and bf16 autocast, in TFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _util as U

CONTENDERS = ("imgxlate", "imgxlate_plain", "torch_eager", "opencv_dnn", "openvino")
# images/s of an ngf-64 generator on a 2-core CPU is ~0.1-0.3 at 256 px: N targets ~60 s per run at
# an assumed 15 GFLOP/s achieved, at least 1 image.
ASSUMED_GFLOPS = 15.0
GOALS_CPU = {"ratio_vs_torch_eager": 1.3, "ratio_vs_opencv": 1.0, "ratio_vs_openvino": 1.0}
GOALS_CUDA = {"ratio_vs_torch_eager_1024": 4.0}


# ---------------------------------------------------------------------------------------- workers


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _to_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H', W') float32 in [-1, 1], H' and W' reflect-padded to multiples of 4."""
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
    h, w = rgb.shape[:2]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    return np.ascontiguousarray(x)


def _to_rgb(y: np.ndarray, h: int, w: int) -> np.ndarray:
    return ((y[0, :, :h, :w].transpose(1, 2, 0) + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)


def _save_png(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)  # PIL defaults, as a reference script would


def worker(kind: str, model: Path, indir: Path, outdir: Path, threads: int, device: str) -> dict[str, Any]:
    """Convert every JPEG in ``indir`` to PNG in ``outdir`` with ``kind``; time the loop (not the load)."""
    t_load = time.perf_counter()
    if kind == "torch_eager":
        import torch

        torch.set_num_threads(threads)
        dev = torch.device("cuda" if device == "cuda" else "cpu")
        gen = U.torch_generator_from_onnx(model).to(dev)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = gen(torch.from_numpy(x).to(dev))
                return y.cpu().numpy()  # .cpu() synchronises on CUDA: the timing is honest
    elif kind == "opencv_dnn":
        import cv2

        cv2.setNumThreads(threads)
        net = cv2.dnn.readNetFromONNX(str(model))

        def run(x: np.ndarray) -> np.ndarray:
            net.setInput(x)
            return np.asarray(net.forward())
    elif kind == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            str(model), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        )

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(compiled(x)[0])
    else:
        raise SystemExit(f"unknown worker {kind}")
    load_s = time.perf_counter() - t_load
    files = sorted(indir.glob("*.jpg"))
    outdir.mkdir(parents=True, exist_ok=True)
    model_s, first_s = 0.0, None
    t0 = time.perf_counter()
    for f in files:
        rgb = _decode(f)
        x = _to_input(rgb)
        tm = time.perf_counter()
        y = run(x)
        model_s += time.perf_counter() - tm
        first_s = first_s if first_s is not None else time.perf_counter() - tm  # lazy init shows here
        _save_png(_to_rgb(y, *rgb.shape[:2]), outdir / f"{f.stem}.png")
    return {"converted": len(files), "seconds": time.perf_counter() - t0, "model_s": model_s, "load_s": load_s,
            "first_model_s": first_s}


def gpu_model_worker(model: Path, sizes: list[int], iters: int) -> dict[str, Any]:
    """Model-only on CUDA: ORT fp32/fp16 with IO binding, PyTorch eager fp32/bf16; seconds per image."""
    import onnxruntime as ort
    import torch

    out: dict[str, Any] = {}
    dev = torch.device("cuda")
    gen = U.torch_generator_from_onnx(model).to(dev)
    fp16_path = Path(tempfile.gettempdir()) / f"imgxlate-bench-fp16-{os.getpid()}.onnx"
    fp16_note = None
    try:
        _to_fp16(model, fp16_path)
    except Exception as err:  # noqa: BLE001 - fp16 is reported as missing, the rest still runs
        fp16_note = f"fp16 conversion failed: {err}"
    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    sessions = {"ort_cuda_fp32": (ort.InferenceSession(str(model), providers=providers), np.float32)}
    if fp16_note is None:
        sessions["ort_cuda_fp16"] = (ort.InferenceSession(str(fp16_path), providers=providers), np.float16)
    for size in sizes:
        row: dict[str, Any] = {}
        x32 = torch.rand(1, 3, size, size, device=dev) * 2 - 1
        for name, (sess, dtype) in sessions.items():
            xin = x32.to(torch.float16 if dtype == np.float16 else torch.float32).contiguous()
            yout = torch.empty_like(xin)
            binding = sess.io_binding()
            binding.bind_input("input", "cuda", 0, dtype, list(xin.shape), xin.data_ptr())
            binding.bind_output("output", "cuda", 0, dtype, list(yout.shape), yout.data_ptr())
            for _ in range(3):  # warm-up: cuDNN algorithm search happens here
                sess.run_with_iobinding(binding)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(iters):
                sess.run_with_iobinding(binding)
            torch.cuda.synchronize()
            row[name] = (time.perf_counter() - t0) / iters
        for name, dtype in (("torch_eager_fp32", None), ("torch_eager_bf16", torch.bfloat16)):
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                for _ in range(3):
                    gen(x32)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(iters):
                    gen(x32)
                torch.cuda.synchronize()
            row[name] = (time.perf_counter() - t0) / iters
        out[str(size)] = row
    fp16_path.unlink(missing_ok=True)
    return {"seconds_per_image": out, "fp16_note": fp16_note, "gpu": torch.cuda.get_device_name(0)}


def _to_fp16(src: Path, dst: Path) -> None:
    """fp16 copy of a generator graph: float initializers/constants and the graph I/O become float16.

    Resize's ``scales`` must stay float32 (the op's type constraint), so those are left alone.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    m = onnx.load(str(src))
    keep = {n.input[2] for n in m.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    for i, init in enumerate(m.graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            arr = numpy_helper.to_array(init).astype(np.float16)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in m.graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep:
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
    for vi in [*m.graph.input, *m.graph.output]:
        vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


# ------------------------------------------------------------------------------------------ runner


def _run_imgxlate(model: Path, indir: Path, outdir: Path, threads: int, device: str,
                  rewrites: bool = True) -> dict[str, Any]:
    from imgxlate.graphs.rewrite import ENV

    cmd = U.imgxlate_cmd(
        "convert", str(indir), "--out", str(outdir), "--model", str(model), "--device", device,
        "--format", "png", "--threads", str(threads), "--overwrite", "--json", "--quiet",
    )
    res = U.run_json(cmd, env={**U.thread_env(threads), ENV: "1" if rewrites else "0"})
    totals = res["totals"]
    if totals.get("failed"):
        reasons = [r.get("reason") for r in res.get("results", []) if r.get("status") == "failed"]
        raise RuntimeError(f"imgxlate failed on {totals['failed']} images: {reasons[:2]}")
    return {"converted": totals["converted"], "seconds": totals["seconds"], "wall_s": res["wall_s"],
            "provider": res.get("provider")}


def _run_worker(kind: str, model: Path, indir: Path, outdir: Path, threads: int, device: str) -> dict[str, Any]:
    cmd = U.python_cmd("convert_speed.py", "--worker", kind, "--model", str(model), "--in", str(indir),
                       "--out", str(outdir), "--threads", str(threads), "--device", device)
    return U.run_json(cmd, env=U.thread_env(threads))


def _max_diff(dir_a: Path, dir_b: Path) -> int | None:
    """Largest 8-bit difference between same-named PNGs (first image): are the weights really the same?"""
    a = sorted(dir_a.glob("*.png"))
    if not a or not (dir_b / a[0].name).is_file():
        return None
    return int(np.abs(_decode(a[0]).astype(int) - _decode(dir_b / a[0].name).astype(int)).max())


def _auto_count(flops: float, quick: bool) -> int:
    seconds = 10.0 if quick else 60.0
    return max(1, min(64, round(seconds * ASSUMED_GFLOPS * 1e9 / flops)))


def resolve_model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return Path(args.model)
    if U.BUNDLED_B2A.is_file() and args.ngf is None and args.n_blocks is None:
        return U.BUNDLED_B2A
    return U.random_generator_onnx(args.ngf or 64, args.n_blocks or 9)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    model = resolve_model(args)
    threads = args.threads or os.cpu_count() or 1
    contenders = [c for c in args.contenders.split(",") if c]
    if args.device == "cuda":
        contenders = [c for c in contenders if c in ("imgxlate", "torch_eager")]
    notes: list[str] = []
    if "openvino" in contenders:
        try:
            import openvino  # noqa: F401
        except ImportError:
            contenders.remove("openvino")
            notes.append("openvino: not installed (pip install openvino) - skipped")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([256] if args.quick else [256, 512, 1024])
    rounds = args.rounds or (2 if args.quick else 3)
    result: dict[str, Any] = {
        "part": "convert_speed", "model": str(model), "architecture": U.model_architecture(model),
        "device": args.device, "threads": threads, "rounds": rounds, "quick": args.quick,
        "machine": U.machine_info(), "contenders": contenders, "notes": notes, "sizes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="imgxlate-convert-speed-"))
    try:
        for size in sizes:
            macs = U.conv_macs(model, size, size)
            flops = 2.0 * macs
            n = args.count or _auto_count(flops, args.quick)
            indir = work / f"in{size}"
            U.write_jpeg_folder(indir, n, size, seed=size)
            acc: dict[str, dict[str, Any]] = {c: {"runs": [], "error": None} for c in contenders}
            for r in range(rounds):
                for c in contenders:  # interleaved: a, b, c, d, a, b, c, d, ...
                    if acc[c]["error"]:
                        continue
                    outdir = U.fresh_dir(work / f"out{size}_{c}")
                    try:
                        if c in ("imgxlate", "imgxlate_plain"):
                            run = _run_imgxlate(model, indir, outdir, threads, args.device, c == "imgxlate")
                        else:
                            run = _run_worker(c, model, indir, outdir, threads, args.device)
                        run["load_average"] = U.load_average()
                        acc[c]["runs"].append(run)
                    except Exception as err:  # noqa: BLE001 - a contender that fails is reported
                        acc[c]["error"] = str(err)[-600:]
                    print(f"  {size}px round {r + 1}/{rounds} {c}: "
                          f"{acc[c]['error'] or format(acc[c]['runs'][-1]['seconds'], '.1f') + ' s'}", file=sys.stderr)
            row: dict[str, Any] = {"size": size, "images": n, "gflop_per_image": round(flops / 1e9, 2),
                                   "contenders": {}}
            for c, a in acc.items():
                runs = a["runs"]
                entry: dict[str, Any] = {"error": a["error"], "rounds": len(runs)}
                if runs:
                    imgs = sum(x["converted"] for x in runs)
                    secs = sum(x["seconds"] for x in runs)
                    entry["img_per_s"] = imgs / secs
                    entry["per_round_img_per_s"] = [round(x["converted"] / x["seconds"], 4) for x in runs]
                    entry["e2e_gflop_s"] = flops * imgs / secs / 1e9
                    if "model_s" in runs[0]:
                        entry["model_gflop_s"] = flops * imgs / sum(x["model_s"] for x in runs) / 1e9
                    if c != "torch_eager" and "torch_eager" in acc:
                        entry["max_diff_vs_torch_8bit"] = _max_diff(work / f"out{size}_{c}",
                                                                    work / f"out{size}_torch_eager")
                row["contenders"][c] = entry
                row[f"{c}_img_per_s"] = entry.get("img_per_s")
            base = row.get("imgxlate_img_per_s")
            for c in contenders:
                other = row.get(f"{c}_img_per_s")
                row["contenders"][c]["ratio_to_imgxlate"] = other / base if base and other else None
            for c, key in (("torch_eager", "ratio_vs_torch_eager"), ("opencv_dnn", "ratio_vs_opencv"),
                           ("openvino", "ratio_vs_openvino")):
                other = row.get(f"{c}_img_per_s")
                row[key] = base / other if base and other else None
            result["sizes"].append(row)
        if args.device == "cuda":
            try:
                gpu = U.run_json(U.python_cmd("convert_speed.py", "--worker", "gpu_model", "--model", str(model),
                                              "--sizes", "256,1024"))
                for size, row in gpu["seconds_per_image"].items():
                    f = 2.0 * U.conv_macs(model, int(size), int(size))
                    gpu[f"tflop_s_{size}"] = {k: f / v / 1e12 for k, v in row.items()}
                result["gpu_model_only"] = gpu
            except Exception as err:  # noqa: BLE001
                result["gpu_model_only"] = {"error": str(err)}
    finally:
        import shutil

        if args.keep is not None and not args.keep.exists():
            shutil.move(str(work), str(args.keep))
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_end"] = U.load_average()
    result["goals"] = goals(result)
    return result


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured ratio and whether it is met."""
    out = []
    rows = result.get("sizes", [])
    if result.get("device") == "cuda":
        row = next((r for r in rows if r["size"] == 1024), None)
        v = row.get("ratio_vs_torch_eager") if row else None
        out.append(U.goal("GPU: imgxlate convert >= 4x PyTorch eager fp32 at 1024 px", v,
                          v is not None and v >= 4.0, target=4.0))
        return out
    for row in rows:
        for key, target, what in (("ratio_vs_torch_eager", 1.3, "PyTorch eager loop"),
                                  ("ratio_vs_opencv", 1.0, "OpenCV DNN"), ("ratio_vs_openvino", 1.0, "OpenVINO")):
            v = row.get(key)
            out.append(U.goal(f"CPU {row['size']} px: imgxlate convert >= {target}x {what}", v,
                              None if v is None else v >= target, target=target))
    return out


def report(result: dict[str, Any]) -> str:
    lines = [(f"convert_speed: model {result['model']} ({result['architecture'] or 'no metadata'}), "
             f"device {result['device']}, {result['threads']} threads, {result['rounds']} rounds interleaved, "
             f"load {result['machine']['load_average']} -> {result['machine'].get('load_average_end')}")]
    for row in result["sizes"]:
        rows = []
        for c, e in row["contenders"].items():
            rows.append({"contender": c, "img/s": e.get("img_per_s"), "x imgxlate": e.get("ratio_to_imgxlate"),
                         "e2e GFLOP/s": e.get("e2e_gflop_s"), "model GFLOP/s": e.get("model_gflop_s"),
                         "max diff vs torch": e.get("max_diff_vs_torch_8bit"),
                         "error": (e["error"] or "")[:80] or None})
        lines.append(U.table(rows, ["contender", "img/s", "x imgxlate", "e2e GFLOP/s", "model GFLOP/s",
                                    "max diff vs torch", "error"],
                             title=f"\n{row['size']} px, {row['images']} images, {row['gflop_per_image']} GFLOP/image"))
    gpu = result.get("gpu_model_only")
    if gpu and "error" not in gpu:
        for size in ("256", "1024"):
            t = gpu.get(f"tflop_s_{size}", {})
            lines.append(U.table([{"variant": k, "TFLOP/s": v} for k, v in t.items()], ["variant", "TFLOP/s"],
                                 title=f"\nmodel only on {gpu.get('gpu')}, {size} px, batch 1"))
    elif gpu:
        lines.append(f"GPU model-only: {gpu['error']}")
    for n in result["notes"]:
        lines.append(f"note: {n}")
    for g in result["goals"]:
        state = U.goal_state(g)
        lines.append(f"goal: {g['goal']}: {U.fmt(g['value'])} {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/convert_speed.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="ONNX generator (default: bundled vangogh2photo "
                   "b2a.onnx, else a random ngf-64 / 9-block one)")
    p.add_argument("--ngf", type=int, default=None, help="random generator width (implies a random model)")
    p.add_argument("--n-blocks", type=int, default=None, help="random generator residual blocks")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sizes", default=None, help="comma-separated square sizes (default 256,512,1024; quick 256)")
    p.add_argument("--count", type=int, default=None, help="images per size (default: ~1 min of work)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    p.add_argument("--threads", type=int, default=0, help="threads for every contender (0 = all cores)")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", type=Path, default=None, help="keep the images and outputs in this new folder")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--in", dest="indir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", dest="outdir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, default=20, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "gpu_model":
        print(json.dumps(gpu_model_worker(args.model, [int(s) for s in args.sizes.split(",")], args.iters)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.indir, args.outdir, args.threads or 1, args.device)))
        return 0
    result = bench(args)
    print(report(result))
    U.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
