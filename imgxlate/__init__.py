"""imgxlate: translate images and videos between visual domains with CycleGAN generators."""

from imgxlate._version import __version__
from imgxlate.errors import ImgxlateError
from imgxlate.metadata import ModelMetadata

__all__ = ["__version__", "ImgxlateError", "ModelMetadata"]
