"""The check every loaded or installed model passes: it runs, and it is an image generator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgxlate.errors import (
    ImgxlateError,
    InvalidModelError,
    brief,
)
from imgxlate.metadata import ModelMetadata, read_onnx_metadata


def probe_side(meta: ModelMetadata) -> tuple[int, int]:
    """The probe input's (height, width): small, a multiple of the model's size multiple, not square
    (so a model that swaps or resizes its axes is caught)."""
    mult = max(1, int(meta.size_multiple))
    h = mult * max(2, -(-16 // mult))
    return h, h + mult


def probe_generator(engine: Any, meta: ModelMetadata, where: str | os.PathLike[str]) -> None:
    """Run one small random image through ``engine`` and check that the model is an image generator:
    the output has the input's shape, is finite and is not constant. Raises InvalidModelError.

    The one check behind both ``imgxlate models add`` and ``--model PATH`` (run once per loaded model)."""
    import numpy as np

    h, w = probe_side(meta)
    fixed = getattr(engine, "fixed_size", None)
    if fixed is not None:
        h, w = fixed
    lo, hi = meta.input_range
    x = np.random.default_rng(0).uniform(lo, hi, size=(1, 3, h, w)).astype(np.float32)
    try:
        y = np.asarray(engine.run(x))
    except ImgxlateError:
        raise
    except Exception as exc:  # ONNX Runtime errors have no common base class
        raise InvalidModelError(
            f"{where} loads but fails on a {w}x{h} test image: {brief(exc)}; it is not an image generator "
            f"imgxlate can run as it is (a model that needs sides in multiples of more than "
            f"{meta.size_multiple}, such as a U-Net, says so with size_multiple in its metadata: see the "
            "README, 'Model format')"
        ) from exc
    if y.shape != x.shape:
        raise InvalidModelError(
            f"{where} maps a {tuple(x.shape)} test image to {tuple(y.shape)}; an imgxlate generator returns "
            "an image of the same size (is it a classifier, or a model that resizes?)"
        )
    if not np.isfinite(y).all():
        raise InvalidModelError(
            f"{where} produced NaN or infinite values on a test image: its weights are damaged, or training "
            "diverged; copy it again, or export an earlier checkpoint (`imgxlate-train export`)"
        )
    out_lo, out_hi = meta.output_range
    # Values far outside the range the output is read with: a [0, 255] model read as [-1, 1] (no
    # metadata) came out white, without a word. A quarter of the span either side leaves room for a
    # generator's overshoot (tanh-free heads, rounding); a [0, 1] model is inside it and only its
    # metadata can say what it is.
    span = out_hi - out_lo
    outside = float(np.mean((y < out_lo - span / 4) | (y > out_hi + span / 4)))
    if outside > 0.01:
        raise InvalidModelError(
            f"{where} returns values from {float(y.min()):.3g} to {float(y.max()):.3g} on a test image, outside "
            f"the range {out_lo:g} to {out_hi:g} its output is read in ({outside:.0%} of them); written as an "
            "image they would be clipped to black or white. Give the model its ranges (input_range and "
            "output_range in its imgxlate metadata: see the README, 'Model format')"
        )
    if float(np.ptp(y, axis=(2, 3)).max()) <= 1e-6 * (out_hi - out_lo):
        raise InvalidModelError(
            f"{where} returns a constant image whatever its input (value {float(y.flat[0]):.4g}); it is not "
            "a trained generator"
        )


def validate_model_file(path: Path, meta: ModelMetadata | None = None) -> ModelMetadata | None:
    """Load ``path`` in ONNX Runtime (CPU) and run :func:`probe_generator` on it; return its metadata."""
    from imgxlate.engine import Engine

    found = read_onnx_metadata(str(path))
    engine = Engine(path, device="cpu", threads=1)
    probe_generator(engine, found or meta or ModelMetadata.assumed(path.stem), path)
    return found
