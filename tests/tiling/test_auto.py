"""Automatic tiling from the memory a run needs, --max-memory parsing."""

from __future__ import annotations

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
