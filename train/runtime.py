"""Where a run executes: device, autocast precision, CPU threads, and the torchrun process group."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from dataclasses import dataclass, field

import torch

from imgxlate._units import counted
from imgxlate.errors import DeviceError, UsageError
from imgxlate.train.config import TrainConfig
from imgxlate.train.launch import Launch, launch_env

log = logging.getLogger("imgxlate.train")


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    precision: str
    # where this process sits in a torchrun launch (a single process: rank 0 of 1)
    launch: Launch = field(default_factory=Launch)

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def local_rank(self) -> int:
        return self.launch.local_rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.launch.is_main

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def max_over_ranks(self, value: int) -> int:
        """The largest ``value`` any rank passes: a collective, so every rank calls it at the same point
        of the run (one process: ``value``, no collective). The training loop's stop agreement."""
        if not self.distributed:
            return value
        flag = torch.tensor([value], dtype=torch.int32, device=self.device)  # NCCL reduces CUDA tensors only
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        if self.device.type == "mps":
            return "Apple MPS"
        return f"CPU ({platform.processor() or platform.machine()}, {counted(torch.get_num_threads(), 'thread')})"


def cpu_threads(requested: int) -> int:
    """``--threads`` as ``imgxlate convert`` takes it (:func:`imgxlate.engine.thread_count`: 0 is
    OMP_NUM_THREADS when set, else the physical cores; at most the CPUs this process may use): the same
    option means the same thing in every command."""
    from imgxlate.engine import thread_count

    return thread_count(requested)


def join_process_group(backend: str, launch: Launch) -> None:
    """``init_process_group`` on a helper thread, the main thread waiting in short sleeps: the
    rendezvous blocks inside C++ until every rank has joined, where no Ctrl-C or SIGTERM reaches Python
    (a process started with a left-over WORLD_SIZE waited for peers that never came, deaf to both).
    Rank 0 says what it is waiting for when the others are slow to come."""
    import threading
    import time

    failed: list[BaseException] = []

    def join() -> None:
        try:
            torch.distributed.init_process_group(backend=backend)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            failed.append(exc)

    worker = threading.Thread(target=join, name="imgxlate-rendezvous", daemon=True)
    worker.start()
    t0, said = time.monotonic(), False
    while worker.is_alive():
        worker.join(0.2)  # a stop signal's KeyboardInterrupt is raised here
        if not said and launch.is_main and time.monotonic() - t0 > 10:
            said = True
            log.warning("waiting for the other %d process(es) of this run (WORLD_SIZE=%d, %s:%s); if this "
                        "was not meant to be a multi-process run, stop it and unset WORLD_SIZE and RANK",
                        launch.world_size - 1, launch.world_size, os.environ.get("MASTER_ADDR"),
                        os.environ.get("MASTER_PORT"))
    if failed:
        raise failed[0]


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when started by torchrun."""
    launch = launch_env()
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if want == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError("--device mps was asked for but MPS is not available; use --device cpu")
    if want == "cuda":
        index = launch.local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    else:
        device = torch.device(want)
    torch.set_num_threads(cpu_threads(cfg.threads))
    if launch.world_size > 1 and not torch.distributed.is_initialized():
        join_process_group("nccl" if device.type == "cuda" else "gloo", launch)
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
    return Runtime(device, dtype, precision, launch)
