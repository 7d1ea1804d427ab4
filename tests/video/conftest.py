"""Fixtures of the video tests: one small clip with audio and a tiny random model, per module."""

from __future__ import annotations

from pathlib import Path

import pytest
from video_helpers import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "test clip.mp4")


@pytest.fixture(scope="module")
def translator(tiny_pair: Path):
    from imgxlate.translator import load_model

    return load_model(str(tiny_pair / "a2b.onnx"), device="cpu", threads=1)
