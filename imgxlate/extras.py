"""What to install for each optional part: the packages behind each extra of ``pyproject.toml``.

imgxlate is installed from a checkout (``pip install '.[web]'``), not from PyPI, so advice of the form
``pip install 'imgxlate[web]'`` fails for every user ("no matching distribution"). Messages name the
packages an extra brings instead, which installs the same thing however imgxlate was installed.
``tests/test_extras.py`` keeps this table equal to ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.util
import re

from imgxlate.errors import UsageError

# extra -> its requirements, as pyproject.toml writes them (``gpu``: the Linux/Windows x86-64 one)
PACKAGES: dict[str, tuple[str, ...]] = {
    "cpu": ("onnxruntime>=1.20",),
    "gpu": ("onnxruntime-gpu>=1.20",),
    "hub": ("huggingface_hub>=0.24",),
    "train": ("torch>=2.2", "onnxscript>=0.1"),
    "openvino": ("openvino>=2024.0",),
    "heic": ("pillow-heif>=0.16",),
    "jxl": ("pillow-jxl-plugin>=1.3",),
    "raw": ("rawpy>=0.21",),
    "web": ("gradio>=6.0,<7",),
    "ray": ("ray[data]>=2.40",),
}


def _module(requirement: str) -> str:
    """The import name of a requirement's distribution: ``pillow-heif>=0.16`` -> ``pillow_heif``."""
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].replace("-", "_").lower()


def pip_install(extra: str, modules: list[str] | tuple[str, ...] = ()) -> str:
    """The command that installs ``extra``'s packages (those of ``modules``, when given and part of
    it): ``pip install 'gradio>=6.0,<7'``."""
    wanted = [p for p in PACKAGES[extra] if _module(p) in modules] or PACKAGES[extra]
    return "pip install " + " ".join(f"'{p}'" for p in wanted)


def require(extra: str, modules: tuple[str, ...], what: str) -> None:
    """A :class:`UsageError` naming what to install when one of ``modules`` (part of ``extra``) is not
    installed; ``what`` needs them ("training"). Looks without importing anything."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    advice = pip_install(extra, missing)
    if "torch" in missing:  # the default PyTorch wheel on Linux brings ~4 GB of CUDA libraries
        advice += " (a CPU-only PyTorch, much smaller: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
    names = " and ".join(missing)
    raise UsageError(f"{what} needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed: {advice}")
