"""The options of a conversion, as two values made once and handed down: which model runs how
(:class:`ModelSpec`) and what is done to each image (:class:`ImageOptions`).

The CLI builds them from its flags; the local batch (:mod:`imgxlate.batch`), the Ray stages
(:mod:`imgxlate.distributed`) and the web service take them as they are, so an option added here
reaches every way of converting, and one that cannot work is refused once, before any file is read.

    >>> spec = ModelSpec(to="vangogh", device="cpu", max_memory=2 << 30)
    >>> options = ImageOptions(fmt="png", tile=1024)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgxlate.errors import UsageError

if TYPE_CHECKING:
    from imgxlate.translator import Translator

TILINGS = ("exact", "blend")


@dataclass(frozen=True)
class ImageOptions:
    """What is done to each image. Checked when made (UsageError); :meth:`check_model` adds the
    checks that depend on the model (its size rule)."""

    fmt: str = "same"  # output format: same | png | jpg | webp | tiff (aliases normalised)
    quality: int | None = None  # JPEG / WebP quality, 1-100; None: imaging.formats.output_quality's default
    max_pixels: int | None = None  # the decoder's size limit (None: imaging.DEFAULT_MAX_PIXELS)
    tile: int | None = None  # None: automatic (from the memory a run needs), 0: whole image, else the edge
    tile_overlap: int = 32  # blend tiling only
    tiling: str = "exact"  # exact | blend

    def __post_init__(self) -> None:
        from imgxlate.imaging.formats import normalize_format

        object.__setattr__(self, "fmt", normalize_format(self.fmt))
        if self.tiling not in TILINGS:
            raise UsageError(f"unknown tiling {self.tiling!r}; use exact or blend")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, got {self.quality}")
        if self.tile_overlap < 0:
            raise UsageError(f"--tile-overlap must be >= 0, got {self.tile_overlap}")
        if self.tile is not None and self.tile < 0:
            raise UsageError(f"--tile must be >= 0 (0 = whole image), got {self.tile}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UsageError(f"--max-pixels must be >= 1, got {self.max_pixels}")

    def check_model(self, multiple: int) -> None:
        """Refuse a tile edge that does not fit a model whose sizes must be multiples of ``multiple``."""
        tile = self.tile
        if not tile:
            return
        smallest = 2 * multiple
        if tile % multiple or tile < smallest:
            near = max(smallest, -(-tile // multiple) * multiple)
            raise UsageError(
                f"--tile {tile} does not fit this model: tiles must be a multiple of {multiple} pixels and at least "
                f"{smallest}; try --tile {near} (or --tile 0 for whole images)"
            )
        if self.tiling == "blend" and tile < 2 * self.tile_overlap:
            raise UsageError(
                f"--tile {tile} is smaller than twice the overlap ({self.tile_overlap}): blended tiles would be all "
                f"overlap; use --tile {-(-2 * self.tile_overlap // multiple) * multiple} or more, or a smaller "
                "--tile-overlap"
            )

    @property
    def tiling_args(self) -> dict[str, object]:
        """The per-image tiling arguments of :meth:`imgxlate.translator.Translator.translate_rgb`."""
        return {"tile": self.tile, "tile_overlap": self.tile_overlap, "tiling": self.tiling}


@dataclass(frozen=True)
class ModelSpec:
    """Which model runs, where and how: what the local run loads once and each Ray actor loads again."""

    model: str | None = None  # name, .onnx file or pair folder (None: the default pair)
    to: str | None = None  # target domain
    direction: str | None = None  # a2b | b2a
    device: str = "auto"  # auto | cuda | cpu | ...
    threads: int = 0  # runtime threads (0: the physical cores)
    backend: str = "auto"  # auto | onnxruntime | openvino
    max_memory: int | None = None  # automatic tiling's budget for one image, bytes (None: from free memory)

    def __post_init__(self) -> None:
        if self.model is not None:
            object.__setattr__(self, "model", os.fspath(self.model))
        if self.max_memory is not None and self.max_memory <= 0:
            raise UsageError(f"--max-memory must be more than 0, got {self.max_memory} bytes")

    def load(self) -> Translator:
        """The model, loaded (:func:`imgxlate.translator.load_model`), with this memory budget."""
        from imgxlate.translator import load_model

        translator = load_model(self.model, to=self.to, direction=self.direction, device=self.device,
                                threads=self.threads, backend=self.backend)
        translator.max_memory = self.max_memory
        if self.max_memory is not None and translator.engine.fixed_size is None:  # below a tiled run's floor?
            floor = translator.tiling_choice(1 << 14, 1 << 14).need  # an image large enough to tile
            if floor > self.max_memory:
                from imgxlate.notes import Note

                translator.notes.append(Note("fallback", (
                    f"--max-memory {self.max_memory >> 20}M is less than a tiled run needs (at least "
                    f"{floor >> 20}M for the runtime and one tile, the decoded image and its result on top); "
                    "images that must be tiled use more")))
        return translator


# The defaults, made once (frozen, so sharing them is safe): what a caller that passes nothing gets.
DEFAULT_IMAGE_OPTIONS = ImageOptions()
DEFAULT_MODEL_SPEC = ModelSpec()
