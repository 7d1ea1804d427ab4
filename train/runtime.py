"""Where a run executes: device, autocast precision, CPU threads, and the torchrun process group."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch

from imgxlate.errors import DeviceError, UsageError
from imgxlate.train.config import TrainConfig


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    precision: str
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        if self.device.type == "mps":
            return "Apple MPS"
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cpu_threads(requested: int) -> int:
    """``--threads`` as ``imgxlate convert`` takes it (:func:`imgxlate.engine.thread_count`: 0 is
    OMP_NUM_THREADS when set, else the physical cores; at most the CPUs this process may use): the same
    option means the same thing in every command."""
    from imgxlate.engine import thread_count

    return thread_count(requested)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if want == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError("--device mps was asked for but MPS is not available; use --device cpu")
    if want == "cuda":
        index = local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    else:
        device = torch.device(want)
    torch.set_num_threads(cpu_threads(cfg.threads))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    precision = cfg.precision
    if precision == "auto":
        # not emulated: before Ampere (compute capability 8) torch would run bf16 in software
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        precision = "bf16" if bf16_ok else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, dtype, precision, rank, local_rank, world)
