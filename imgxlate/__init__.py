"""imgxlate: translate images and videos between visual domains with CycleGAN generators.

    import imgxlate
    t = imgxlate.load_model(to="vangogh")
    painting = t.translate(PIL.Image.open("photo.jpg"))

Importing the package is light: numpy, onnxruntime and the image libraries load on first use of the
API below (attributes are resolved lazily).
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: the CLI's entry point imports this package before it can
# install its Ctrl-C handler, so the package import is kept to a few milliseconds (typing is not needed).
TYPE_CHECKING = False

from imgxlate._version import __version__
from imgxlate.errors import ImgxlateError

if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from imgxlate.batch import FileResult, convert_paths
    from imgxlate.engine import Engine
    from imgxlate.metadata import ModelMetadata
    from imgxlate.options import ImageOptions, ModelSpec
    from imgxlate.registry import DEFAULT_MODEL, ModelPair, list_models
    from imgxlate.translator import Translator, load_model

_LAZY = {
    "load_model": "imgxlate.translator",
    "Translator": "imgxlate.translator",
    "convert_paths": "imgxlate.batch",
    "FileResult": "imgxlate.batch",
    "ImageOptions": "imgxlate.options",
    "ModelSpec": "imgxlate.options",
    "Engine": "imgxlate.engine",
    "list_models": "imgxlate.registry",
    "ModelPair": "imgxlate.registry",
    "DEFAULT_MODEL": "imgxlate.registry",
    # lazy too: `imgxlate` (the CLI) must install its Ctrl-C handler within milliseconds of starting
    "ModelMetadata": "imgxlate.metadata",
}

__all__ = [
    "DEFAULT_MODEL",
    "Engine",
    "FileResult",
    "ImageOptions",
    "ImgxlateError",
    "ModelMetadata",
    "ModelPair",
    "ModelSpec",
    "Translator",
    "__version__",
    "convert_paths",
    "list_models",
    "load_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgxlate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
