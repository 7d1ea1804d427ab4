"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...) through LibRaw (``rawpy``, the
optional ``raw`` extra).

A RAW file is told by its name, not its first bytes: most RAW formats are TIFF containers whose first
directory holds a small preview, so a TIFF reader would quietly convert a 160x120 thumbnail. Every
RAW suffix is routed here, also without rawpy (then the file fails with what to install).

Development follows the camera, as its own JPEG would: the white balance the camera recorded, LibRaw's
default demosaicing and exposure, sRGB primaries and the sRGB tone curve, 16 bits, the orientation the
camera recorded. The pixels go on as 16-bit sRGB; EXIF is not carried over.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from imgxlate.extras import pip_install

if TYPE_CHECKING:  # formats.py imports this module for its suffixes: keep it light
    import numpy as np

RAW_SUFFIXES = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".pef", ".srw", ".x3f", ".3fr", ".fff", ".erf", ".kdc", ".dcr", ".mrw", ".mos", ".iiq", ".rwl",
    ".raw",
})  # fmt: skip

INSTALL_HINT = f"{pip_install('raw')} (LibRaw through rawpy), or export it to JPEG or TIFF first"

# sRGB's tone curve as LibRaw takes it: (1 / gamma, slope of the linear toe)
_SRGB_GAMMA = (2.4, 12.92)


def is_raw(path: str | Path) -> bool:
    return Path(str(path)).suffix.lower() in RAW_SUFFIXES


def develop(data: bytes, suffix: str, *, check_size: Callable[[int, int], None],
            fail: Callable[[str], Exception]) -> np.ndarray:
    """A RAW file's bytes -> (H, W, 3) uint16 sRGB, upright (the decoder makes pixels of it).

    ``check_size(width, height)`` runs on the header's size, before anything is developed (the
    decoder's pixel limit); ``fail(why)`` makes the decoder's error for this file. Failures: rawpy
    missing, a file LibRaw does not know, data it cannot finish (truncated)."""
    try:
        import rawpy
    except ImportError:
        raise fail(f"it is a camera RAW file ({suffix}); to read it, {INSTALL_HINT}") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            check_size(int(raw.sizes.width), int(raw.sizes.height))
            rgb16 = raw.postprocess(use_camera_wb=True, output_bps=16, gamma=_SRGB_GAMMA,
                                    output_color=rawpy.ColorSpace.sRGB)
    except (rawpy.LibRawFileUnsupportedError, rawpy.NotSupportedError, rawpy.LibRawNotImplementedError):
        raise fail(
            f"LibRaw does not recognise it as a camera RAW file although its name ends in {suffix}; check that "
            "it is not damaged or renamed, or export it to JPEG or TIFF with the camera's software"
        ) from None
    except rawpy.LibRawError as exc:
        raise fail(
            f"its RAW data cannot be developed ({type(exc).__name__}: the file is probably truncated or "
            "damaged); copy it from the card again"
        ) from None
    return rgb16
