"""Tiles kept on the device: the exact tiler's maps and tile intermediates as torch tensors.

On CUDA, :class:`~imgxlate.tiling.exact.executor.Executor` with ``device="cuda:0"`` keeps every
stored map (:class:`DeviceStore`) and every value passed between a tile's segments on the GPU: the
segment graphs read their inputs from device memory by address and leave their outputs there
(:meth:`imgxlate.engine.OrtRunner.run_device`, ONNX Runtime IO binding and DLPack). Only the image
window a tile reads goes up (3 channels), and only the output tile and the per-channel statistics
(a few numbers per tile) come down. Host staging copied every convolution's input window to the GPU
and its output back, once per segment and tile.

torch is the array library here because slicing a window out of a device map and writing a tile into
one are what ONNX Runtime's Python API cannot do; it is the ``train`` extra's dependency, and without
it (or without CUDA in it) the tiler stages through host memory as before. ``device="cpu"`` runs the
same code with CPU tensors: how the tests check it on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import numpy as np

from imgxlate.tiling.exact.graph import Region


@functools.lru_cache(maxsize=1)
def cuda_device() -> str | None:
    """"cuda:0" when torch is installed with a working CUDA (the device ONNX Runtime's CUDA provider
    uses by default), else None: the tiler then stages tiles through host memory.
    ``IMGXLATE_DEVICE_TILES=0`` asks for host staging anyway (to compare the two)."""
    if os.environ.get("IMGXLATE_DEVICE_TILES") == "0":
        return None
    try:
        import torch
    except ImportError:
        return None
    try:
        return "cuda:0" if torch.cuda.is_available() else None
    except RuntimeError:  # a broken driver or CUDA runtime: not usable
        return None


class DeviceArrays:
    """Moves arrays between the host and one torch device, and makes fed windows contiguous."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def upload(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    @staticmethod
    def download(x: Any) -> np.ndarray:
        return np.asarray(x.detach().cpu().numpy())

    def feedable(self, window: Any, *, force_float32: bool = False) -> tuple[Any, bool]:
        """A window ready to bind: contiguous, float16 kept (the graph casts it) unless
        ``force_float32``, anything else float32; and whether it went in as float16."""
        half = window.dtype == self.torch.float16 and not force_float32
        return window.contiguous() if half else window.to(self.torch.float32).contiguous(), half

    def moments(self, y: Any) -> tuple[int, np.ndarray, np.ndarray]:
        """(count, mean, M2) per channel of a (1, C, h, w) tile, in float64 (the host's _Moments.add_tile)."""
        y64 = y.to(self.torch.float64)
        mean = y64.mean(dim=(0, 2, 3))
        m2 = ((y64 - mean.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3))
        return int(y.shape[2] * y.shape[3]), self.download(mean), self.download(m2)


class DeviceStore:
    """Stored maps as device tensors, float32 or float16: :class:`~imgxlate.tiling.exact.store.MapStore`'s
    interface (``dtype`` is the numpy dtype, for the executor's float16 decisions)."""

    def __init__(self, arrays: DeviceArrays, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"device store dtype must be float32 or float16, got {dtype!r}")
        self.arrays = arrays
        self.dtype = np.dtype(dtype)
        self._torch_dtype = arrays.torch.float16 if dtype == "float16" else arrays.torch.float32
        self.maps: dict[str, Any] = {}

    def create(self, name: str, shape: tuple[int, ...]) -> None:
        self.maps[name] = self.arrays.torch.empty(shape, dtype=self._torch_dtype, device=self.arrays.device)

    def read(self, name: str, region: Region) -> Any:
        y0, y1, x0, x1 = region
        return self.maps[name][:, :, y0:y1, x0:x1]

    def write(self, name: str, region: Region, value: Any) -> None:
        y0, y1, x0, x1 = region
        self.maps[name][:, :, y0:y1, x0:x1] = value  # a device copy (cast to the store's dtype)

    def release(self) -> None:
        """Nothing to hand back: device maps are not spilled."""

    def drop(self, name: str) -> None:
        self.maps.pop(name, None)

    def close(self) -> None:
        """Drop the maps and hand their memory back to the device: torch's caching allocator would
        keep it (~1.2 GB for a 12 MP image), where ONNX Runtime, which runs the next image, cannot use it."""
        self.maps.clear()
        if self.arrays.device.type == "cuda":
            with contextlib.suppress(RuntimeError):  # after a CUDA error: the error that stopped the run counts
                self.arrays.torch.cuda.empty_cache()
