"""The wheel users install holds what the package needs at run time: the bundled model pair, the
samples of the README's first command, the training package, and the PEP 561 marker (``py.typed``)
without which type checkers treat the fully annotated API as untyped."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_models_samples_training_and_the_typing_marker(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")  # the dev extra brings the build backend: built offline here
    src = tmp_path / "src"
    # A copy, so the build's own folders (build/, *.egg-info) never land in the checkout.
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".ruff_cache", "out"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("imgxlate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("imgxlate/py.typed", "imgxlate/models/vangogh2photo/a2b.onnx",
                   "imgxlate/models/vangogh2photo/b2a.onnx", "imgxlate/samples/README.md",
                   "imgxlate/train/__init__.py", "imgxlate/train/loop.py"):
        assert needed in names, f"{needed} is not in {wheel.name}"
    samples = {p.name for p in (REPO / "imgxlate" / "samples").iterdir()}
    assert samples <= {Path(n).name for n in names if n.startswith("imgxlate/samples/")}
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
