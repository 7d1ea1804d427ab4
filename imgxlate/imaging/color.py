"""Colour: ICC profiles to sRGB, luma, and float <-> integer sample quantisation.

Matrix/TRC profiles are converted with numpy in float32 (:func:`shaper_to_srgb`); LUT profiles and CMYK
go through ``PIL.ImageCms``. The policy (which profile is converted, which is kept) is described in
:mod:`imgxlate.imaging`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.imaging.notices import image_warning

if TYPE_CHECKING:
    from PIL import Image as PILImage


# ITU-R 601-2 luma, the weights of Pillow's convert("L"); they sum to 1 so gray in -> same gray out.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) luma with the ITU-R 601 weights (on the encoded values, like Pillow)."""
    return np.einsum("hwc,c->hw", np.asarray(rgb, dtype=np.float32), _LUMA)  # no BLAS threads (see above)


def _unit_clip(x: np.ndarray) -> np.ndarray:
    """float32 copy of ``x`` clipped to [0, 1] with NaN -> 0 (np.clip is ~10x faster than fmax/fmin here)."""
    y = np.clip(np.asarray(x, dtype=np.float32), np.float32(0.0), np.float32(1.0))
    if np.isnan(y).any():
        y[np.isnan(y)] = 0.0
    return y


def quantize(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float in [0, 1] -> uint8 / uint16, rounded to nearest (so k / 255 -> k exactly); NaN -> 0."""
    y = _unit_clip(x)
    y *= np.float32(65535.0 if bit_depth == 16 else 255.0)
    np.rint(y, out=y)
    return y.astype(np.uint16 if bit_depth == 16 else np.uint8)


def to_pixels(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Decoded samples -> what a decoded image holds, and the bit depth they stand for: 8-bit samples
    stay uint8 (a quarter of float32: 288 MB instead of 1.15 GB for a 96 MP RGB image), everything
    else becomes float32 in [0, 1] (:func:`_to_unit`)."""
    if samples.dtype == np.uint8:
        return samples, 8
    return _to_unit(samples)


def unit_float(pixels: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 through :func:`_to_unit` (/ 255), float unchanged."""
    if pixels.dtype == np.uint8:
        return _to_unit(pixels)[0]
    return np.asarray(pixels, dtype=np.float32)


def _to_unit(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer or float samples -> float32 [0, 1] and the bit depth they stand for."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0), 8
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0), 16
    if arr.dtype == np.bool_:
        return arr.astype(np.float32), 8
    if np.issubdtype(arr.dtype, np.floating):
        return _unit_clip(arr), 16
    # other integers (Pillow "I", int32 TIFF): treated as 16-bit samples
    return np.clip(arr, 0, 65535).astype(np.float32) / np.float32(65535.0), 16


def _s15(b: bytes) -> float:
    return struct.unpack(">i", b)[0] / 65536.0


def _icc_tags(icc: bytes) -> dict[bytes, bytes]:
    if len(icc) < 132 or icc[36:40] != b"acsp":
        raise ValueError("not an ICC profile")
    (n,) = struct.unpack(">I", icc[128:132])
    tags: dict[bytes, bytes] = {}
    for k in range(min(n, 1000)):
        sig, off, size = struct.unpack(">4sII", icc[132 + 12 * k : 144 + 12 * k])
        if off + size > len(icc):
            raise ValueError(f"ICC tag {sig!r} lies outside the profile")
        tags[sig] = icc[off : off + size]
    return tags


def _icc_curve(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """An ICC 'curv' or 'para' tone curve as a function on float arrays in [0, 1]."""
    kind = data[:4]
    if kind == b"curv":
        (n,) = struct.unpack(">I", data[8:12])
        if n == 0:
            return lambda x: x
        if n == 1:
            gamma = struct.unpack(">H", data[12:14])[0] / 256.0  # u8Fixed8
            return lambda x: np.power(x, gamma)
        table = np.frombuffer(data[12 : 12 + 2 * n], dtype=">u2").astype(np.float64) / 65535.0
        if table.size != n:
            raise ValueError("truncated curv table")
        grid = np.linspace(0.0, 1.0, n)
        return lambda x: np.interp(x, grid, table)
    if kind == b"para":
        (ftype,) = struct.unpack(">H", data[8:10])
        nparams = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if nparams is None or len(data) < 12 + 4 * nparams:
            raise ValueError(f"unsupported para curve type {ftype}")
        p = [_s15(data[12 + 4 * i : 16 + 4 * i]) for i in range(nparams)] + [0.0] * (7 - nparams)
        g, a, b, c, d, e, f = p

        def para(x: np.ndarray) -> np.ndarray:
            # ICC.1 table 65: the five parametric forms, all as "power segment above a break".
            if ftype == 0:
                return np.power(x, g)
            if ftype in (1, 2):
                brk = -b / a if a else 0.0
                base = np.power(np.maximum(a * x + b, 0.0), g)
                return np.where(x >= brk, base + (c if ftype == 2 else 0.0), c if ftype == 2 else 0.0)
            base = np.power(np.maximum(a * x + b, 0.0), g)
            if ftype == 3:
                return np.where(x >= d, base, c * x)
            return np.where(x >= d, base + e, c * x + f)

        return para
    raise ValueError(f"unsupported curve type {kind!r}")


@dataclass
class _MatrixShaper:
    """An RGB matrix/TRC profile: linear = trc(encoded); XYZ(D50) = matrix @ linear."""

    matrix: np.ndarray  # (3, 3), columns = red, green, blue colorants (already adapted to D50)
    curves: list[Callable[[np.ndarray], np.ndarray]]
    same_curves: bool = False  # rTRC, gTRC and bTRC are the same bytes (the usual case)


def _matrix_shaper(icc: bytes) -> _MatrixShaper | None:
    """Parse an RGB matrix/TRC profile; None when it is LUT-based (A2B0 wins over matrix in LittleCMS)."""
    tags = _icc_tags(icc)
    if b"A2B0" in tags or icc[16:20] != b"RGB " or icc[20:24] != b"XYZ ":
        return None
    need = [b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC"]
    if any(t not in tags for t in need):
        return None
    cols = [[_s15(tags[t][8 + 4 * i : 12 + 4 * i]) for i in range(3)] for t in need[:3]]
    matrix = np.array(cols, dtype=np.float64).T
    same = tags[b"rTRC"] == tags[b"gTRC"] == tags[b"bTRC"]
    return _MatrixShaper(matrix, [_icc_curve(tags[t]) for t in need[3:]], same)


def _srgb_encode(lin: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded float32 in [0, 1] (IEC 61966-2-1 curve; clips out-of-gamut values)."""
    lin = _unit_clip(lin)
    out = np.power(lin, np.float32(1 / 2.4))
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    low = lin <= np.float32(0.0031308)  # the linear toe: few pixels, so fix them by index
    if low.any():
        out[low] = lin[low] * np.float32(12.92)
    return out


_srgb_cache: dict[str, Any] = {}


def srgb_profile() -> bytes:
    """The sRGB profile embedded in outputs whose pixels were converted (LittleCMS's built-in sRGB)."""
    if "bytes" not in _srgb_cache:
        from PIL import ImageCms

        data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
        # LittleCMS stamps the header's creation date (bytes 24-35) with the current time, so the same
        # conversion written a second later gave different bytes. A fixed date makes outputs
        # reproducible (a rerun, or a distributed run, writes the same file). The profile ID (bytes
        # 84-99) is left zero by LittleCMS ("not computed"), so nothing else depends on the date.
        data[24:36] = bytes.fromhex("07d0" "0001" "0001" "0000" "0000" "0000")  # 2000-01-01 00:00:00
        _srgb_cache["bytes"] = bytes(data)
    return _srgb_cache["bytes"]


def _srgb_shaper() -> _MatrixShaper:
    if "shaper" not in _srgb_cache:
        shaper = _matrix_shaper(srgb_profile())
        assert shaper is not None
        _srgb_cache["shaper"] = shaper
    return _srgb_cache["shaper"]


def _shaper_is_srgb(shaper: _MatrixShaper) -> bool:
    srgb = _srgb_shaper()
    if not np.allclose(shaper.matrix, srgb.matrix, atol=1e-3):
        return False
    ramp = np.linspace(0.0, 1.0, 256)
    # Same curves within a quarter of an 8-bit step of the encoded value.
    return all(float(np.max(np.abs(_srgb_encode(c(ramp)) - ramp))) < 0.25 / 255 for c in shaper.curves)


def shaper_to_srgb(samples: np.ndarray, shaper: _MatrixShaper, levels: int | None) -> np.ndarray:
    """(H, W, 3) encoded RGB in the profile's space -> float32 sRGB in [0, 1] (gamut hard-clipped).

    ``samples``: integers with ``levels`` codes (256 / 65536: the curves become lookup tables) or
    float in [0, 1] (``levels=None``).
    """
    srgb = _srgb_shaper()
    # linear source RGB -> XYZ (D50) -> linear sRGB, as one 3x3 matrix (transposed for row vectors).
    to_srgb_t = np.ascontiguousarray((np.linalg.inv(srgb.matrix) @ shaper.matrix).T.astype(np.float32))
    if levels is not None:
        ramp = np.arange(levels, dtype=np.float64) / (levels - 1)
        luts = [c(ramp).astype(np.float32) for c in shaper.curves]
        if shaper.same_curves:  # one lookup over the whole (H, W, 3) array
            lin = np.take(luts[0], samples)
        else:
            lin = np.empty(samples.shape, dtype=np.float32)
            for ch in range(3):
                lin[..., ch] = np.take(luts[ch], samples[..., ch])
    else:
        lin = np.empty(samples.shape, dtype=np.float32)
        for ch in range(3):
            lin[..., ch] = shaper.curves[ch](samples[..., ch].astype(np.float64))
    # einsum, not matmul: `@` calls multi-threaded BLAS, which is 50x slower on a busy machine (the
    # pipeline decodes in threads while ONNX Runtime uses every core).
    return _srgb_encode(np.einsum("hwk,kc->hwc", lin, to_srgb_t))


def _describe_profile(icc: bytes) -> tuple[Any, str]:
    """Open ``icc`` with LittleCMS (raises on a broken profile); return it and its description."""
    from PIL import ImageCms

    prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    try:
        desc = ImageCms.getProfileDescription(prof) or ""
    except ImageCms.PyCMSError:
        desc = ""
    return prof, desc.strip()


def _icc_space(icc: bytes | None) -> bytes:
    return icc[16:20] if icc and len(icc) >= 20 else b""


def _fix_cmyk_polarity(im: PILImage.Image) -> PILImage.Image:
    """Pillow reads every CMYK JPEG with Adobe's inverted polarity; undo that when there is no Adobe marker."""
    if im.mode == "CMYK" and im.format in ("JPEG", "MPO") and "adobe" not in im.info:
        fixed = im.point(lambda v: 255 - v)
        fixed.info = dict(im.info)
        fixed.format = im.format  # type: ignore[misc]
        return fixed
    return im


def _apply_icc(
    samples: np.ndarray, grayscale: bool, icc: bytes | None, pil_rgb: PILImage.Image | None, cmyk: bool
) -> tuple[np.ndarray | None, bytes | None]:
    """Convert to sRGB per the module's ICC policy.

    Returns (converted float32 (H, W, 3) or None when the pixels are already taken as they are, profile
    to embed in the output). ``pil_rgb`` is the 8-bit source image for ImageCms ("RGB" or "CMYK").
    """
    if not icc:
        return None, None
    try:
        prof, desc = _describe_profile(icc)
    except Exception as exc:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
        image_warning(
            f"ignoring the image's broken ICC profile ({exc}); colours are taken as sRGB", stacklevel=4
        )
        return None, None
    space = _icc_space(icc)
    want = b"GRAY" if grayscale else (b"CMYK" if cmyk else b"RGB ")
    if space != want:
        image_warning(
            f"ignoring the image's ICC profile {desc!r}: it is for {space.decode('latin-1').strip()} "
            f"but the pixels are {want.decode().strip()}; colours are taken as sRGB",
            stacklevel=4,
        )
        return None, None
    if grayscale:
        return None, icc
    if not cmyk:
        try:
            shaper = _matrix_shaper(icc)
        except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
            shaper = None
        if shaper is not None:
            if _shaper_is_srgb(shaper):
                return None, icc
            levels = {np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}.get(samples.dtype)
            return shaper_to_srgb(samples, shaper, levels), srgb_profile()
        if "srgb" in desc.lower():
            return None, icc
        if samples.dtype != np.uint8 or pil_rgb is None:
            image_warning(
                f"the 16-bit image's ICC profile {desc!r} is LUT-based and is not converted; the model sees "
                "its colours unconverted and the output keeps the profile",
                stacklevel=4,
            )
            return None, icc
    from PIL import ImageCms

    assert pil_rgb is not None
    try:
        transform = ImageCms.buildTransform(
            prof, ImageCms.createProfile("sRGB"), "CMYK" if cmyk else "RGB", "RGB"
        )
        out = ImageCms.applyTransform(pil_rgb, transform)
    except Exception as exc:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
        image_warning(
            f"cannot convert colours with the ICC profile {desc!r} ({exc}); taken as sRGB", stacklevel=4
        )
        return None, None
    assert out is not None
    return np.asarray(out).astype(np.float32) / np.float32(255.0), srgb_profile()
