"""Fixtures for the trainer tests; skipped without torch (the ``train`` extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from train_helpers import write_images


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "horses", tmp_path / "zebras"
    write_images(a, 4, seed=1)
    write_images(b, 3, seed=2, tint=60)
    return a, b
