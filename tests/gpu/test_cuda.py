"""The CUDA path, run for real (``pytest -m cuda tests/gpu``).

Every test drives the installed commands from outside (``imgxlate``, ``imgxlate-train``) and checks
exit codes and files on disk, so the suite does not depend on internal module names. The whole
module skips, with the reason, where ONNX Runtime has no working CUDA provider: on a CPU machine
(CI) it reports skipped, never passed.

Goals checked here (issue 18): ``--device auto`` picks CUDA and says so; ``--device cuda`` works; a
corrupt input on CUDA is reported and the batch goes on; CUDA fp32 output within 1/255 of the CPU
output; an fp16 graph (InstanceNorm kept in fp32) >= 45 dB against fp32; the exact tiler on CUDA
>= 50 dB against a whole-image run; bf16 training runs and resumes exactly; video on CUDA keeps
its frame count; an animation's frames in CUDA batches match the CPU's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.cuda

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "imgxlate" / "models" / "vangogh2photo"
BIN = Path(sys.executable).parent


def _cuda_reason() -> str | None:
    """None when an ONNX Runtime session really runs on CUDA here, else why not."""
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - onnxruntime is a base dependency
        return f"onnxruntime missing: {err}"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"this onnxruntime build has no CUDA provider ({ort.__version__}, {ort.get_device()})"
    try:
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        sess = ort.InferenceSession(
            str(BUNDLED / "b2a.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    except Exception as err:  # noqa: BLE001 - any failure means: not usable here
        return f"a CUDA session cannot be created: {err}"
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        return "ONNX Runtime fell back to CPU (no driver or CUDA/cuDNN libraries)"
    return None


_REASON = _cuda_reason()
if _REASON is not None:
    pytest.skip(f"no CUDA: {_REASON}", allow_module_level=True)


def _cmd(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name) or name


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=timeout, env=full)


def imgxlate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(_cmd("imgxlate"), *args, env=env)


def photo(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A smooth random picture (low-frequency noise upsampled): photo-like statistics, no file needed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_auto_picks_cuda_and_says_so(tmp_path: Path) -> None:
    src = photo(tmp_path / "in.png", 320, 240)
    r = imgxlate("convert", str(src), "--to", "vangogh", "--out", str(tmp_path / "out"), "--device", "auto")
    assert r.returncode == 0, r.stderr
    assert "CUDA" in r.stderr, r.stderr  # the provider line names the device it runs on
    assert (tmp_path / "out" / "in.png").is_file()


def test_cuda_fp32_matches_cpu_within_one_level(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i, (w, h) in enumerate([(256, 256), (640, 480), (333, 217)]):
        photo(src / f"p{i}.png", w, h, seed=i)
    for device in ("cpu", "cuda"):
        r = imgxlate("convert", str(src), "--to", "vangogh", "--out", str(tmp_path / device), "--device", device,
                     "--tile", "0")
        assert r.returncode == 0, r.stderr
    for f in sorted(src.iterdir()):
        diff = np.abs(load(tmp_path / "cpu" / f.name).astype(int) - load(tmp_path / "cuda" / f.name).astype(int))
        assert diff.max() <= 1, (f.name, int(diff.max()))


def test_animation_on_cuda_in_batches_matches_cpu_within_one_level(tmp_path: Path) -> None:
    """An animated WebP (lossless): on CUDA its frames run 4 at a time; each frame within one level
    of the CPU's frame-by-frame result, with every frame and its timing kept."""
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.open(photo(tmp_path / f"f{i}.png", 320, 240, seed=i)) for i in range(6)]
    frames[0].save(src / "clip.webp", save_all=True, append_images=frames[1:], duration=120, loop=0, lossless=True)
    for device in ("cpu", "cuda"):
        r = imgxlate("convert", str(src), "--to", "vangogh", "--out", str(tmp_path / device), "--device", device,
                     "--quality", "100")
        assert r.returncode == 0, r.stderr
    got = {}
    for device in ("cpu", "cuda"):
        with Image.open(tmp_path / device / "clip.webp") as im:
            got[device] = []
            for i in range(im.n_frames):
                im.seek(i)
                got[device].append(np.asarray(im.convert("RGB")).astype(int))
    assert len(got["cpu"]) == len(got["cuda"]) == 6
    for a, b in zip(got["cpu"], got["cuda"]):
        assert np.abs(a - b).max() <= 1


def test_corrupt_input_on_cuda_is_reported_and_the_batch_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    photo(src / "good.png", 256, 256)
    good = photo(tmp_path / "whole.jpg", 256, 256).read_bytes()
    (src / "broken.jpg").write_bytes(good[: len(good) // 3])
    r = imgxlate("convert", str(src), "--to", "vangogh", "--out", str(tmp_path / "out"), "--device", "cuda", "--json")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout)
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / "broken.jpg").exists()
    assert "broken.jpg" in json.dumps(summary)


def test_exact_tiler_on_cuda_matches_the_whole_image(tmp_path: Path) -> None:
    """Tiles kept on the GPU (torch with CUDA is installed here) and staged through the host
    (IMGXLATE_DEVICE_TILES=0): both >= 50 dB against the whole image."""
    src = photo(tmp_path / "big.png", 2048, 1536)
    tiled = ["--tile", "512", "--tiling", "exact"]
    for name, extra, env in (("whole", ["--tile", "0"], {}), ("exact", tiled, {}),
                             ("exact_host", tiled, {"IMGXLATE_DEVICE_TILES": "0"})):
        r = imgxlate("convert", str(src), "--to", "vangogh", "--out", str(tmp_path / name), "--device", "cuda",
                     *extra, env=env)
        assert r.returncode == 0, r.stderr
    whole = load(tmp_path / "whole" / "big.png")
    assert psnr(whole, load(tmp_path / "exact" / "big.png")) >= 50
    assert psnr(whole, load(tmp_path / "exact_host" / "big.png")) >= 50


def _fp16_copy(src: Path, dst: Path) -> None:
    """fp16 graph with float32 I/O and InstanceNormalization kept in float32 (fp16 statistics overflow on
    large images), made by ONNX Runtime's own converter."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(
        onnx.load(str(src)), keep_io_types=True, op_block_list=["InstanceNormalization", "Resize"]
    )
    # A value that feeds two blocked nodes gets two identical Casts (same input, same output name),
    # which ONNX Runtime refuses as a duplicate definition (seen with onnxruntime 1.31 on the bundled
    # model): keep the first, which comes before every consumer.
    kept, outputs = [], set()
    for node in model.graph.node:
        if node.op_type == "Cast" and set(node.output) <= outputs:
            continue
        outputs.update(node.output)
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.save(model, str(dst))


@pytest.mark.parametrize("size", [256, 1024])
def test_fp16_graph_is_within_45_db_of_fp32(tmp_path: Path, size: int) -> None:
    import onnxruntime as ort

    fp16 = tmp_path / "b2a16.onnx"
    _fp16_copy(BUNDLED / "b2a.onnx", fp16)
    providers = ["CUDAExecutionProvider"]
    s32 = ort.InferenceSession(str(BUNDLED / "b2a.onnx"), providers=providers)
    s16 = ort.InferenceSession(str(fp16), providers=providers)
    x = load(photo(tmp_path / "x.png", size, size)).astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    name = s32.get_inputs()[0].name
    y32 = s32.run(None, {name: x})[0]
    y16 = s16.run(None, {s16.get_inputs()[0].name: x})[0].astype(np.float32)
    assert np.isfinite(y16).all()
    to8 = lambda y: np.clip((y + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert psnr(to8(y32), to8(y16)) >= 45


def _train_folders(root: Path) -> tuple[Path, Path]:
    a, b = root / "a", root / "b"
    a.mkdir()
    b.mkdir()
    for i in range(6):
        photo(a / f"a{i}.png", 72, 72, seed=i)
        photo(b / f"b{i}.png", 72, 72, seed=100 + i)
    return a, b


def _train(a: Path, b: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """6 images a domain at batch 4: one step an epoch, so the schedule (3 + 3 epochs) is 6 steps."""
    return run(_cmd("imgxlate-train"), "--domain-a", str(a), "--domain-b", str(b), "--out", str(out),
               "--device", "cuda", "--precision", "bf16", "--channels-last", "--batch-size", "4",
               "--ngf", "16", "--n-blocks", "2", "--image-size", "64", "--load-size", "72", "--workers", "0",
               "--epochs", "3", "--epochs-decay", "3", "--checkpoint-every", "0", "--sample-every", "0",
               "--seed", "0", *extra)


def _checkpoint(run_dir: Path) -> dict:
    import torch

    path = run_dir / "checkpoints" / "last.pt"
    return torch.load(path, map_location="cpu", weights_only=False)


def test_bf16_training_on_cuda_runs_exports_and_resumes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    a, b = _train_folders(tmp_path)
    straight = _train(a, b, tmp_path / "straight", "--max-steps", "6")
    assert straight.returncode == 0, straight.stderr
    assert (tmp_path / "straight" / "model" / "a2b.onnx").is_file()
    half = _train(a, b, tmp_path / "split", "--max-steps", "3", "--no-export")
    assert half.returncode == 0, half.stderr
    resumed = run(_cmd("imgxlate-train"), "--resume", str(tmp_path / "split"), "--max-steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    s, r = _checkpoint(tmp_path / "straight"), _checkpoint(tmp_path / "split")
    assert s["step"] == r["step"] == 6
    # cuDNN picks non-deterministic kernels for some convolution backward passes; bf16 rounding then
    # differs in the last bits. Exact where deterministic, close everywhere.
    worst = 0.0
    for net, params in s["models"].items():
        for key, value in params.items():
            if torch.is_floating_point(value):
                worst = max(worst, float((value - r["models"][net][key]).abs().max()))
    print(f"resume: max parameter difference after 6 steps = {worst:.3g}")
    assert worst < 1e-2


def test_video_on_cuda_keeps_every_frame(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(12):
            arr = load(photo(tmp_path / "f.png", 1280, 720, seed=i))
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    dst = tmp_path / "out.mp4"
    r = imgxlate("video", str(clip), "--to", "vangogh", "--device", "cuda", "--out", str(dst))
    assert r.returncode == 0, r.stderr
    produced = dst if dst.is_file() else next(dst.glob("*.mp4"))
    with av.open(str(produced)) as cont:
        assert sum(1 for _ in cont.decode(video=0)) == 12
