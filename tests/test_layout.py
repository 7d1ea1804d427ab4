"""The package layout: every module imports on its own (no import cycles), and train/ is only ever
the module imgxlate.train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imgxlate

REPO = Path(__file__).resolve().parents[1]

# Imports every module named on stdin with no imgxlate module loaded before it (third-party modules
# stay cached, which is what makes one interpreter enough): a cycle shows up as "partially
# initialized module" or a missing name.
_CHECK = """
import importlib, sys, traceback
failed = 0
for name in sys.stdin.read().split():
    for loaded in [m for m in sys.modules if m == "imgxlate" or m.startswith("imgxlate.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if "torch" in str(exc) and name.startswith("imgxlate.train"):
            continue  # the train extra is not installed here
        failed += 1
        print(name, "->", traceback.format_exc().strip().splitlines()[-1])
    except Exception:
        failed += 1
        print(name, "->", traceback.format_exc().strip().splitlines()[-1])
sys.exit(1 if failed else 0)
"""


def _modules() -> list[str]:
    names = []
    pkg = Path(imgxlate.__file__).parent
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    for path in sorted((REPO / "train").glob("*.py")):
        if path.stem != "__main__":
            names.append("imgxlate.train" if path.stem == "__init__" else f"imgxlate.train.{path.stem}")
    return names


def test_every_module_imports_on_its_own() -> None:
    names = _modules()
    assert {"imgxlate.cli.video", "imgxlate.tiling.exact", "imgxlate.imaging.decode", "imgxlate.translator"} <= set(
        names
    )
    res = subprocess.run([sys.executable, "-c", _CHECK], input=" ".join(names), capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_train_folder_is_only_imgxlate_train() -> None:
    res = subprocess.run([sys.executable, "-c", "import train"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0 and "import imgxlate.train" in res.stderr
    script = (
        "import sys, imgxlate.train, imgxlate.train.config; "
        "assert 'train' not in sys.modules; print(imgxlate.train.TrainConfig.__module__)"
    )
    ok = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                        check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == "imgxlate.train.config", ok.stderr


def test_every_package_is_listed_in_pyproject() -> None:
    """A non-editable install ships only the packages pyproject names: a new sub-package must be there."""
    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    pkg = Path(imgxlate.__file__).parent
    found = {"imgxlate." + ".".join(p.parent.relative_to(pkg).parts) if p.parent != pkg else "imgxlate"
             for p in pkg.rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, f"sub-packages missing from [tool.setuptools] packages in pyproject.toml: {missing}"
