"""Automatic tiling: from the memory a run would need, not from a fixed edge length.

:func:`choose_tiling` estimates the peak memory of a whole-image run and of an exact tiled run of the
ResNet generator (model width ``ngf``, image size) and picks, within a budget (``--max-memory``, else
half of the memory available now, at most :data:`DEFAULT_CAP` on the CPU; on CUDA a share of the
card's free memory, asked of the driver through NVML):

- the whole image when a whole run fits;
- else exact tiles, with the tile edge chosen so that one tile's working set stays within
  :data:`TILE_SHARE` of the budget (what blend tiles and tiles on CUDA use; on the CPU exact tiles
  stop at the cache-sized :func:`cpu_exact_tile`, which runs faster), and the kept 1/4- and
  1/2-resolution maps in float32, float16 (when float32 would not fit) or spilled to a temporary
  file (when neither fits).

The figures below are measured (docs/tiling.md) and deliberately on the safe side.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

CPU = "CPUExecutionProvider"
# Peak of a whole-image run, in full-resolution ngf-channel float32 maps: ONNX Runtime keeps the
# padded input, conv outputs and normalised copies alive. Measured peak RSS of `imgxlate convert
# --tile 0` with the bundled ngf 32 model: 522 MiB at 0.48 MP, 943 at 1.0, 1719 at 1.9, 2675 at 3.0 MP,
# i.e. ~80 MB + 6.8 maps per pixel; ngf 24 at 12 MP: ~9.3 (10.7 GB: the arena grows in doublings).
WHOLE_MAPS = 8.0
# The same with the up-sampling blocks in phase form (imgxlate.graphs.rewrite, ONNX Runtime on the
# CPU): no up-sampled copies and no padded full-resolution inputs to them. Measured peak RSS of
# `imgxlate convert --tile 0`, bundled ngf 32, 2 threads (sixth session): 450 MiB at 1.0 MP, 767 at
# 2.0, 1179 at 3.0, 1404 at 4.0 MP (without the rewrite: 968, 1796, 2693, 3397), i.e. ~2.5 maps per
# pixel over an intercept; 3.2 stays above every one of them.
WHOLE_MAPS_PHASED = 3.2
# What a whole run needs besides the maps (Python, numpy, the runtime and one session): the intercept
# above, with a margin.
WHOLE_BASE_BYTES = 100 << 20
# Maps the exact tiler keeps whole, in full-resolution ngf maps: three bottleneck maps (4 ngf channels
# at 1/16 of the pixels) or one 1/2-resolution map and one bottleneck map: 0.75 either way.
KEPT_MAPS = 0.75
# One tile's working set, in ngf maps of the tile's pixels (input window, conv output, prologue and
# epilogue buffers in the runtime's shared arena, allocator slack). Measured with the fused segment
# graphs (bundled ngf 24, 12 MP, float16 store): peak RSS 947 MiB at tile 616 and 1249 MiB at tile
# 1024, i.e. ~450 bytes = 4.7 maps per tile pixel; 6 keeps a margin (it was 12 before the segments
# were fused and shared one arena).
TILE_MAPS = 6.0
# Runtime, Python, sessions: what a tiled run needs before any image memory.
BASE_BYTES = 300 << 20
TILE_SHARE = 0.35
MIN_TILE, MAX_TILE = 256, 2048
# On the CPU the exact tiler runs fastest with tiles whose full-resolution ngf-channel float32 map is
# about the size of a last-level cache, not with the largest tiles memory allows: bundled model (ngf
# 32), 12 MP photo, 2 threads, maps spilled (`docs/benchmarks.md`, eighth session): 27.3 s at tile
# 756 (the memory-derived edge), 24.8 at 534, 24.0 at 448, 23.6 at 384, 23.7 at 320, 25.9 at 256
# (calls and halos start to cost); 3 MP: 5.27-5.35 s at 756, 5.10-5.19 at 404. A reference-size model
# (ngf 64, transposed-conv upsampling, 3 MP) runs the same at 532, 384 and 288 (16.4-16.7 s). 20 MiB
# puts the bundled model at 404 and ngf 64 at 284 (kept >= MIN_TILE); peak memory falls with it.
CPU_EXACT_TILE_MAP_BYTES = 20 << 20
# Default budget on the CPU when --max-memory is not given: half the available memory, at most this.
DEFAULT_CAP = 1200 << 20
# On CUDA: this share of the card's free memory (ORT's CUDA arena keeps freed blocks, and the card may
# be shared); where the driver cannot be asked, GPU_BUDGET, which stays inside a small card.
GPU_SHARE = 0.5
GPU_BUDGET = 3 << 30


@dataclass(frozen=True)
class TilingChoice:
    tile: int  # 0: whole image; else the largest tile edge the budget allows (what blend tiles use)
    store: str  # "float32" | "float16" | "spill": where the exact tiler keeps its whole maps
    budget: int  # bytes the choice was made for
    need: int  # estimated peak bytes of an exact run (model work only, not the decoded image)
    exact_tile: int = -1  # the edge exact tiles use: ``tile``, on the CPU at most a cache-sized tile

    def __post_init__(self) -> None:
        if self.exact_tile < 0:  # not given: exact tiles as large as the budget allows
            object.__setattr__(self, "exact_tile", self.tile)


def available_memory() -> int:
    """Memory available to a new allocation now (Linux ``MemAvailable``; else physical RAM / 2)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


@functools.lru_cache(maxsize=1)
def cuda_free_memory() -> int | None:
    """Free memory of the CUDA device ONNX Runtime runs on (device 0 of ``CUDA_VISIBLE_DEVICES``), from
    NVML, the driver's management library (no CUDA context is created); None where it cannot be asked.
    Read once a process: the first image's reading stands for the run (NVML takes milliseconds).

    Measured on an H200 (143 GB): with the fixed 3 GB budget a 12 MP photo was tiled and took 17.6 s
    against 5.0 s whole (docs/benchmarks.md)."""
    import ctypes

    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1" if os.name != "nt" else "nvml.dll")
    except OSError:
        return None

    class _Memory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        handle = ctypes.c_void_p()
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        if first.isdigit():
            ok = nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(int(first)), ctypes.byref(handle))
        else:  # a UUID (GPU-...), as CUDA_VISIBLE_DEVICES also accepts
            ok = nvml.nvmlDeviceGetHandleByUUID(first.encode(), ctypes.byref(handle))
        memory = _Memory()
        if ok != 0 or nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
            return None
        return int(memory.free)
    finally:
        nvml.nvmlShutdown()


def default_budget(provider: str = CPU) -> int:
    if provider != CPU:
        free = cuda_free_memory() if provider == "CUDAExecutionProvider" else None
        return int(free * GPU_SHARE) if free else GPU_BUDGET
    return int(min(available_memory() // 2, DEFAULT_CAP))


def whole_maps_for(rewrites: tuple[str, ...]) -> float:
    """The full-resolution maps a whole run holds per pixel, given the graph rewrites its runner
    applied (``OrtRunner.rewrites``)."""
    return WHOLE_MAPS_PHASED if "subpixel" in rewrites else WHOLE_MAPS


def whole_need(height: int, width: int, ngf: int, count: int = 1, maps: float = WHOLE_MAPS) -> int:
    """Peak bytes of one whole run of ``count`` images of this size (a batch of video frames);
    ``maps``: :func:`whole_maps_for` the runner."""
    return int(count * height * width * 4 * ngf * maps) + WHOLE_BASE_BYTES


def choose_tiling(
    height: int, width: int, *, provider: str = CPU, ngf: int = 64, budget_bytes: int | None = None, count: int = 1,
    whole_maps: float = WHOLE_MAPS,
) -> TilingChoice:
    """Whole image or exact tiles (edges, where kept maps live) for an image of this size. ``count``:
    images that would run whole together (a batch of frames); tiles are always one image's.
    ``whole_maps``: what a whole run holds per pixel on this runner (:func:`whole_maps_for`)."""
    budget = int(budget_bytes) if budget_bytes else default_budget(provider)
    need = whole_need(height, width, ngf, count, whole_maps)
    if need <= budget:
        return TilingChoice(0, "float32", budget, need)
    pixel = 4.0 * ngf  # bytes of one float32 ngf-channel pixel
    kept32 = height * width * pixel * KEPT_MAPS
    room = budget - BASE_BYTES
    # The kept maps may take what the exact tiles leave: 40% of the room is left for a tile as large
    # as the budget allows; on the CPU a cache-sized tile's working set is all it needs (bundled
    # model, 12 MP: float16 maps in RAM, 19.4-20.9 s and 1037 MiB, against 23.1-23.8 s and 534-581 MiB
    # spilled; docs/benchmarks.md).
    cache_tile = cpu_exact_tile(ngf) if provider == CPU else 0
    tile_room = min(0.4 * room, cache_tile * cache_tile * pixel * TILE_MAPS) if cache_tile else 0.4 * room
    if kept32 + tile_room <= room:
        store, kept = "float32", kept32
    elif kept32 / 2 + tile_room <= room:
        store, kept = "float16", kept32 / 2
    else:
        store, kept = "spill", 0.0
    tile_bytes = max(TILE_SHARE * budget, room - kept) if store != "spill" else TILE_SHARE * budget
    tile_bytes = min(tile_bytes, TILE_SHARE * max(budget, 1 << 30))
    edge = int(math.sqrt(max(tile_bytes, 0) / (pixel * TILE_MAPS)))
    tile = int(min(MAX_TILE, max(MIN_TILE, edge // 4 * 4)))
    exact = min(tile, cache_tile) if cache_tile else tile
    return TilingChoice(tile, store, budget, int(BASE_BYTES + kept + exact * exact * pixel * TILE_MAPS), exact)


def cpu_exact_tile(ngf: int) -> int:
    """The exact tiler's tile edge on the CPU: one full-resolution ngf-channel float32 map of the tile
    in :data:`CPU_EXACT_TILE_MAP_BYTES` (a multiple of 4, at least :data:`MIN_TILE`)."""
    edge = int(math.sqrt(CPU_EXACT_TILE_MAP_BYTES / (4.0 * max(ngf, 1))))
    return max(MIN_TILE, edge // 4 * 4)


def auto_tile_size(
    height: int,
    width: int,
    *,
    provider: str = CPU,
    ngf: int = 64,
    budget_bytes: int | None = None,
) -> int:
    """0 when a whole-image run fits the memory budget, else a tile edge (input pixels, multiple of 4)
    for the blend tiler (the exact tiler's is :attr:`TilingChoice.exact_tile`; see
    :func:`choose_tiling`)."""
    return choose_tiling(height, width, provider=provider, ngf=ngf, budget_bytes=budget_bytes).tile


def parse_memory(text: str) -> int:
    """``--max-memory``: ``1.5G``, ``800M``, ``2GiB``, ``512MB`` or plain bytes -> bytes."""
    from imgxlate.errors import UsageError

    s = text.strip().upper().replace("IB", "").replace("B", "")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = units.get(s[-1:], 1)
    number = s[:-1] if s[-1:] in units else s
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"--max-memory {text!r} is not a size; write e.g. 1.5G or 800M") from None
    if value <= 0 or not math.isfinite(value):
        raise UsageError(f"--max-memory must be positive, got {text!r}")
    if value * mult < 256 << 20:
        raise UsageError(f"--max-memory {text!r} is too small; imgxlate needs at least 256M")
    return int(value * mult)
