"""Runtime sessions: device and backend choice, session options, and the one place CUDA code lives.

This module is the only place that builds runtime sessions: :func:`session_options` (ONNX Runtime
options, used by the engine, the exact tiler and the benchmarks), :class:`Engine` (one generator
file, created once and reused for every call) and :func:`runner_factory` (small graphs from bytes,
for the exact tiler). The device rule:

- ``cpu``: CPUExecutionProvider, ``intra_op_num_threads`` = physical cores (or ``threads``).
- ``cuda``: CUDAExecutionProvider or a :class:`DeviceError` saying why not and what to install.
  ONNX Runtime silently falls back to CPU when the CUDA provider cannot be created; we check the
  providers the session really got and never run on CPU when CUDA was asked for.
- ``auto``: CUDA when the build has it AND a session can be created with it, else CPU with a note why.
- ``coreml`` / ``directml``: Apple's CoreML or Windows' DirectML provider, where the onnxruntime build
  has it (never picked by ``auto``); a :class:`DeviceError` otherwise.

The backend rule (``--backend``): ``onnxruntime`` everywhere; ``openvino`` (the OpenVINO runtime's own
CPU plugin, the ``openvino`` extra; never ORT's OpenVINO execution provider, a separate
wheel that conflicts with onnxruntime-gpu) on the CPU only; ``auto``: ONNX Runtime (see
:func:`resolve_backend` for the measurement behind that).

onnxruntime and openvino are imported lazily (inside functions) so ``import imgxlate`` stays light.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import io
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.errors import DeviceError, InvalidModelError, UsageError, brief
from imgxlate.extras import pip_install
from imgxlate.graphs.rewrite import for_cpu

DEVICES = ("auto", "cuda", "cpu", "coreml", "directml")
BACKENDS = ("auto", "onnxruntime", "openvino")
ORT, OPENVINO = "onnxruntime", "openvino"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
DIRECTML = "DmlExecutionProvider"
# Providers only some onnxruntime builds have: asked for by name, never picked by ``auto``, and an
# error (not a silent CPU run) where the build lacks them.
OTHER_PROVIDERS: dict[str, tuple[str, str]] = {
    "coreml": (COREML, f"the macOS onnxruntime wheels have it: on a Mac, `{pip_install('cpu')}`"),
    "directml": (DIRECTML, "on Windows, `pip install onnxruntime-directml` in place of onnxruntime"),
}
RUNTIME_HINT = (
    f"ONNX Runtime is not installed: `{pip_install('cpu')}` (any machine) or `{pip_install('gpu')}` "
    "(NVIDIA GPUs with CUDA), never both"
)

# cudnn_conv_algo_search: EXHAUSTIVE benchmarks every conv algorithm again for every new input shape,
# and image folders have many shapes; HEURISTIC picks from cuDNN's heuristics with no benchmarking.
# kSameAsRequested: grow the memory arena by what is asked, not by powers of two, so one large image
# does not reserve twice its memory for the rest of the run.
CUDA_OPTIONS: dict[str, str] = {
    "cudnn_conv_algo_search": "HEURISTIC",
    # fp32 convolutions in fp32, not TF32 (ORT's default): on an H200 TF32 put 2.5-3 % of the 8-bit
    # output values off the CPU result (up to 2 levels, 63-64 dB); without it 0.005-0.5 % (1 level,
    # 71-91 dB), at 2.4 vs 1.8 ms (333x217), 21 vs 12 ms (1 MP), 63 vs 34 ms (3 MP): ~10 ms per MP,
    # beside the 5 s a 12 MP photo takes end to end there (tools/gpu/tf32.py, docs/gpu.md).
    "use_tf32": "0",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}

INSTALL_HINT = (
    "install the NVIDIA libraries with `pip install \"onnxruntime-gpu[cuda,cudnn]\"` (or CUDA {cuda} and "
    "cuDNN 9 system-wide), or run on the CPU with --device cpu"
)

_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def import_runtime(name: str) -> Any:
    """``import name`` for a runtime with a C extension (onnxruntime, openvino).

    A Ctrl-C that lands while the extension initialises comes out of the import as
    ``ImportError("initialization failed")`` caused by the KeyboardInterrupt (pybind11 wraps it), which
    would read as "not installed". The interrupt is given back as what it is."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if isinstance(err.__cause__ or err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from err
        raise


def _ort() -> Any:
    try:
        onnxruntime = import_runtime("onnxruntime")
    except ImportError:
        raise DeviceError(RUNTIME_HINT) from None
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build has (not whether they can actually run)."""
    return list(_ort().get_available_providers())


def _allowed_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    return max(1, len(_allowed_cpus()))


def physical_cores() -> int:
    """Physical cores this process may use: hyper-threads of one core share its FPUs, so ORT's
    intra-op pool runs best with one thread per core."""
    cores: set[str] = set()
    for cpu in _allowed_cpus():
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
        return thread_count(int(env))
    return physical_cores()


def thread_count(requested: int) -> int:
    """``--threads`` as every runtime gets it (ONNX Runtime, OpenVINO, PyTorch): 0 is
    :func:`default_threads`; more than :func:`usable_cpus` is that many. More threads than CPUs only
    take turns, and a runtime starts every one of them: ``--threads 100000`` had ONNX Runtime create
    that many threads per session (the exact tiler builds dozens of sessions) until the machine could
    not start another process."""
    return min(requested, usable_cpus()) if requested > 0 else default_threads()


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
def _captured_stdout() -> Any:
    """What ONNX Runtime's Python API prints on stdout (``preload_dlls``, the "EP Error" banner of a
    provider that fails), captured: stdout must stay clean for --json. ``sys.stdout`` is global to the
    process, so one thread at a time (interleaved redirections could leave it pointing at a buffer)."""
    buf = io.StringIO()
    with _stdout_lock, contextlib.redirect_stdout(buf):
        yield buf


@contextlib.contextmanager
def _quiet_ort() -> Any:
    """Silence ORT's C++ logger and capture its prints (:func:`_captured_stdout`) while probing; leave
    the logger at errors-only (3) after, so ORT's performance warnings do not clutter the user's
    terminal."""
    ort = _ort()
    ort.set_default_logger_severity(4)
    try:
        with _captured_stdout() as buf:
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


# ``arena`` values of :func:`session_options`.
ARENA_OWN, ARENA_SHARED, ARENA_OFF = "own", "shared", "off"
_shared_arena_lock = threading.Lock()
_stdout_lock = threading.RLock()  # around every redirection of sys.stdout (_captured_stdout)
_shared_arena = False


def _register_shared_arena() -> None:
    """Register one CPU memory arena with ONNX Runtime's environment (once per process); sessions
    built with ``arena="shared"`` allocate from it instead of their own."""
    global _shared_arena
    with _shared_arena_lock:
        if _shared_arena:
            return
        ort = _ort()
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
        _shared_arena = True


def session_options(threads: int = 0, *, arena: str = ARENA_OWN) -> Any:
    """The ONNX Runtime session options every session of imgxlate uses (the engine, the exact tiler's
    per-segment sessions, the benchmarks).

    ``arena``: where a session's CPU buffers come from.

    - ``"own"``: ORT's memory arena, one per session; it keeps every buffer it allocated for reuse.
      Right for one session that runs the same shapes again and again (the engine).
    - ``"shared"``: one arena for the whole process, shared by every session built this way: what the
      exact tiler's many per-segment sessions use. Memory stays at the largest single run (one tile),
      and buffers are reused across segments instead of being mapped, zero-filled and unmapped on
      every run. Measured, 3 MP photo, bundled model, 2 threads: 11.4 s / 412 MiB with the arena off
      (3.8 M page faults), 6.0 s / 519 MiB shared, the same bytes out; an own arena per segment
      session held 2.1 GiB (7.4 GiB at 12 MP before the tiler was split).
    - ``"off"``: every run allocates from the system and frees at its end.
    """
    if arena not in (ARENA_OWN, ARENA_SHARED, ARENA_OFF):
        raise ValueError(f"arena must be one of own, shared, off; got {arena!r}")
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = thread_count(threads)
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = arena != ARENA_OFF
    if arena == ARENA_SHARED:
        _register_shared_arena()
        so.add_session_config_entry("session.use_env_allocators", "1")
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
        if not _driver_present():  # a laptop without an NVIDIA GPU: nothing to install, the CPU runs it
            return False, "no NVIDIA GPU driver on this machine"
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
    with _quiet_ort() as banner:
        try:
            sess = ort.InferenceSession(_identity_model(), so, providers=[(CUDA, dict(CUDA_OPTIONS)), CPU])
            if sess.get_providers()[0] == CUDA:  # a kernel must run too (a GPU too old for the build)
                sess.disable_fallback()
                sess.run(None, {"x": np.zeros(1, np.float32)})
            got = sess.get_providers()
        except Exception as exc:  # noqa: BLE001 - any failure means "no CUDA", with its message
            got, err = [], brief(exc, 200)
        else:
            err = ""
    if got and got[0] == CUDA:
        return True, ""
    # ONNX Runtime prints why the CUDA provider failed (an old driver, a missing library) and goes on
    # on the CPU: that line is the reason, not the generic one
    err = err or _ep_error(banner.getvalue())
    detail = f"missing {', '.join(missing)}" if missing else (err or "the CUDA provider could not be created")
    return False, f"{detail}; " + INSTALL_HINT.format(cuda=cuda)


# The reason in a CUDA error ONNX Runtime reports: "CUDA failure 35: CUDA driver version is
# insufficient ...", "CUDNN failure 4: ...", "CUBLAS failure 3: ...".
_CUDA_FAILURE = re.compile(r"\b(?:CUDA|CUDNN|CUBLAS|CUFFT|CURAND)\w* failure \d+: .*", re.IGNORECASE)


def _ep_error(printed: str) -> str:
    """The reason in ONNX Runtime's "EP Error ... when using [...]" banner, which its Python API prints
    on stdout when a provider fails and it falls back to the CPU ("" when there is none). On Linux
    builds the reason comes after source locations and C++ signatures of several hundred
    characters: the CUDA error itself is taken where there is one, else the text after the last
    source location."""
    for line in printed.splitlines():
        if not line.startswith("EP Error"):
            continue
        text = line[len("EP Error"):].lstrip(": ").split(" when using ", 1)[0].strip()
        found = _CUDA_FAILURE.search(text)
        if found:  # up to the "; GPU=0 ; hostname=... ; file=..." details that follow it
            text = found.group(0).split(" ; ")[0]
        else:  # "/onnxruntime_src/...cc:122 <signature> /...cc:114 <signature> reason"
            text = re.split(r"\S+\.(?:cc|cpp|h):\d+ ", text)[-1]
            text = text.rsplit("] ", 1)[-1] if "[with " in text else text
        return text.strip()[:300]
    return ""


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


def openvino_status() -> tuple[bool, str]:
    """Can the OpenVINO runtime be used here? ``(ok, version or why not)``."""
    try:
        openvino = import_runtime("openvino")
    except ImportError:
        return False, f"openvino is not installed ({pip_install('openvino')})"
    except Exception as exc:  # noqa: BLE001 - a broken install is "not available", with its message
        return False, f"openvino cannot be imported ({brief(exc, 200)})"
    return True, str(getattr(openvino, "__version__", "")).split("-")[0]


def resolve_backend(backend: str, provider: str) -> tuple[str, str]:
    """Map ``auto|onnxruntime|openvino`` and the resolved provider to ``(backend, note)``.

    ``auto`` is ONNX Runtime: measured, OpenVINO runs whole images ~1.2x faster on the CPU but its
    results change with the thread count (max 1e-5 between 1 and 2 threads with the bundled model,
    enough to flip 8-bit values), so the same image would convert differently on another machine or
    in a Ray actor; ONNX Runtime's do not. OpenVINO is there for whoever asks for it."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend != OPENVINO:
        return ORT, ""
    if provider != CPU:
        raise UsageError("--backend openvino runs on the CPU only; add --device cpu, or use --backend onnxruntime")
    ok, why = openvino_status()
    if not ok:
        raise DeviceError(f"--backend openvino was asked for but {why}")
    return OPENVINO, ""


def make_session(
    model: bytes | str | os.PathLike[str], provider: str, threads: int, *, arena: str = ARENA_OWN,
    name: str = "",
) -> Any:
    """An ONNX Runtime session with :func:`session_options` on a resolved provider; InvalidModelError
    when ORT cannot load the model, DeviceError when it silently fell back from CUDA to the CPU.
    ``name``: what errors call the model (default: its path, or "the model" for bytes)."""
    ort = _ort()
    # On CUDA the kernels run on the GPU: one CPU thread per session (the exact tiler makes dozens of
    # sessions; a pool of every core's threads each gave 600 threads for 40 sessions on 16 cores).
    so = session_options(1 if provider == CUDA else threads, arena=arena)
    providers: list[Any] = [(CUDA, dict(CUDA_OPTIONS)), CPU] if provider == CUDA else [CPU]
    if provider in (COREML, DIRECTML):
        providers = [provider, CPU]
        if provider == DIRECTML:  # DirectML runs without memory patterns, one op at a time
            so.enable_mem_pattern = False
            so.execution_mode = _ort().ExecutionMode.ORT_SEQUENTIAL
    src = model if isinstance(model, bytes) else str(model)
    try:
        with _captured_stdout() as printed:  # a CUDA provider that fails prints its reason there
            sess = ort.InferenceSession(src, so, providers=providers)
    except Exception as exc:
        name = name or ("the model" if isinstance(model, bytes) else str(model))
        raise InvalidModelError(
            f"ONNX Runtime cannot load {name}: {brief(exc)}; "
            "check that it is an imgxlate generator (re-export it with imgxlate-train export)"
        ) from exc
    if provider == CUDA and sess.get_providers()[0] == CUDA:
        sess.disable_fallback()  # a run that fails on CUDA raises, instead of going on on the CPU
    if provider == CUDA and sess.get_providers()[0] != CUDA:
        why = _ep_error(printed.getvalue())
        raise DeviceError(f"ONNX Runtime fell back to the CPU for this model{f' ({why})' if why else ''}; "
                          + INSTALL_HINT.format(cuda=_cuda_version()))
    if provider in (COREML, DIRECTML) and sess.get_providers()[0] != provider:
        raise DeviceError(f"ONNX Runtime could not create {provider} for this model; run with --device cpu")
    return sess


@functools.cache
def _openvino_core() -> Any:
    """The process's one OpenVINO ``Core``, never released.

    OpenVINO's CPU plugin, when it loads, gives the loading thread an alternate signal stack of its
    own (``sigaltstack``, for AMX) and unmaps that stack when the plugin unloads, which happens when
    the last Core and compiled model go, on whichever thread drops them. Dropped on another thread
    (a worker, a garbage collection there), the loading thread keeps pointing at unmapped memory, and
    the next signal it gets (Python's handlers run on that stack: SA_ONSTACK) is a segmentation fault:
    Ctrl-C crashed instead of stopping. One Core kept for the process keeps the plugin and its stack."""
    import openvino as ov

    return ov.Core()


def _compile_openvino(model: bytes | str | os.PathLike[str], threads: int) -> Any:
    core = _openvino_core()
    src = model if isinstance(model, bytes) else str(model)
    config = {
        "INFERENCE_NUM_THREADS": thread_count(threads),
        # f32 everywhere: on CPUs with bf16/fp16 units OpenVINO would otherwise lower the precision.
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    try:
        return core.compile_model(core.read_model(src), "CPU", config)
    except Exception as exc:
        name = "the model" if isinstance(model, bytes) else str(model)
        raise InvalidModelError(
            f"OpenVINO cannot load {name}: {brief(exc)}; "
            "try --backend onnxruntime"
        ) from exc


class OrtRunner:
    """One ONNX Runtime session behind ``run(feeds) -> [outputs]`` (numpy in, numpy out).

    On CUDA the inputs are bound from host memory and the outputs allocated on the device and copied
    back once (IO binding), instead of ORT staging both through pageable buffers per run."""

    backend = ORT

    def __init__(self, session: Any, provider: str, rewrites: tuple[str, ...] = ()) -> None:
        self.session = session
        self.provider = provider
        # The graph rewrites this session's model went through (imgxlate.graphs.rewrite), in graph order.
        self.rewrites = rewrites
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.provider != CUDA:
            return list(self.session.run(None, feeds))
        # A binding per call: sessions are shared across threads (a Translator used by several), and
        # InferenceSession.run is thread-safe where one shared IOBinding is not.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def run_device(self, feeds: dict[str, Any]) -> list[Any]:
        """:meth:`run` without leaving the device: torch tensors (contiguous, on this session's device,
        or on the CPU for a CPU session) are bound by address, numpy arrays (small amounts and
        statistics) from host memory, and every output stays where the session made it, handed back as
        a torch tensor through DLPack (no copy). The exact tiler keeps its maps on the GPU this way
        (:mod:`imgxlate.tiling.exact.device`)."""
        import torch

        binding = self.session.io_binding()
        device = "cuda" if self.provider == CUDA else "cpu"
        dtypes = {torch.float32: np.float32, torch.float16: np.float16}  # what the tiler's maps hold
        synced = False
        for name, value in feeds.items():
            if isinstance(value, torch.Tensor):
                if value.is_cuda and not synced:  # torch's writes to the inputs must be done first
                    torch.cuda.current_stream(value.device).synchronize()
                    synced = True
                binding.bind_input(name, value.device.type, value.device.index or 0, dtypes[value.dtype],
                                   tuple(value.shape), value.data_ptr())
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name, device, 0)
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        outputs = binding.get_outputs_as_ortvaluevector()
        return [torch.from_dlpack(outputs[i]) for i in range(len(outputs))]

    def release(self) -> None:
        """Nothing to do: the shared arena keeps one run's worth of buffers for the next segment."""


class OpenVinoRunner:
    """One compiled OpenVINO model (CPU plugin) behind ``run(feeds) -> [outputs]``."""

    backend = OPENVINO
    provider = CPU
    rewrites: tuple[str, ...] = ()  # OpenVINO runs the file as it is (it fuses on its own)

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        # One infer request per thread: a request holds its inputs and outputs, so two threads sharing
        # one (a Translator used by several) read each other's results. The compiled model itself is
        # thread-safe, as an ONNX Runtime session is.
        self._local = threading.local()
        self.input_names = [p.any_name for p in compiled.inputs]
        self.output_names = [p.any_name for p in compiled.outputs]

    @property
    def request(self) -> Any:
        """This thread's infer request (made on its first run)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        request = self.request
        request.infer(feeds, share_inputs=True)
        # The request's output buffers are reused by the next call: hand out copies.
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.output_names))]

    def release(self) -> None:
        """Free the intermediate buffers the compiled model keeps for its largest input so far (the
        exact tiler calls this after each pass; otherwise every segment keeps its largest tile's)."""
        release = getattr(self.compiled, "release_memory", None)  # OpenVINO >= 2024.3
        if release is not None:
            release()


def make_runner(
    model: bytes | str | os.PathLike[str], provider: str, backend: str, threads: int, *, arena: str = ARENA_OWN
) -> OrtRunner | OpenVinoRunner:
    """A runner for ``model`` (a path or serialized ONNX bytes) on a resolved provider and backend.
    On ONNX Runtime's CPU provider the model first goes through :func:`imgxlate.graphs.rewrite.for_cpu`
    (the same computation in a form its kernels run faster)."""
    if backend == OPENVINO:
        return OpenVinoRunner(_compile_openvino(model, threads))
    rewritten = for_cpu(model) if provider == CPU else None
    if rewritten is None:
        return OrtRunner(make_session(model, provider, threads, arena=arena), provider)
    name = "the model" if isinstance(model, bytes) else str(model)
    session = make_session(rewritten.data, provider, threads, arena=arena, name=name)
    return OrtRunner(session, provider, rewritten.applied)


def runner_factory(
    device: str = "auto", threads: int = 0, backend: str = "auto"
) -> Callable[[bytes], OrtRunner | OpenVinoRunner]:
    """A function that builds runners from serialized ONNX bytes with this device's and backend's
    options: what the exact tiler uses for its per-segment graphs (ORT's shared memory arena)."""
    provider, _ = resolve_device(device)
    chosen, _ = resolve_backend(backend, provider)

    def make(model: bytes) -> OrtRunner | OpenVinoRunner:
        return make_runner(model, provider, chosen, threads, arena=ARENA_SHARED)

    return make


def session_factory(device: str = "auto", threads: int = 0) -> Callable[[bytes | str], Any]:
    """A function that creates ONNX Runtime sessions with this device's options and the shared arena
    (for callers that build many small sessions)."""
    provider, _ = resolve_device(device)

    def make(model: bytes | str) -> Any:
        return make_session(model, provider, threads, arena=ARENA_SHARED)

    return make


# The name of the image output in imgxlate's model format (README, "Model format").
OUTPUT_NAME = "output"


def output_index(names: list[str], where: object) -> int:
    """Which of a graph's outputs is the image: the only one, or the one named ``output``. A model
    with several and none of that name is refused: taking the first gave a feature map or a coarse
    stage as the result, without a word."""
    if len(names) == 1:
        return 0
    if OUTPUT_NAME in names:
        return names.index(OUTPUT_NAME)
    raise InvalidModelError(
        f"{where} has {len(names)} outputs ({', '.join(repr(n) for n in names)}) and none is named "
        f"'{OUTPUT_NAME}'; name the image output '{OUTPUT_NAME}' when exporting (torch.onnx.export(..., "
        "output_names=[...])), or export only the image"
    )


class Engine:
    """One generator file on one device and backend, loaded once and reused.

    ``run(x)``: x (N, 3, H, W) float32 in the model's input range, H and W multiples of the model's
    size multiple -> (N, 3, H, W) float32. ``backend``: "auto" / "onnxruntime" or "openvino" (CPU
    only; the exact tiler's segments then run on OpenVINO too).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "auto",
        threads: int = 0,
        backend: str = "auto",
    ) -> None:
        self.model_path = Path(model_path)
        self.device = (device or "auto").lower()
        self.threads = threads
        self.provider, self.note = resolve_device(self.device)
        self.backend, _ = resolve_backend(backend, self.provider)
        self.runner = make_runner(self.model_path, self.provider, self.backend, threads)
        # The ONNX Runtime session (None on OpenVINO).
        self.session = self.runner.session if isinstance(self.runner, OrtRunner) else None
        if self.session is not None:
            inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
            shapes = [tuple(i.shape) for i in inputs]
        else:
            inputs, outputs = self.runner.compiled.inputs, self.runner.compiled.outputs
            shapes = [
                tuple(d.get_length() if d.is_static else None for d in i.get_partial_shape()) for i in inputs
            ]
        if len(inputs) != 1 or len(outputs) < 1:
            raise InvalidModelError(
                f"{self.model_path} has {len(inputs)} inputs and {len(outputs)} outputs; an imgxlate "
                "generator has one image input and one image output"
            )
        self.input_name = self.runner.input_names[0]
        self.output_index = output_index(self.runner.output_names, self.model_path)
        self.output_name = self.runner.output_names[self.output_index]
        shape = shapes[0]
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise InvalidModelError(
                f"{self.model_path} takes input of shape {list(shape)}; expected (N, 3, H, W) RGB"
            )
        # Fixed spatial sizes in the graph (a model exported without dynamic axes) are honoured by
        # callers through ``fixed_size``.
        self.fixed_size: tuple[int, int] | None = (
            (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        )
        # A fixed batch dimension (usually 1): callers run images one at a time.
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    @property
    def on_cuda(self) -> bool:
        return self.provider == CUDA

    @property
    def runtime(self) -> str:
        """What computes, for reports (summaries, ``--json``'s ``provider``): the ONNX Runtime provider
        (``CPUExecutionProvider``, ``CUDAExecutionProvider``), or ``OpenVINO CPU`` on OpenVINO (whose
        runs ORT's provider names would misreport)."""
        return "OpenVINO CPU" if self.backend == OPENVINO else self.provider

    def runner_factory(self) -> Callable[[bytes], OrtRunner | OpenVinoRunner]:
        """Runners for the exact tiler's segment graphs on this engine's device and backend."""
        provider, backend, threads = self.provider, self.backend, self.threads

        def make(model: bytes) -> OrtRunner | OpenVinoRunner:
            return make_runner(model, provider, backend, threads, arena=ARENA_SHARED)

        return make

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise UsageError(f"Engine.run takes (N, 3, H, W) float32; got shape {x.shape}")
        return self.runner.run({self.input_name: x})[self.output_index]

    def describe(self) -> str:
        """The runtime line: ``running on CPUExecutionProvider (CUDA not available: ...)`` or
        ``running on OpenVINO 2026.4.1 (CPU)``: always says which runtime computes."""
        if self.backend == OPENVINO:
            line = f"running on OpenVINO {openvino_status()[1]} (CPU)"
        else:
            line = f"running on {self.provider}"
        if self.note:
            line += f" ({self.note})"
        return line
