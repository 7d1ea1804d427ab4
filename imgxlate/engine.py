"""ONNX Runtime sessions: device choice, session options, and the one place CUDA code lives.

``Engine`` wraps one ``InferenceSession`` created once and reused for every call. The device rule:

- ``cpu``: CPUExecutionProvider, ``intra_op_num_threads`` = physical cores (or ``threads``).
- ``cuda``: CUDAExecutionProvider or a :class:`DeviceError` saying why not and what to install.
  ONNX Runtime silently falls back to CPU when the CUDA provider cannot be created; we check the
  providers the session really got and never run on CPU when CUDA was asked for.
- ``auto``: CUDA when the build has it AND a session can be created with it, else CPU with a note why.
- ``coreml`` / ``directml``: Apple's CoreML or Windows' DirectML provider, where the onnxruntime build
  has it (never picked by ``auto``); a :class:`DeviceError` otherwise.

onnxruntime is imported lazily (inside functions) so ``import imgxlate`` stays light.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.errors import DeviceError, InvalidModelError, UsageError

DEVICES = ("auto", "cuda", "cpu", "coreml", "directml")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
DIRECTML = "DmlExecutionProvider"
# Providers only some onnxruntime builds have: asked for by name, never picked by ``auto``, and an
# error (not a silent CPU run) where the build lacks them.
OTHER_PROVIDERS: dict[str, tuple[str, str]] = {
    "coreml": (COREML, "the macOS onnxruntime wheels have it: on a Mac, `pip install 'imgxlate[cpu]'`"),
    "directml": (DIRECTML, "on Windows, `pip install onnxruntime-directml` in place of onnxruntime"),
}
RUNTIME_HINT = (
    "ONNX Runtime is not installed: `pip install 'imgxlate[cpu]'` (any machine) or `pip install "
    "'imgxlate[gpu]'` (NVIDIA GPUs with CUDA)"
)

# cudnn_conv_algo_search: EXHAUSTIVE benchmarks every conv algorithm again for every new input shape,
# and image folders have many shapes; HEURISTIC picks from cuDNN's heuristics with no benchmarking.
# kSameAsRequested: grow the memory arena by what is asked, not by powers of two, so one large image
# does not reserve twice its memory for the rest of the run.
CUDA_OPTIONS: dict[str, str] = {
    "cudnn_conv_algo_search": "HEURISTIC",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}

INSTALL_HINT = (
    "install the NVIDIA libraries with `pip install \"onnxruntime-gpu[cuda,cudnn]\"` (or CUDA {cuda} and "
    "cuDNN 9 system-wide), or run on the CPU with --device cpu"
)

_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise DeviceError(RUNTIME_HINT) from None

    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build has (not whether they can actually run)."""
    return list(_ort().get_available_providers())


def physical_cores() -> int:
    """Physical cores this process may use: hyper-threads of one core share its FPUs, so ORT's
    intra-op pool runs best with one thread per core."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores: set[str] = set()
    for cpu in allowed:
        sib = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(sib.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (the usual way to cap a process's threads), else physical cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return physical_cores()


def _cuda_version() -> str:
    try:
        from onnxruntime.capi import build_and_package_info as info

        return str(getattr(info, "cuda_version", "") or "12")
    except Exception:  # noqa: BLE001 - CPU-only builds lack the module
        return "12"


def _driver_present() -> bool:
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


@contextlib.contextmanager
def _quiet_ort() -> Any:
    """Silence ORT's C++ logger and ``preload_dlls``'s prints (they go to stdout, which must stay
    clean for --json) while probing; leave the logger at errors-only (3) after, so ORT's performance
    warnings do not clutter the user's terminal."""
    ort = _ort()
    buf = io.StringIO()
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        ort.set_default_logger_severity(3)


def _preload_cuda_libraries() -> str:
    """Let onnxruntime-gpu >= 1.21 find pip-installed CUDA/cuDNN; return what it printed."""
    ort = _ort()
    if not hasattr(ort, "preload_dlls"):
        return ""
    with _quiet_ort() as buf:
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - a broken library is reported by the probe below
            print(f"preload_dlls failed: {exc}")
    return buf.getvalue()


def _cpu_options(threads: int) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads if threads > 0 else default_threads()
    so.inter_op_num_threads = 1
    # Spinning threads burn the cores our decode/encode threads need between runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def probe_cuda() -> tuple[bool, str]:
    """Can a CUDA session be created here? ``(ok, why_not)``; cached for the process."""
    global _probe_result
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        _probe_result = _probe_cuda_uncached()
        return _probe_result


def _probe_cuda_uncached() -> tuple[bool, str]:
    cuda = _cuda_version()
    if CUDA not in available_providers():
        return False, (
            "this onnxruntime build has no CUDA support; `pip uninstall onnxruntime` then "
            "`pip install onnxruntime-gpu` (only one of the two may be installed)"
        )
    if not _driver_present():
        return False, "no NVIDIA driver found (libcuda not loadable); install the NVIDIA driver"
    printed = _preload_cuda_libraries()
    missing = [line.split(":", 1)[0].replace("Failed to load", "").strip()
               for line in printed.splitlines() if line.startswith("Failed to load")]
    # A tiny one-node graph: creating the provider is what fails when libraries are missing.
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 4
    with _quiet_ort():
        try:
            sess = ort.InferenceSession(_identity_model(), so, providers=[(CUDA, dict(CUDA_OPTIONS)), CPU])
            got = sess.get_providers()
        except Exception as exc:  # noqa: BLE001 - any failure means "no CUDA", with its message
            got, err = [], str(exc).splitlines()[0][:200]
        else:
            err = ""
    if got and got[0] == CUDA:
        return True, ""
    detail = f"missing {', '.join(missing)}" if missing else (err or "the CUDA provider could not be created")
    return False, f"{detail}; " + INSTALL_HINT.format(cuda=cuda)


def _identity_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def resolve_device(device: str) -> tuple[str, str]:
    """Map ``auto|cuda|cpu`` to ``(provider, note)``; ``note`` says why auto ended on the CPU."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return CPU, ""
    if device in OTHER_PROVIDERS:
        provider, hint = OTHER_PROVIDERS[device]
        have = available_providers()
        if provider not in have:
            raise DeviceError(
                f"--device {device} was asked for but this onnxruntime build has no {provider} (it has "
                f"{', '.join(have)}); {hint}"
            )
        return provider, ""
    ok, why = probe_cuda()
    if ok:
        return CUDA, ""
    if device == "cuda":
        raise DeviceError(f"--device cuda was asked for but CUDA cannot be used: {why}")
    return CPU, f"CUDA not available: {why}"


def _make_session(model: bytes | str | os.PathLike[str], provider: str, threads: int) -> Any:
    ort = _ort()
    so = _cpu_options(threads)
    providers: list[Any] = [(CUDA, dict(CUDA_OPTIONS)), CPU] if provider == CUDA else [CPU]
    if provider in (COREML, DIRECTML):
        providers = [provider, CPU]
        if provider == DIRECTML:  # DirectML runs without memory patterns, one op at a time
            so.enable_mem_pattern = False
            so.execution_mode = _ort().ExecutionMode.ORT_SEQUENTIAL
    src = model if isinstance(model, bytes) else str(model)
    try:
        sess = ort.InferenceSession(src, so, providers=providers)
    except Exception as exc:
        name = "the model" if isinstance(model, bytes) else str(model)
        raise InvalidModelError(
            f"ONNX Runtime cannot load {name}: {str(exc).splitlines()[0][:300]}; "
            "check that it is an imgxlate generator (re-export it with imgxlate-train export)"
        ) from exc
    if provider == CUDA and sess.get_providers()[0] != CUDA:
        raise DeviceError("ONNX Runtime fell back to the CPU for this model; " + INSTALL_HINT.format(
            cuda=_cuda_version()))
    if provider in (COREML, DIRECTML) and sess.get_providers()[0] != provider:
        raise DeviceError(f"ONNX Runtime could not create {provider} for this model; run with --device cpu")
    return sess


def session_factory(device: str = "auto", threads: int = 0) -> Callable[[bytes | str], Any]:
    """A function that creates sessions with this device's options (used by the exact tiler, which
    builds one session per graph piece)."""
    provider, _ = resolve_device(device)

    def make(model: bytes | str) -> Any:
        return _make_session(model, provider, threads)

    return make


class Engine:
    """One ONNX Runtime session for one generator file, created once and reused.

    ``run(x)``: x (N, 3, H, W) float32 in the model's input range, H and W multiples of the model's
    size multiple -> (N, 3, H, W) float32.
    """

    def __init__(self, model_path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> None:
        self.model_path = Path(model_path)
        self.device = (device or "auto").lower()
        self.threads = threads
        self.provider, self.note = resolve_device(self.device)
        self.session = _make_session(self.model_path, self.provider, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise InvalidModelError(
                f"{self.model_path} has {len(inputs)} inputs and {len(outputs)} outputs; an imgxlate "
                "generator has one image input and one image output"
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise InvalidModelError(
                f"{self.model_path} takes input of shape {shape}; expected (N, 3, H, W) RGB"
            )
        # Fixed spatial sizes in the graph (a model exported without dynamic axes) are honoured by
        # callers through ``fixed_size``.
        self.fixed_size: tuple[int, int] | None = (
            (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        )
        # A fixed batch dimension (usually 1): callers run images one at a time.
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._binding = self.session.io_binding() if self.provider == CUDA else None

    @property
    def on_cuda(self) -> bool:
        return self.provider == CUDA

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise UsageError(f"Engine.run takes (N, 3, H, W) float32; got shape {x.shape}")
        if self._binding is None:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        # IO binding: copy the input once to the GPU, let ORT allocate the output there, and copy it
        # back once, instead of ORT staging both through pageable host buffers per run.
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input(self.input_name, x)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def describe(self) -> str:
        """The provider line: ``running on CPUExecutionProvider (CUDA not available: ...)``."""
        line = f"running on {self.provider}"
        if self.note:
            line += f" ({self.note})"
        return line
