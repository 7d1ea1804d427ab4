"""Automatic tiling from the memory a run needs, --max-memory parsing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgxlate.errors import UsageError
from imgxlate.tiling import auto


def test_whole_when_it_fits_tiles_when_not() -> None:
    assert auto.choose_tiling(512, 512, ngf=64, budget_bytes=1 << 30).tile == 0
    c = auto.choose_tiling(3000, 4000, ngf=24, budget_bytes=1200 << 20)
    assert c.tile >= auto.MIN_TILE and c.tile % 4 == 0
    assert c.need <= c.budget
    # the budget decides: more memory, bigger tiles (up to the whole image)
    assert auto.choose_tiling(3000, 4000, ngf=24, budget_bytes=4 << 30).tile >= c.tile
    assert auto.choose_tiling(3000, 4000, ngf=24, budget_bytes=64 << 30).tile == 0


def test_exact_tiles_are_cache_sized_on_the_cpu_only() -> None:
    """Exact tiles on the CPU stop at a cache-sized tile (faster: docs/benchmarks.md); blend tiles
    (``tile``) and tiles on CUDA stay as large as memory allows; a whole run has no tile."""
    assert auto.cpu_exact_tile(32) == 404 and auto.cpu_exact_tile(64) == 284
    assert auto.cpu_exact_tile(512) == auto.MIN_TILE
    c = auto.choose_tiling(3000, 4000, ngf=32, budget_bytes=1200 << 20)
    assert c.tile == 756 and c.exact_tile == 404  # the bundled model's 12 MP photo
    # ...whose float16 maps fit in RAM beside cache-sized tiles (not beside 756 px ones), within budget
    assert c.store == "float16" and c.need <= c.budget
    assert auto.choose_tiling(3000, 4000, provider="CUDAExecutionProvider", ngf=32, budget_bytes=1200 << 20).store == "spill"
    assert auto.choose_tiling(4000, 6000, ngf=32, budget_bytes=1200 << 20).store == "spill"  # 24 MP
    small = auto.choose_tiling(3000, 4000, ngf=8, budget_bytes=300 << 20)
    assert small.exact_tile == small.tile < auto.cpu_exact_tile(8)  # memory is the tighter bound
    cuda = auto.choose_tiling(3000, 4000, provider="CUDAExecutionProvider", ngf=32, budget_bytes=1200 << 20)
    assert cuda.exact_tile == cuda.tile == c.tile
    assert auto.choose_tiling(512, 512, ngf=32, budget_bytes=1 << 30).exact_tile == 0


def test_store_follows_the_budget() -> None:
    # 12 MP, ngf 64: the kept maps are 2.3 GB in float32
    assert auto.choose_tiling(3000, 4000, ngf=64, budget_bytes=8 << 30).store == "float32"
    assert auto.choose_tiling(3000, 4000, ngf=64, budget_bytes=2500 << 20).store == "float16"
    assert auto.choose_tiling(8000, 12000, ngf=24, budget_bytes=2 << 30).store == "spill"


def test_default_budget_is_capped_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "available_memory", lambda: 64 << 30)
    assert auto.default_budget() == auto.DEFAULT_CAP
    monkeypatch.setattr(auto, "available_memory", lambda: 1 << 30)
    assert auto.default_budget() == 512 << 20


def test_cuda_budget_is_a_share_of_the_cards_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = "CUDAExecutionProvider"
    monkeypatch.setattr(auto, "cuda_free_memory", lambda: 140 << 30)  # an H200
    assert auto.default_budget(cuda) == int((140 << 30) * auto.GPU_SHARE)
    # the 12 MP photo that ran tiled on the H200 with the fixed budget (17.6 s against 5.0 s whole)
    assert auto.choose_tiling(3000, 4000, provider=cuda, ngf=32).tile == 0
    assert auto.choose_tiling(3000, 4000, provider=cuda, ngf=32, budget_bytes=auto.GPU_BUDGET).tile > 0
    monkeypatch.setattr(auto, "cuda_free_memory", lambda: None)  # no NVML: the small-card budget
    assert auto.default_budget(cuda) == auto.GPU_BUDGET


def test_cuda_free_memory_answers_or_says_none() -> None:
    # No driver here (CI): None, never an exception; on a CUDA machine a positive byte count.
    auto.cuda_free_memory.cache_clear()
    free = auto.cuda_free_memory()
    assert free is None or free > 0


@pytest.mark.parametrize(("text", "value"), [("1.5G", 1536 << 20), ("800M", 800 << 20), ("2GiB", 2 << 30),
                                             ("512MB", 512 << 20), (str(1 << 30), 1 << 30)])
def test_parse_memory(text: str, value: int) -> None:
    assert auto.parse_memory(text) == value


@pytest.mark.parametrize("text", ["lots", "-1G", "10M", "0"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--max-memory"):
        auto.parse_memory(text)


_FAKE_NVML = r"""
#include <stdint.h>
#include <string.h>
typedef struct { unsigned long long total, free, used; } mem_t;
int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { if (i > 3) return 2; *h = (void *)(uintptr_t)(i + 1); return 0; }
int nvmlDeviceGetHandleByUUID(const char *u, void **h) {
    if (strcmp(u, "GPU-fake-7") != 0) return 13;
    *h = (void *)(uintptr_t)7; return 0;
}
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    m->total = 80ULL << 30; m->free = (unsigned long long)(uintptr_t)h << 30; m->used = m->total - m->free; return 0;
}
"""


def test_cuda_free_memory_reads_nvml_for_the_visible_device(tmp_path: Path) -> None:
    """The ctypes calls against a stand-in libnvidia-ml.so.1 (built here with the C compiler): the
    device CUDA_VISIBLE_DEVICES names first, by index or UUID, and None when NVML says no.
    (On the GPU machine NVML is the driver's; this pins the signatures and the device choice.)"""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in NVML library")
    (tmp_path / "nvml.c").write_text(_FAKE_NVML)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "libnvidia-ml.so.1"), str(tmp_path / "nvml.c")],
                   check=True)
    code = "from imgxlate.tiling.auto import cuda_free_memory as f; print(f())"
    for visible, expected in [(None, 1 << 30), ("2,0", 3 << 30), ("GPU-fake-7", 7 << 30), ("GPU-other", None),
                              ("9", None)]:
        env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))
        env.pop("CUDA_VISIBLE_DEVICES", None)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(expected), (visible, out.stdout, out.stderr)
