"""Engine: CPU sessions, device choice, and the "CUDA asked for but unavailable" errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgxlate import engine as eng
from imgxlate.errors import DeviceError, InvalidModelError, UsageError


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees an un-cached CUDA probe."""
    monkeypatch.setattr(eng, "_probe_result", None)


def test_cpu_run_shapes_and_reuse(tiny_pair: Path) -> None:
    e = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=1, backend="onnxruntime")
    assert e.provider == "CPUExecutionProvider" and e.note == ""
    session = e.session
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 20)).astype(np.float32)
    y = e.run(x)
    assert y.shape == x.shape and y.dtype == np.float32
    # tanh's range; ORT's fused Conv+Tanh (the head after imgxlate.graphs.rowconv) can pass 1 by an ulp
    assert np.all(np.abs(y) <= 1.0 + 1e-6)
    # Same session, deterministic output; each batch item independent of the others.
    assert e.session is session
    np.testing.assert_allclose(e.run(x[1:]), y[1:], atol=1e-5)
    assert e.describe() == "running on CPUExecutionProvider"


def test_run_rejects_wrong_shape(tiny_pair: Path) -> None:
    e = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=1)
    with pytest.raises(UsageError, match="N, 3, H, W"):
        e.run(np.zeros((3, 16, 16), np.float32))


def test_threads_option_and_default(tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "usable_cpus", lambda: 8)  # a 1-CPU runner would cap 2 to 1
    e = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=2, backend="onnxruntime")
    assert e.session.get_session_options().intra_op_num_threads == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert eng.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "300")
    assert eng.default_threads() == 8
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert eng.default_threads() == eng.physical_cores() >= 1


def test_more_threads_than_cpus_run_on_the_cpus(tiny_pair: Path) -> None:
    """`--threads 100000` (an extra zero typed) had ONNX Runtime start 100000 threads per session."""
    cpus = eng.usable_cpus()
    assert eng.thread_count(100_000) == cpus and eng.thread_count(1) == 1
    assert eng.thread_count(0) == eng.default_threads() <= cpus
    assert eng.session_options(100_000).intra_op_num_threads == cpus
    e = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=100_000, backend="onnxruntime")
    assert e.session.get_session_options().intra_op_num_threads == cpus


def test_unknown_device() -> None:
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        eng.resolve_device("gpu")


def test_cuda_requested_without_cuda_build(tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(eng, "_driver_present", lambda: True)  # an NVIDIA GPU, the CPU build installed
    with pytest.raises(DeviceError) as info:
        eng.Engine(tiny_pair / "a2b.onnx", device="cuda")
    msg = str(info.value)
    assert "--device cuda" in msg and "onnxruntime-gpu" in msg
    assert info.value.exit_code == 2


def test_no_nvidia_gpu_is_said_without_advice_to_install_the_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop without an NVIDIA GPU was told to swap onnxruntime for onnxruntime-gpu on every run."""
    monkeypatch.setattr(eng, "available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(eng, "_driver_present", lambda: False)
    monkeypatch.setattr(eng, "_probe_result", None)
    ok, why = eng.probe_cuda()
    assert not ok and why == "no NVIDIA GPU driver on this machine"
    assert eng.resolve_device("auto") == ("CPUExecutionProvider", "CUDA not available: no NVIDIA GPU driver on this machine")


def test_cuda_requested_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(eng, "_driver_present", lambda: False)
    with pytest.raises(DeviceError, match="no NVIDIA driver"):
        eng.resolve_device("cuda")


def test_cuda_provider_fails_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Driver 'present' but the provider cannot be created (here: no GPU, missing CUDA libraries):
    ORT falls back to CPU silently; the probe must notice and say what to install."""
    monkeypatch.setattr(eng, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(eng, "_driver_present", lambda: True)
    ok, why = eng.probe_cuda()
    if ok:  # pragma: no cover - a machine with a working GPU
        pytest.skip("CUDA works here")
    assert "onnxruntime-gpu[cuda,cudnn]" in why and "--device cpu" in why
    with pytest.raises(DeviceError):
        eng.resolve_device("cuda")


def test_auto_falls_back_to_cpu_and_says_why(tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "available_providers", lambda: ["CPUExecutionProvider"])
    e = eng.Engine(tiny_pair / "a2b.onnx", device="auto", threads=1, backend="onnxruntime")
    assert e.provider == "CPUExecutionProvider"
    assert e.describe().startswith("running on CPUExecutionProvider (CUDA not available: ")


def test_probe_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(eng, "_probe_cuda_uncached", lambda: calls.append(1) or (False, "x"))
    eng.probe_cuda()
    eng.probe_cuda()
    assert calls == [1]


def test_session_factory_makes_cpu_sessions_from_bytes(tiny_pair: Path) -> None:
    make = eng.session_factory("cpu", threads=1)
    sess = make((tiny_pair / "a2b.onnx").read_bytes())
    assert sess.get_providers() == ["CPUExecutionProvider"]
    out = sess.run(None, {"input": np.zeros((1, 3, 8, 8), np.float32)})[0]
    assert out.shape == (1, 3, 8, 8)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(InvalidModelError, match="cannot load"):
        eng.Engine(bad, device="cpu", backend="onnxruntime")


def test_session_options_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "usable_cpus", lambda: 4)
    assert eng.session_options(3).intra_op_num_threads == 3
    assert eng.session_options(1).enable_cpu_mem_arena is True
    assert eng.session_options(1, arena="off").enable_cpu_mem_arena is False
    with pytest.raises(ValueError, match="arena must be"):
        eng.session_options(1, arena="yes")
    # the factory the exact tiler uses builds sessions on the one shared arena
    make = eng.session_factory("cpu", threads=1)
    sess = make(eng._identity_model())
    opts = sess.get_session_options()
    assert opts.enable_cpu_mem_arena is True
    assert opts.get_session_config_entry("session.use_env_allocators") == "1"
    assert eng._shared_arena is True


def test_backend_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'"):
        eng.resolve_backend("tensorrt", eng.CPU)
    # auto is ONNX Runtime (reproducible across thread counts), on the CPU and on CUDA
    assert eng.resolve_backend("auto", eng.CPU) == ("onnxruntime", "")
    assert eng.resolve_backend("onnxruntime", eng.CPU) == ("onnxruntime", "")
    assert eng.resolve_backend("auto", eng.CUDA) == ("onnxruntime", "")
    with pytest.raises(UsageError, match="--device cpu"):
        eng.resolve_backend("openvino", eng.CUDA)
    monkeypatch.setattr(eng, "openvino_status", lambda: (False, "openvino is not installed"))
    with pytest.raises(DeviceError, match="--backend openvino was asked for but openvino is not installed"):
        eng.resolve_backend("openvino", eng.CPU)


def test_openvino_engine_matches_onnxruntime(tiny_pair: Path) -> None:
    pytest.importorskip("openvino")
    ov = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=1, backend="openvino")
    ort = eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=1, backend="onnxruntime")
    assert ov.backend == "openvino" and ov.session is None
    assert ov.describe().startswith("running on OpenVINO ") and ov.describe().endswith("(CPU)")
    assert eng.Engine(tiny_pair / "a2b.onnx", device="cpu", threads=1).backend == "onnxruntime"  # auto
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 24, 16)).astype(np.float32)
    np.testing.assert_allclose(ov.run(x), ort.run(x), atol=1e-4)
    out = ov.runner_factory()((tiny_pair / "a2b.onnx").read_bytes()).run({"input": x})
    np.testing.assert_allclose(out[0], ort.run(x), atol=1e-4)


def test_an_openvino_engine_dropped_on_another_thread_leaves_signals_working(tiny_pair: Path) -> None:
    """OpenVINO's CPU plugin gives the thread that loads it its own signal stack and unmaps it when it
    unloads; dropped on another thread, the main thread's next signal (a Ctrl-C) was a segmentation
    fault. In a child process: load and run on the main thread, drop on a worker, then SIGINT."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    code = f"""
import gc, os, signal, threading
import numpy as np
from imgxlate.engine import Engine
held = [Engine({str(tiny_pair / "a2b.onnx")!r}, device="cpu", threads=1, backend="openvino")]
held[0].run(np.zeros((1, 3, 16, 16), np.float32))
def drop():
    held.clear()
    gc.collect()
t = threading.Thread(target=drop)
t.start()
t.join()
signal.signal(signal.SIGINT, lambda *a: print("handled"))
os.kill(os.getpid(), signal.SIGINT)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "handled" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


def _fake_runtime(folder: Path, name: str, body: str) -> None:
    (folder / name).mkdir()
    (folder / name / "__init__.py").write_text(body)


def test_ctrl_c_while_a_runtime_initialises_is_an_interrupt_not_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pybind11 turns a KeyboardInterrupt during the extension's init into ImportError('initialization
    failed') caused by it: that must surface as the interrupt (exit 130), not as 'not installed'."""
    from imgxlate.engine import import_runtime

    _fake_runtime(tmp_path, "rt_interrupted", "raise ImportError('initialization failed') from KeyboardInterrupt()\n")
    _fake_runtime(tmp_path, "rt_broken", "raise ImportError('libfoo.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        import_runtime("rt_interrupted")
    with pytest.raises(ImportError, match="libfoo"):
        import_runtime("rt_broken")


def test_of_several_outputs_the_one_named_output_is_the_image(tmp_path: Path) -> None:
    """Taking the first output gave a feature map as the result, silently."""
    from model_builders import build

    engine = eng.Engine(build(tmp_path / "two.onnx", "two_outputs"), device="cpu", threads=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    w = np.array([[0.5, 0.3, 0.1], [0.2, 0.6, 0.1], [0.1, 0.2, 0.7]], np.float32)
    assert engine.output_name == "output"
    assert np.allclose(engine.run(x), np.tanh(np.einsum("oc,nchw->nohw", w, x)), atol=1e-6)
    with pytest.raises(InvalidModelError, match=r"2 outputs \('a', 'b'\) and none is named 'output'"):
        eng.Engine(build(tmp_path / "ab.onnx", "two_unnamed"), device="cpu", threads=1)


def test_a_model_whose_outputs_are_far_outside_its_range_is_refused(tmp_path: Path) -> None:
    """A [0, 255] model without metadata, read as [-1, 1]: every pixel came out white."""
    import json

    import onnx
    from model_builders import build, meta

    from imgxlate.registry.probe import validate_model_file

    path = build(tmp_path / "r255.onnx", "range255")
    with pytest.raises(InvalidModelError, match=r"outside the range -1 to 1 .*input_range and output_range"):
        validate_model_file(path)
    # with its ranges declared as the README shows, it loads
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"imgxlate": json.dumps(meta(output_range=[0, 255]))})
    onnx.save(model, str(tmp_path / "declared.onnx"))
    assert validate_model_file(tmp_path / "declared.onnx").output_range == (0, 255)
