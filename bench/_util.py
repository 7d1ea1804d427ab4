"""Shared helpers for the speed benchmarks (convert_speed, train_speed, video_speed, the runner).

Kept free of torch at import time: the imgxlate side of a comparison must not pay for importing it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _unwind_on_sigterm() -> None:
    """A part the runner stops (its --timeout) gets SIGTERM: as SystemExit it unwinds, so that
    :func:`run_measured` kills its command's process group and temporary folders are removed (the
    default action ended the part where it stood and left both behind)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


_unwind_on_sigterm()


def goal(text: str, value: Any, met: bool | None, **extra: Any) -> dict[str, Any]:
    """One goal figure, the shape every part reports under ``goals`` and the runner summarises:
    ``goal`` (what is asked), ``value`` (what was measured), ``met`` (None: not judged here), and
    ``extra`` facts (``target``, ``detail``)."""
    return {"goal": text, "value": value, "met": met, **extra}
BUNDLED_PAIR = REPO / "imgxlate" / "models" / "vangogh2photo"
BUNDLED_B2A = BUNDLED_PAIR / "b2a.onnx"
CORPUS = Path(os.environ.get("IMGXLATE_SHARED", REPO.parent / "shared")) / "corpus"
# Exported random generators are cached here (keyed by their configuration): exporting an ngf-64
# generator costs ~30 s on a loaded 2-core machine, every part would pay it again otherwise.
CACHE = Path(os.environ.get("IMGXLATE_BENCH_CACHE", Path(tempfile.gettempdir()) / "imgxlate-bench-cache"))


# ------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores, load average now, Python and key library versions."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    from importlib import metadata

    for key, dist in (("onnxruntime", "onnxruntime-gpu"), ("torch", "torch"), ("cv2", "opencv-python-headless"),
                      ("openvino", "openvino")):
        try:  # distribution metadata: no import (torch alone costs seconds)
            info[f"{key}_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[f"{key}_version"] = None
    return info


# --------------------------------------------------------------------------------------------- output


def write_json(path: str | os.PathLike[str] | None, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (nothing half-written); no-op for None."""
    if path is None:
        return
    from imgxlate._atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def goal_state(goal: dict[str, Any], na: str = "n/a") -> str:
    """"MET" / "MISSED" for a goal dict with a ``met`` flag; ``na`` where it could not be judged here."""
    if goal["met"] is None:
        return na
    return "MET" if goal["met"] else "MISSED"


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if np.isnan(value):
            return "nan"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """A plain-text table (no rich: the output is also piped into logs and the combined summary)."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- images


def landscape(height: int, width: int, seed: int) -> np.ndarray:
    """A procedural landscape, (H, W, 3) uint8: sky gradient, sun, two ridges of hills, a lake, grain.

    Natural-looking enough that JPEG/PNG coders and the network see the kind of content they would
    (smooth areas, edges, texture), unlike flat colours or white noise.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    top, horizon = rng.uniform(0, 1, 3) * [60, 90, 160] + [20, 40, 80], rng.uniform(0, 1, 3) * 60 + [180, 150, 120]
    img = (1 - y)[..., None] * top + y[..., None] * horizon  # (H, 1, 3) sky gradient
    img = np.broadcast_to(img, (height, width, 3)).copy()
    cx, cy, r = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.35), rng.uniform(0.04, 0.09)
    sun = np.exp(-(((x - cx) ** 2 + ((y - cy) * height / width) ** 2) / (2 * r * r)))
    img += sun[..., None] * np.array([90, 70, 30], np.float32)
    for layer, (base, colour) in enumerate(((0.45, (70, 90, 60)), (0.6, (40, 70, 35)))):
        ridge = np.full(width, base, np.float32)
        for k in range(1, 6):  # a few random sines: a plausible skyline
            ridge += rng.uniform(0.01, 0.06) / k * np.sin(2 * np.pi * (k * x[0] * rng.uniform(1, 3) + rng.uniform()))
        mask = y >= ridge[None, :]
        shade = 1.0 - 0.4 * (y - ridge[None, :]).clip(0, 1)  # darker towards the bottom of each ridge
        img = np.where(mask[..., None], np.asarray(colour, np.float32) * shade[..., None] * (1 + 0.1 * layer), img)
    lake = y > 0.8
    img = np.where(lake[..., None], img[::-1] * 0.6 + np.array([20, 40, 70], np.float32), img)
    img += rng.normal(0, 6, img.shape).astype(np.float32)  # film grain
    return img.clip(0, 255).astype(np.uint8)


def write_jpeg_folder(folder: Path, count: int, size: int, seed: int = 0, quality: int = 90) -> list[Path]:
    """``count`` landscape JPEGs of ``size`` x ``size`` in ``folder`` (created)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"landscape_{size}_{i:03d}.jpg"
        Image.fromarray(landscape(size, size, seed * 1000 + i)).save(p, quality=quality)
        paths.append(p)
    return paths


# -------------------------------------------------------------------------------------------- models


def conv_macs(onnx_path: str | os.PathLike[str], height: int, width: int) -> int:
    """Multiply-accumulates of the Conv and ConvTranspose nodes for one (1, 3, H, W) input.

    Conv: Cout * Hout * Wout * (Cin / group) * kh * kw. ConvTranspose: every input pixel is scattered
    through the kernel: Cin * Hin * Win * (Cout / group) * kh * kw. Shapes come from ONNX shape
    inference with the input fixed to (1, 3, H, W). FLOPs = 2 x MACs (norms, ReLU, Pad are < 1 %).
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, height, width)):
        d.ClearField("dim_param")
        d.dim_value = v
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value for d in t.shape.dim]
    weights = {i.name: list(numpy_helper.to_array(i).shape) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = weights.get(node.input[1]) or shapes.get(node.input[1])
        if node.op_type == "Conv":
            out = shapes.get(node.output[0])
            if not w or not out or len(out) != 4 or 0 in out:
                raise ValueError(f"cannot infer the shape of Conv {node.name!r}")
            _, cin_g, kh, kw = w  # weight (Cout, Cin/group, kh, kw): grouping is in Cin/group
            total += out[1] * out[2] * out[3] * cin_g * kh * kw
        else:
            inp = shapes.get(node.input[0])
            if not w or not inp or len(inp) != 4 or 0 in inp:
                raise ValueError(f"cannot infer the shape of ConvTranspose {node.name!r}")
            _, cout_g, kh, kw = w  # weight (Cin, Cout/group, kh, kw)
            total += inp[1] * inp[2] * inp[3] * cout_g * kh * kw
    return total


def model_architecture(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """``architecture`` from the imgxlate metadata (ngf, n_blocks, upsample), {} when absent."""
    try:
        from imgxlate.metadata import read_onnx_metadata

        meta = read_onnx_metadata(onnx_path)
        return dict(getattr(meta, "architecture", None) or {}) if meta is not None else {}
    except Exception:  # noqa: BLE001 - a model without metadata still benchmarks
        return {}


def random_generator_onnx(ngf: int, n_blocks: int, upsample: str = "transpose", seed: int = 0,
                          image_size: int = 256) -> Path:
    """Export (once, cached) a random-weight ResnetGenerator with our exporter; return the .onnx path."""
    import torch

    from imgxlate.train.export import export_generator, make_metadata
    from imgxlate.train.networks import ResnetGenerator, init_weights

    path = CACHE / f"random_ngf{ngf}_b{n_blocks}_{upsample}_s{seed}_torch{torch.__version__}.onnx"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = {"ngf": ngf, "n_blocks": n_blocks, "upsample": upsample}
    gen = init_weights(ResnetGenerator(**cfg), gain=0.2)  # > 0.02: the output visibly depends on the input
    meta = make_metadata("b2a", "vangogh", "photo", cfg, image_size=image_size, steps=0, epochs=0.0)
    g = torch.Generator().manual_seed(0)
    verify = [torch.rand(1, 3, 64, 64, generator=g) * 2 - 1]  # small: the check is about parity, not size
    export_generator(gen, path, meta, verify_inputs=verify)
    return path


def _down_padding(model: Any) -> str:
    """How the graph pads its stride-2 down-sampling convolutions: "reflect" when a Pad node feeds
    them (generators trained since 0.2), "zeros" when the Conv pads itself (older ones, and models
    without metadata). Read from the graph, so it holds whatever the metadata says."""
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1, 1])
        if node.op_type == "Conv" and strides == [2, 2]:
            feeder = producers.get(node.input[0])
            return "reflect" if feeder is not None and feeder.op_type == "Pad" else "zeros"
    return "zeros"


def torch_generator_from_onnx(onnx_path: str | os.PathLike[str], ngf: int | None = None,
                              n_blocks: int | None = None, upsample: str | None = None) -> Any:
    """A ``ResnetGenerator`` carrying the ONNX file's weights, parity-checked against ONNX Runtime.

    Architecture from the file's metadata (or the arguments). The exporter keeps every Conv /
    ConvTranspose weight and bias as an initializer, in graph order; ONNX initializers are matched to
    the state dict by walking the Conv/ConvTranspose nodes in graph order, which is the module order.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from imgxlate.train.networks import ResnetGenerator

    arch = model_architecture(onnx_path)
    model = onnx.load(str(onnx_path))
    cfg = {
        "ngf": ngf or int(arch.get("ngf", 64)),
        "n_blocks": n_blocks or int(arch.get("n_blocks", 9)),
        "upsample": upsample or str(arch.get("upsample", "transpose")),
        "down_padding": _down_padding(model),
    }
    gen = ResnetGenerator(**cfg).eval()
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {}  # weights folded into Constant nodes by some exporters
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    def array(name: str) -> np.ndarray:
        arr = inits.get(name, consts.get(name))
        if arr is None:
            raise ValueError(f"{onnx_path}: weight {name!r} is computed in the graph, not stored")
        return arr

    nodes = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    convs = [m for m in gen.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    if len(nodes) != len(convs):
        raise ValueError(f"{onnx_path}: {len(nodes)} convolutions, ResnetGenerator({cfg}) has {len(convs)}; "
                         "pass --ngf/--n-blocks")
    with torch.no_grad():
        for node, conv in zip(nodes, convs):  # graph order == module order for this Sequential
            w = array(node.input[1])
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{onnx_path}: weight {node.input[1]} is {w.shape}, ResnetGenerator({cfg}) "
                                 f"expects {tuple(conv.weight.shape)}; pass --ngf/--n-blocks")
            conv.weight.copy_(torch.from_numpy(w.copy()))
            if conv.bias is not None:
                # the exporter drops biases that are zero or cancelled by the InstanceNorm that follows
                has_bias = len(node.input) > 2 and node.input[2]
                conv.bias.copy_(torch.from_numpy(array(node.input[2]).copy()) if has_bias else 0.0)
    # parity: the mapping by order is only trusted once both give the same image
    from imgxlate.engine import CPU, make_session

    sess = make_session(str(onnx_path), CPU, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = gen(torch.from_numpy(x)).numpy()
    diff = float(np.abs(sess.run(None, {sess.get_inputs()[0].name: x})[0] - ref).max())
    if diff > 1e-3:
        raise ValueError(f"{onnx_path}: torch generator differs from ONNX Runtime by {diff:.2e}")
    return gen


# ---------------------------------------------------------------------------------------- processes


def python_cmd(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "bench" / script), *args]


def imgxlate_cmd(*args: str) -> list[str]:
    """The installed console script when on PATH beside this interpreter, else ``python -m imgxlate``."""
    exe = Path(sys.executable).with_name("imgxlate")
    return [str(exe), *args] if exe.is_file() else [sys.executable, "-m", "imgxlate", *args]


def run_json(cmd: list[str], timeout: float | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its last stdout line that parses as a JSON object plus ``wall_s``.

    Raises RuntimeError with the tail of stderr when it fails (the caller records it and goes on).
    """
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(tail))
    text = proc.stdout.strip()
    try:  # a whole-stdout JSON document (imgxlate convert --json prints an indented one)
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        for line in reversed(text.splitlines()):
            try:
                data = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if not isinstance(data, dict):
        msg = f"no JSON result on stdout: {text[-300:]!r}"
        raise RuntimeError(msg)  # noqa: TRY004 - a failed run, not a caller's type error
    data["wall_s"] = round(wall, 3)
    return data


# The launcher measured commands run under (see run_measured): it runs the command, waits for it
# with wait4 and writes the command's own exit status, peak RSS and CPU seconds to argv[1].
_LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, f)
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600.0,
                 cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Run ``cmd``: its exit code, stdout, the tail of its stderr, wall seconds (``process_s``), its
    own peak resident memory (``peak_rss_mib``) and CPU seconds (``cpu_s``), ``timed_out``.

    Why a launcher: Linux starts a child's peak RSS (``ru_maxrss``) at the resident memory of the
    process that spawned it (exec records the old address space's high-water mark; vfork and
    posix_spawn included), so a benchmark that has made or compared large images would report its
    own size as the contender's. Measured here: a parent holding 300 MB, ``python -c pass`` reported
    316 MiB; through this launcher 11 MiB (its own ~10 MB is the floor of every figure). The
    command runs as the launcher's child, in a process group of its own that a timeout or an
    interrupt kills whole: nothing outlives the call."""
    with tempfile.TemporaryDirectory(prefix="imgxlate-measure-") as tmp:
        result = Path(tmp) / "usage.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(result), *cmd], stdout=out, stderr=err,
                                    env=env, cwd=cwd or REPO, start_new_session=True)
            timed_out = False
            try:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
            finally:
                if proc.poll() is None:  # timed out or interrupted: the launcher and the command
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
                    proc.wait()
            wall = time.perf_counter() - t0
        usage = json.loads(result.read_text()) if result.is_file() else None
        code = os.waitstatus_to_exitcode(usage["status"]) if usage else proc.returncode
        return {"returncode": code, "stdout": out_path.read_text(errors="replace"),
                "stderr": err_path.read_text(errors="replace")[-2000:], "process_s": round(wall, 2),
                "peak_rss_mib": round(usage["maxrss_kib"] / 1024) if usage else None,
                "cpu_s": round(usage["cpu_s"], 1) if usage else None, "timed_out": timed_out}


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child: every library limited to ``threads`` (the contenders share cores)."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env.setdefault("PYTHONPATH", str(REPO))
    return env


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
