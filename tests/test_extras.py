"""imgxlate.extras: install advice names real packages, and the table matches pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imgxlate import extras

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")


def _extras() -> dict[str, list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def test_every_extra_users_install_is_in_the_table_with_its_own_requirements() -> None:
    core = {"onnx>=1.16"}  # in `train` too, but always installed
    for extra, requirements in _extras().items():
        if extra in ("dev", "bench"):  # for developers: a checkout's `pip install -e '.[dev]'`
            continue
        plain = [r.split(";")[0].strip() for r in requirements]
        wanted = [r for r in plain if r not in core]
        if extra == "gpu":  # the NVIDIA build where it exists, plain onnxruntime elsewhere
            wanted = wanted[:1]
        assert list(extras.PACKAGES[extra]) == wanted, extra


def test_advice_never_names_imgxlate_as_a_package_to_install() -> None:
    """imgxlate is not on PyPI: `pip install 'imgxlate[web]'` fails for every user."""
    found = []
    for path in [*ROOT.joinpath("imgxlate").rglob("*.py"), *ROOT.joinpath("train").rglob("*.py")]:
        if path.name == "extras.py":  # says why, with the example
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"pip install[^\n]*(?<![./-])imgxlate\b", line):
                found.append(f"{path.relative_to(ROOT)}:{n}")
    assert found == []
    assert extras.pip_install("web") == "pip install 'gradio>=6.0,<7'"
    assert extras.pip_install("train") == "pip install 'torch>=2.2' 'onnxscript>=0.1'"
