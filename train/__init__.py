"""imgxlate.train: CycleGAN, CUT and FastCUT training and ONNX export (needs the ``train`` extra: torch, onnx).

This folder is installed as ``imgxlate.train``; always import it under that name. The torch-backed
names are imported on first use, so ``imgxlate-train --help`` and ``--version`` start quickly.
"""

from __future__ import annotations

from typing import Any

if __name__ != "imgxlate.train":  # `import train` from a checkout would load a second copy of every module
    raise ImportError(
        f"this folder is the package imgxlate.train, not {__name__!r}: `import imgxlate.train` "
        "(from a checkout: pip install -e '.[train]')"
    )

from imgxlate.train.config import TrainConfig

__all__ = [
    "NLayerDiscriminator",
    "ResnetGenerator",
    "TrainConfig",
    "build_generator",
    "export_checkpoint",
    "init_weights",
    "train",
]

_LAZY = {
    "ResnetGenerator": "imgxlate.train.networks",
    "NLayerDiscriminator": "imgxlate.train.networks",
    "build_generator": "imgxlate.train.networks",
    "init_weights": "imgxlate.train.networks",
    "train": "imgxlate.train.loop",
    "export_checkpoint": "imgxlate.train.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imgxlate.train' has no attribute {name!r}")
