"""Read and write every image users own, as float32 sRGB arrays the model can take.

Reading (:func:`read_image`, :func:`from_array`) gives a :class:`DecodedImage`: ``rgb`` (H, W, 3)
float32 in [0, 1], sRGB, upright, plus what the writer needs to give the result back in the source's
kind: alpha, bit depth, grayscale, format, ICC profile and EXIF. Writing (:func:`write_image`) is atomic
(temp file beside the target, then ``os.replace``) and never touches the input.

Decoding
    The file is read into memory once and decoded from there, so names with spaces, colons or any
    unicode never matter. Pillow decodes everything except 16-bit RGB(A) PNG and 16-bit / float
    RGB(A) TIFF, which Pillow would cut to 8 bits: those go through OpenCV (``IMREAD_UNCHANGED``).
    Palette images become RGB, or RGBA when they have transparency (tRNS); 1-bit, L, LA, 16-bit and
    32-bit integer and float gray are grayscale. Float samples are taken as [0, 1] and clipped
    (bit depth reported as 16). CMYK JPEGs become RGB through their ICC profile when they have one,
    else through Pillow's naive formula; Pillow assumes Adobe's inverted polarity for every CMYK JPEG,
    which is undone for files without an Adobe APP14 marker.
    Animated images (GIF, APNG, WebP, multi-page TIFF): the first frame is converted, silently.
    Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set). Images with more
    than ``max_pixels`` pixels are refused from their header, before anything is decoded.

Orientation
    The EXIF Orientation tag (1-8) is applied to the pixels; the EXIF kept for the output has its
    Orientation reset to 1, byte-for-byte otherwise (maker notes keep their offsets). OpenCV applies a
    TIFF's Orientation tag itself. XMP-only orientation is not read.

Colour (ICC) policy
    The model was trained on sRGB photos, so it is fed sRGB:

    - RGB image with a non-sRGB profile (Adobe RGB, ProPhoto, Display P3, ...): pixels are converted
      to sRGB on read and the output embeds an sRGB profile (:func:`srgb_profile`). Matrix/TRC
      profiles (nearly all RGB profiles) are converted in float32 with numpy at full 8/16-bit
      precision, relative colorimetric, out-of-gamut colours clipped (LittleCMS gives the same within
      one 8-bit level); LUT-based profiles go through ``PIL.ImageCms`` with its default perceptual
      intent (8-bit sources; 16-bit sources with a LUT profile are left unconverted with a warning and
      keep their profile).
    - CMYK with a CMYK profile: converted through ``ImageCms``; the output (RGB) embeds sRGB.
    - A profile that is sRGB already (same primaries and curves, or named sRGB): pixels untouched, the
      original profile bytes are embedded in the output.
    - Grayscale with a gray profile: pixels untouched (a gray profile is only a tone curve; a gray
      output cannot carry an RGB sRGB profile), the original profile is embedded in the output.
    - No profile: the pixels are taken as sRGB and the output has no profile. PNG gAMA/cHRM/sRGB
      chunks are ignored.
    - A broken profile, or one for another colour space than the pixels: ignored with a
      ``warnings.warn``; pixels are taken as sRGB and the output has no profile.

    PIL images given to :func:`from_array` follow the same policy and orientation rule; arrays are
    taken as upright sRGB. ``DecodedImage.icc_profile`` is always the profile to embed in the output. The writer drops it
    when it does not fit the written colour space (a gray profile in a WebP, which is always RGB).

Writing
    ``fmt="same"`` keeps the source's format when it can be written faithfully (JPEG, PNG, WebP,
    TIFF), else PNG (GIF, BMP, PSD, ICO, JPEG 2000, ... and arrays). Alpha is kept in PNG, WebP and
    TIFF; a JPEG output of an image with alpha is composited on white. Gray sources give gray outputs
    (the model's RGB result converted with the ITU-R 601 luma weights, as Pillow's ``convert("L")``;
    WebP has no gray mode and stores it as RGB). 16-bit sources give 16-bit PNG and TIFF outputs;
    JPEG and WebP are 8-bit. 16-bit RGB(A) PNGs are encoded by OpenCV and the ICC (iCCP) and EXIF
    (eXIf) chunks are spliced in; 16-bit gray+alpha PNGs use a small built-in encoder (OpenCV cannot
    write two channels). 8-bit and gray TIFF outputs are deflate-compressed, or uncompressed when they
    carry EXIF (Pillow can write the EXIF sub-IFD only without compression). WebP at ``quality=100`` is lossless.
    16-bit RGB(A) TIFFs use a small built-in writer (:func:`encode_tiff16`: deflate + predictor, ICC
    and EXIF with its sub-IFDs). Known losses: 16-bit gray+alpha TIFF outputs are stored as RGBA (few
    readers take two 16-bit samples), without the gray profile; EXIF that Pillow cannot re-serialise
    (or over JPEG's 64 KB) is dropped with a warning; a TIFF source gives its descriptive tags
    (make, model, date, artist, copyright, software) and its EXIF / GPS sub-IFDs, not its layout tags;
    the colour-key transparency (tRNS) of 16-bit RGB PNGs is not read; XMP and IPTC are not copied.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate._atomic import atomic_path
from imgxlate.errors import ImageReadError, ImageWriteError, UsageError, did_you_mean

if TYPE_CHECKING:
    from PIL import Image as PILImage

# 16k x 16k: far above any camera (a 100 MP medium-format frame is 1e8), far below what fits in memory
# as float32 (250e6 px x 3 x 4 B = 3 GB for rgb alone).
DEFAULT_MAX_PIXELS: int = 250_000_000
OUTPUT_FORMATS = ("same", "png", "jpg", "webp", "tiff")
_FORMAT_ALIASES = {"jpeg": "jpg", "tif": "tiff"}

# Pillow formats we write, and the suffix each gets when a new one is needed.
_WRITABLE = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
_FMT_TO_PIL = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
_FMT_SUFFIX = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
_SUFFIX_TO_PIL = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
}  # fmt: skip
# Largest width/height each format's encoder accepts (WebP: 14-bit sizes; JPEG: 16-bit).
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}
_ORIENTATION_TAG = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"
# ITU-R 601-2 luma, the weights of Pillow's convert("L"); they sum to 1 so gray in -> same gray out.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_pil_lock = threading.Lock()


_HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
_plugins: dict[str, bool] = {}


def _pil() -> Any:
    from PIL import Image

    if not _plugins:
        # HEIC/HEIF (iPhone photos) when the optional pillow-heif package is installed.
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _plugins["heif"] = True
        except ImportError:
            _plugins["heif"] = False
        Image.init()
    return Image


def _stub_formats(Image: Any) -> set[str]:
    """Formats Pillow registers but cannot decode here (identify-only or handler-less stubs)."""
    from PIL import ImageFile

    stubs = {"EPS", "MPEG"}  # EPS needs Ghostscript; MPEG is identified, never decoded
    for fmt, (factory, _accept) in Image.OPEN.items():
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            stubs.add(fmt)
    return stubs


def _read_suffixes() -> frozenset[str]:
    Image = _pil()
    stubs = _stub_formats(Image)
    readable = {
        ext.lower()
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in stubs
    }
    # HEIC is listed even without pillow-heif so that folder walks report such files with a clear
    # reason ("install pillow-heif") instead of skipping them silently.
    return frozenset(readable | _HEIF_SUFFIXES)


READ_SUFFIXES: frozenset[str] = _read_suffixes()


@dataclass
class DecodedImage:
    """A decoded image in the model's terms plus what the writer needs to give the result back.

    ``icc_profile`` is the profile to embed in the output (see the module's ICC policy); ``exif`` is
    ``b"Exif\\0\\0"`` + the TIFF-structured EXIF with Orientation reset to 1. ``source`` is the file it
    was read from (the writer refuses to overwrite it); ``array_dtype`` the dtype given to
    :func:`from_array` when it was a float array (so :func:`to_array` gives floats back).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    source: Path | None = None
    array_dtype: str | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


# --------------------------------------------------------------------------------------------------
# Pure array helpers


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Return ``arr`` (H, W, ...) stored with EXIF Orientation ``orientation`` as seen upright.

    EXIF says where the stored row 0 / column 0 belong: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
    6 stored row 0 is the right edge (rotate 90 clockwise), 7 transverse, 8 rotate 90 counter-clockwise.
    """
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(arr, -1)
    elif orientation == 7:
        out = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        out = np.rot90(arr, 1)
    else:  # 1, missing or invalid: as stored
        return arr
    return np.ascontiguousarray(out)


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


def reset_exif_orientation(exif: bytes, *, drop_thumbnail: bool = True) -> bytes:
    """Return EXIF bytes (``Exif\\0\\0`` + TIFF structure) with IFD0's Orientation set to 1.

    Patches values in place so everything else (maker notes and their offsets) stays byte-exact.
    ``drop_thumbnail`` unlinks IFD1, the embedded preview: file browsers show it instead of the
    pixels, and it would still show the untranslated image (its bytes stay, unreferenced).
    Raises ValueError when the bytes are not a TIFF structure.
    """
    body = exif.removeprefix(_EXIF_HEADER)
    if len(body) < 8 or body[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError("not a TIFF/EXIF structure")
    e = "<" if body[:2] == b"II" else ">"
    (ifd0,) = struct.unpack(e + "I", body[4:8])
    if ifd0 + 2 > len(body):
        raise ValueError("IFD0 outside the EXIF block")
    (count,) = struct.unpack(e + "H", body[ifd0 : ifd0 + 2])
    out = bytearray(body)
    for k in range(count):
        pos = ifd0 + 2 + 12 * k
        if pos + 12 > len(body):
            raise ValueError("IFD0 entry outside the EXIF block")
        tag, typ, n = struct.unpack(e + "HHI", body[pos : pos + 8])
        if tag == _ORIENTATION_TAG and n == 1 and typ == 3:  # SHORT: inline, in the first 2 value bytes
            out[pos + 8 : pos + 10] = struct.pack(e + "H", 1)
        elif tag == _ORIENTATION_TAG and n == 1 and typ == 4:  # LONG, as a few writers store it
            out[pos + 8 : pos + 12] = struct.pack(e + "I", 1)
    next_at = ifd0 + 2 + 12 * count  # offset of IFD1 (the thumbnail's IFD), 0 when there is none
    if drop_thumbnail and next_at + 4 <= len(out):
        out[next_at : next_at + 4] = b"\0\0\0\0"
    return _EXIF_HEADER + bytes(out)


# --------------------------------------------------------------------------------------------------
# ICC: a matrix/TRC reader (numpy, full precision) and ImageCms for the rest


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

        _srgb_cache["bytes"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
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


# --------------------------------------------------------------------------------------------------
# Reading


def _read_error(path: Path | str, why: str) -> ImageReadError:
    return ImageReadError(f"cannot read image {str(path)!r}: {why}")


def _check_pixels(path: Path | str, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise _read_error(path, f"it says it is {width}x{height} pixels; the file is corrupt")
    if max_pixels is not None and width * height > max_pixels:
        raise _read_error(
            path,
            f"it is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,} "
            "(a guard against decompression bombs); if you trust the file, raise the limit with "
            "--max-pixels (max_pixels=... in Python, None for no limit)",
        )


def _png_ihdr(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, from its IHDR chunk."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26:
        return data[24], data[25]
    return None


def _exif_of(im: PILImage.Image) -> bytes | None:
    """The source's EXIF with Orientation reset to 1, or None."""
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        try:
            return reset_exif_orientation(raw)
        except ValueError:
            pass
        try:  # not plain TIFF structure: let Pillow re-serialise it
            exif = im.getexif()
            exif[_ORIENTATION_TAG] = 1
            out = exif.tobytes()
            return out if out.startswith(_EXIF_HEADER) else _EXIF_HEADER + out
        except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
            warnings.warn("the image's EXIF data is unreadable; it is not copied to the output", stacklevel=3)
            return None
    if im.format == "TIFF":
        # A TIFF's EXIF is its own IFD0, mixed with structural tags (strip offsets, sizes) that must not
        # travel: keep the descriptive ones and the Exif / GPS sub-IFDs.
        try:
            src = im.getexif()
            Image = _pil()
            exif = Image.Exif()
            keep = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
            for tag in keep:
                if tag in src:
                    exif[tag] = src[tag]
            for tag in (0x8769, 0x8825):
                if tag in src:
                    sub = src.get_ifd(tag)
                    if sub:
                        exif[tag] = sub
            if not len(exif):
                return None
            out = exif.tobytes()
            return out if out.startswith(_EXIF_HEADER) else _EXIF_HEADER + out
        except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
            return None
    return None


def _pil_to_arrays(im: PILImage.Image, path: Path | str) -> tuple[np.ndarray, np.ndarray | None, int, bool]:
    """A loaded PIL image of any mode -> (samples (H, W, 3) or (H, W), alpha or None, bit depth, gray).

    Samples keep their integer dtype (uint8 / uint16) so ICC curves can be applied as lookup tables.
    """
    mode = im.mode
    has_trns = "transparency" in im.info
    if mode in ("1", "L") and not has_trns:
        return np.asarray(im.convert("L")), None, 8, True
    if mode in ("1", "L", "LA", "La"):
        la = np.asarray(im.convert("LA"))
        return la[..., 0], la[..., 1], 8, True
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        elif mode == "I":
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return arr, None, 16, True
    if mode in ("P", "PA"):
        pal = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        counts = np.bincount(np.asarray(im, dtype=np.uint8).ravel(), minlength=256)
        used = np.nonzero(counts[: len(pal)])[0]
        gray = bool(pal.size) and bool(
            np.all(pal[used, 0] == pal[used, 1]) and np.all(pal[used, 1] == pal[used, 2])
        )
        if mode == "PA" or has_trns:
            rgba = np.asarray(im.convert("RGBA"))
            rgb, alpha = rgba[..., :3], rgba[..., 3]
        else:
            rgb, alpha = np.asarray(im.convert("RGB")), None
        if gray:
            return np.ascontiguousarray(rgb[..., 0]), alpha, 8, True
        return rgb, alpha, 8, False
    if mode in ("RGBA", "RGBa") or (mode == "RGB" and has_trns):
        rgba = np.asarray(im.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3], 8, False
    if mode in ("RGB", "RGBX", "YCbCr", "HSV", "CMYK"):
        return np.asarray(im.convert("RGB")), None, 8, False
    if mode == "LAB":
        from PIL import ImageCms

        lab = ImageCms.createProfile("LAB")
        rgb_im = ImageCms.applyTransform(
            im, ImageCms.buildTransform(lab, ImageCms.createProfile("sRGB"), "LAB", "RGB")
        )
        return np.asarray(rgb_im), None, 8, False
    try:
        return np.asarray(im.convert("RGB")), None, 8, False
    except Exception as exc:
        raise _read_error(
            path,
            f"its pixel format (Pillow mode {mode!r}) is not supported; convert it to an 8- or "
            "16-bit RGB PNG or TIFF first",
        ) from exc


def _fix_cmyk_polarity(im: PILImage.Image) -> PILImage.Image:
    """Pillow reads every CMYK JPEG with Adobe's inverted polarity; undo that when there is no Adobe marker."""
    if im.mode == "CMYK" and im.format in ("JPEG", "MPO") and "adobe" not in im.info:
        fixed = im.point(lambda v: 255 - v)
        fixed.info = dict(im.info)
        fixed.format = im.format  # type: ignore[misc]
        return fixed
    return im


def _cv2_decode(data: bytes, path: Path | str) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _read_error(path, "the file is truncated or corrupt (the decoder gave up)")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return np.ascontiguousarray(arr)


def _split_cv2(arr: np.ndarray, gray_source: bool) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """OpenCV's (H, W), (H, W, 2|3|4) -> (samples, alpha, grayscale)."""
    if arr.ndim == 2:
        return arr, None, True
    if arr.shape[2] == 2:
        return arr[..., 0], arr[..., 1], True
    color, alpha = arr[..., :3], (arr[..., 3] if arr.shape[2] == 4 else None)
    if gray_source:  # gray (+alpha) PNG that OpenCV expanded to BGR(A)
        return np.ascontiguousarray(color[..., 0]), alpha, True
    return np.ascontiguousarray(color), alpha, False


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
        warnings.warn(
            f"ignoring the image's broken ICC profile ({exc}); colours are taken as sRGB", stacklevel=4
        )
        return None, None
    space = _icc_space(icc)
    want = b"GRAY" if grayscale else (b"CMYK" if cmyk else b"RGB ")
    if space != want:
        warnings.warn(
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
            warnings.warn(
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
        warnings.warn(
            f"cannot convert colours with the ICC profile {desc!r} ({exc}); taken as sRGB", stacklevel=4
        )
        return None, None
    assert out is not None
    return np.asarray(out).astype(np.float32) / np.float32(255.0), srgb_profile()


@contextlib.contextmanager
def _pillow_unlimited() -> Iterator[None]:
    """Switch off Pillow's own decompression-bomb limit while held: ``max_pixels`` is the limit.

    Pillow reads its limit from a module global (warning above it, refusing above twice it), in open()
    and, for some formats (TIFF tiles, GIF frames), in load(). The lock keeps threads from seeing each
    other's temporary setting; the user's value is restored afterwards.
    """
    Image = _pil()
    with _pil_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_pil(data: bytes, path: Path | str) -> PILImage.Image:
    from PIL import UnidentifiedImageError

    Image = _pil()
    try:
        with _pillow_unlimited():
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise
    except Exception as exc:
        raise _read_error(path, f"the file is corrupt ({exc})") from exc


def _load_pil(im: PILImage.Image, path: Path | str) -> None:
    """Decode frame 0; truncation and corruption become ImageReadError."""
    Image = _pil()
    limit = Image.MAX_IMAGE_PIXELS
    # Only images above Pillow's own limit are decoded under the lock (rare, and memory-heavy anyway).
    huge = limit is not None and im.size[0] * im.size[1] > limit
    try:
        with _pillow_unlimited() if huge else contextlib.nullcontext():
            im.seek(0)
            im.load()
    except Exception as exc:
        raise _read_error(path, f"the file is truncated or corrupt ({exc})") from exc


_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def _magic_format(data: bytes) -> str:
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return ""


def _not_an_image(path: Path | str, data: bytes) -> ImageReadError:
    head = data[:16]
    suffix = Path(str(path)).suffix.lower()
    hint = f" even though its name ends in {suffix}" if suffix else ""
    known = _magic_format(data)
    if known:
        return _read_error(
            path, f"it is a damaged {known} file (truncated or corrupt); re-export or re-download it"
        )
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        what = (
            "it is a HEIC/HEIF photo; install the pillow-heif package (pip install pillow-heif) to read "
            "it, or convert it to JPEG first"
        )
    elif data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        what = (
            "it is an AVIF image and this Pillow build cannot read AVIF; upgrade Pillow or convert it to PNG"
        )
    elif data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3":
        what = "it looks like a video (MP4/MOV/MKV), not an image; convert videos with the video command"
    elif head.lstrip()[:1] in (b"<", b"{") or all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        what = f"it is a text file, not an image{hint}"
    else:
        what = f"it is not an image format imgxlate can read{hint} (it starts with {head!r})"
    return _read_error(path, what + "; supported: JPEG, PNG, WebP, TIFF, BMP, GIF and other Pillow formats")


def _decode(data: bytes, path: Path | str, max_pixels: int | None) -> DecodedImage:
    from PIL import UnidentifiedImageError

    if not data:
        raise _read_error(
            path, "the file is empty (0 bytes); it was probably not completely copied or downloaded"
        )
    try:
        im = _open_pil(data, path)
    except UnidentifiedImageError:
        im = None
    if im is None:
        # Pillow does not know it; OpenCV reads a few more: float TIFF (as OpenCV writes it), PFM, HDR.
        # Only those are tried, since here nothing checked the pixel count before decoding.
        if not (data[:4] in (b"II*\x00", b"MM\x00*") or data[:2] in (b"PF", b"Pf") or data[:2] == b"#?"):
            raise _not_an_image(path, data)
        try:
            arr = _cv2_decode(data, path)
        except ImageReadError:
            raise _not_an_image(path, data) from None
        _check_pixels(path, arr.shape[1], arr.shape[0], max_pixels)
        samples, alpha, gray = _split_cv2(arr, False)
        rgb, depth = _to_unit(samples)
        alpha_f = _to_unit(alpha)[0] if alpha is not None else None
        fmt = "TIFF" if data[:4] in (b"II*\x00", b"MM\x00*") else ""
        return _finish(rgb, alpha_f, depth, gray, fmt, None, None, path)

    width, height = im.size
    _check_pixels(path, width, height, max_pixels)
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    # 16-bit RGB(A) / gray+alpha PNG and 16-bit or float RGB(A) TIFF: Pillow would cut them to 8 bits,
    # so OpenCV decodes them (and reports truncation) and Pillow only gives the metadata.
    use_cv2 = False
    gray_source = False
    orientation_done = False
    ihdr = _png_ihdr(data)
    if fmt == "PNG" and ihdr is not None and ihdr[0] == 16 and ihdr[1] in (2, 4, 6):
        use_cv2, gray_source = True, ihdr[1] == 4
    elif fmt == "TIFF" and im.mode in ("RGB", "RGBA", "RGBX") and hasattr(im, "tag_v2"):
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        use_cv2 = max(bits) > 8
        orientation_done = use_cv2  # OpenCV's TIFF decoder applies the Orientation tag itself
    if not use_cv2:
        _load_pil(im, path)
    icc = im.info.get("icc_profile") or None
    im = _fix_cmyk_polarity(im)
    exif = _exif_of(im)
    try:
        orientation = 1 if orientation_done else int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
        orientation = 1
    if use_cv2:
        samples, alpha, grayscale = _split_cv2(_cv2_decode(data, path), gray_source)
        cmyk = False
        pil_rgb = None
    else:
        samples, alpha, _, grayscale = _pil_to_arrays(im, path)
        cmyk = im.mode == "CMYK"
        pil_rgb = None
        if icc and not grayscale:
            pil_rgb = im if cmyk else (im if im.mode == "RGB" else im.convert("RGB"))
    converted, out_icc = _apply_icc(samples, grayscale, icc, pil_rgb, cmyk)
    if converted is not None:
        rgb, depth = converted, (16 if samples.dtype != np.uint8 else 8)
    else:
        rgb, depth = _to_unit(samples)
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    rgb = apply_orientation(rgb, orientation)
    alpha_f = apply_orientation(alpha_f, orientation) if alpha_f is not None else None
    return _finish(rgb, alpha_f, depth, grayscale, fmt, out_icc, exif, path)


def _finish(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    depth: int,
    grayscale: bool,
    fmt: str,
    icc: bytes | None,
    exif: bytes | None,
    path: Path | str | None,
) -> DecodedImage:
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    source = Path(path) if isinstance(path, (str, os.PathLike)) else None
    return DecodedImage(rgb, alpha, depth, grayscale, fmt, icc, exif, source)


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read an image file of any kind users have into a :class:`DecodedImage` (sRGB, upright).

    Raises :class:`ImageReadError` naming the file and what to do: missing, empty, truncated, not an
    image, more than ``max_pixels`` pixels (``None``: no limit), unsupported pixel format.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise _read_error(p, "no such file; check the path") from None
    except IsADirectoryError:
        raise _read_error(p, "it is a folder, not a file") from None
    except PermissionError:
        raise _read_error(p, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise _read_error(p, exc.strerror or str(exc)) from exc
    return _decode(data, p, max_pixels)


def from_array(image: np.ndarray | PILImage.Image) -> DecodedImage:
    """Python API input: a PIL image (any mode) or an (H, W), (H, W, 1|2|3|4) array.

    Arrays: uint8, uint16, bool, other integers within 0..65535, or float in [0, 1]; channels are
    gray, gray+alpha, RGB, RGBA. No ICC conversion for arrays (taken as sRGB); PIL images follow the
    module's ICC policy and EXIF orientation like files.
    """
    Image = _pil()
    if isinstance(image, Image.Image):
        data = image
        try:
            data.load()
        except Exception as exc:
            raise _read_error("<PIL image>", f"it cannot be loaded ({exc})") from exc
        return _decode_pil_object(data)
    arr = np.asarray(image)
    where = "<array>"
    if arr.size == 0 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise _read_error(
            where,
            f"shape {arr.shape} is not an image; pass (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)",
        )
    kind = arr.dtype
    float_in = np.issubdtype(kind, np.floating)
    if float_in:
        if not np.all(np.isfinite(arr)):
            raise _read_error(where, "it contains NaN or infinity")
    elif np.issubdtype(kind, np.integer) and kind not in (np.uint8, np.uint16):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise _read_error(where, f"integer values span {lo}..{hi}; pass uint8, uint16 or float in [0, 1]")
        arr = arr.astype(np.uint8 if hi <= 255 else np.uint16)
    elif kind != np.bool_ and kind not in (np.uint8, np.uint16):
        raise _read_error(where, f"dtype {kind} is not supported; pass uint8, uint16 or float in [0, 1]")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        samples, alpha, gray = arr, None, True
    elif arr.shape[2] == 2:
        samples, alpha, gray = arr[..., 0], arr[..., 1], True
    else:
        samples, alpha, gray = arr[..., :3], (arr[..., 3] if arr.shape[2] == 4 else None), False
    rgb, depth = _to_unit(samples)
    if kind == np.bool_ or (not float_in and arr.dtype == np.uint8):
        depth = 8
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    out = _finish(rgb, alpha_f, depth, gray, "", None, None, None)
    out.array_dtype = kind.name if float_in else None
    return out


def _decode_pil_object(im: PILImage.Image) -> DecodedImage:
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    im = _fix_cmyk_polarity(im)
    samples, alpha, _, grayscale = _pil_to_arrays(im, "<PIL image>")
    icc = im.info.get("icc_profile") or None
    cmyk = im.mode == "CMYK"
    pil_rgb = (im if cmyk or im.mode == "RGB" else im.convert("RGB")) if icc and not grayscale else None
    converted, out_icc = _apply_icc(samples, grayscale, icc, pil_rgb, cmyk)
    rgb, depth = (converted, 8) if converted is not None else _to_unit(samples)
    if samples.dtype != np.uint8:
        depth = 16
    try:
        orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
        orientation = 1
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    rgb = apply_orientation(rgb, orientation)
    alpha_f = apply_orientation(alpha_f, orientation) if alpha_f is not None else None
    return _finish(rgb, alpha_f, depth, grayscale, fmt, out_icc, _exif_of(im), None)


# --------------------------------------------------------------------------------------------------
# Writing


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageWriteError(
            f"the result to write has shape {rgb.shape}; expected (H, W, 3) float in [0, 1]"
        )
    return rgb.astype(np.float32, copy=False)


def _fit_alpha(alpha: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """The source alpha at the result's size (resized only when the caller changed the size)."""
    if alpha is None or alpha.shape == (height, width):
        return alpha
    import cv2

    shrink = width * height < alpha.shape[0] * alpha.shape[1]
    return cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_array(rgb: np.ndarray, like: DecodedImage) -> np.ndarray:
    """Python API output: the model's (H, W, 3) float [0, 1] result back in the input's kind.

    uint8 or uint16 by ``like.bit_depth`` (float32 when :func:`from_array` got floats); (H, W) gray when
    the input was gray; the input's alpha re-attached as the last channel ((H, W, 2) or (H, W, 4)).
    """
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    alpha = _fit_alpha(like.alpha, h, w)
    color = luminance(rgb) if like.grayscale else rgb
    if alpha is not None:
        color = np.concatenate([color[..., None] if color.ndim == 2 else color, alpha[..., None]], axis=-1)
    if like.array_dtype is not None:
        return _unit_clip(color).astype(like.array_dtype)
    return quantize(color, like.bit_depth)


def normalize_format(fmt: str) -> str:
    """'PNG', 'jpeg', 'tif' -> 'png', 'jpg', 'tiff'; UsageError for anything not in OUTPUT_FORMATS."""
    key = fmt.strip().lower().lstrip(".")
    key = _FORMAT_ALIASES.get(key, key)
    if key not in OUTPUT_FORMATS:
        raise UsageError(
            f"unknown output format {fmt!r}{did_you_mean(key, OUTPUT_FORMATS)}; choose one of "
            + ", ".join(OUTPUT_FORMATS)
        )
    return key


def output_suffix(source_suffix: str, source_format: str | None, fmt: str, *, bit_depth: int = 8) -> str:
    """The suffix of the output file: ``fmt``'s, or for ``"same"`` the source's when it can be written.

    ``"same"`` keeps ``source_suffix`` (as spelled) for JPEG, PNG, WebP and TIFF sources whose suffix
    matches their format, the format's usual suffix when the name lies (a PNG called .jpg), and ".png"
    for everything else (GIF, BMP, PSD, arrays, ...) and for 16-bit sources in an 8-bit-only format.
    ``source_format=None`` (planning before decoding): the format is taken from the suffix.
    """
    key = normalize_format(fmt)
    if key != "same":
        return _FMT_SUFFIX[key]
    if source_format is None:
        source_format = _SUFFIX_TO_PIL.get(source_suffix.lower(), "")
    pil = "JPEG" if source_format.upper() == "MPO" else source_format.upper()
    if pil not in _WRITABLE or (bit_depth > 8 and pil in ("JPEG", "WEBP")):
        return ".png"
    if _SUFFIX_TO_PIL.get(source_suffix.lower()) == pil:
        return source_suffix
    return _WRITABLE[pil]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png_add_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Splice iCCP and eXIf chunks right after IHDR (both must precede IDAT)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER))
    end_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR body, CRC
    return png[:end_ihdr] + extra + png[end_ihdr:]


def encode_png16(samples: np.ndarray) -> bytes:
    """(H, W) / (H, W, 2|3|4) uint16 -> 16-bit PNG bytes (gray, gray+alpha, RGB, RGBA).

    Rows use the PNG "Sub" filter (byte minus the same byte of the previous pixel), which is one
    vectorised subtraction and compresses smooth images well.
    """
    arr = samples[..., None] if samples.ndim == 2 else samples
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = arr.astype(">u2").reshape(h, w * c).view(np.uint8)  # (H, W*C*2) big-endian bytes
    bpp = 2 * c
    filt = raw.copy()
    filt[:, bpp:] = raw[:, bpp:] - raw[:, :-bpp]  # uint8 wraps mod 256, as the filter defines
    rows = np.concatenate([np.ones((h, 1), dtype=np.uint8), filt], axis=1)  # filter type 1 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 3))
        + _png_chunk(b"IEND", b"")
    )


# TIFF tags that describe the file's own layout: never copied from a source's EXIF into a TIFF's IFD0.
_TIFF_LAYOUT_TAGS = frozenset(
    {
        256,
        257,
        258,
        259,
        262,
        273,
        277,
        278,
        279,
        284,
        317,
        338,
        339,
        322,
        323,
        324,
        325,
        34675,
        0x0201,
        0x0202,
    }
)


def encode_tiff16(samples: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """(H, W, 3|4) uint16 -> 16-bit RGB(A) TIFF bytes with the ICC profile and EXIF embedded.

    One deflate-compressed strip with the horizontal-differencing predictor (TIFF tag 317 = 2: each
    sample minus its left neighbour, mod 2^16), little-endian; alpha is unassociated (ExtraSamples 2).
    The IFD is serialised by Pillow, which also writes the EXIF and GPS sub-IFDs.
    """
    from PIL import TiffImagePlugin, TiffTags

    h, w, c = samples.shape
    diff = samples.astype("<u2")
    diff[:, 1:] = samples[:, 1:] - samples[:, :-1]  # uint16 arithmetic wraps, as the predictor defines
    strip = zlib.compress(diff.tobytes(), 3)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        try:
            src = _pil().Exif()
            src.load(exif)
            for tag, value in src.items():
                if (
                    tag not in _TIFF_LAYOUT_TAGS
                    and tag not in (0x8769, 0x8825)
                    and not isinstance(value, dict)
                ):
                    ifd[tag] = value
            for tag in (0x8769, 0x8825):  # Exif and GPS sub-IFDs
                sub = {k: v for k, v in src.get_ifd(tag).items() if k != 0xA005}  # no interop pointer
                if sub:
                    ifd.tagtype[tag] = TiffTags.LONG
                    ifd[tag] = sub
        except Exception as exc:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
            warnings.warn(
                f"the EXIF data could not be written to the TIFF file ({exc}); it is left out", stacklevel=3
            )
            ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    ifd[256], ifd[257], ifd[258] = w, h, (16,) * c
    ifd[259] = 8  # Adobe deflate
    ifd[262] = 2  # RGB
    ifd[273] = 0  # strip offset: Pillow adds the end of the IFD and its data, where the strip goes
    ifd[277], ifd[278], ifd[279] = c, h, len(strip)
    ifd[284] = 1  # chunky
    ifd[317] = 2  # horizontal differencing
    if c == 4:
        ifd[338] = (2,)  # unassociated alpha
    if icc:
        ifd[34675] = icc
    return b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + strip


def _encode_cv2(samples: np.ndarray, ext: str) -> bytes:
    import cv2

    arr = samples
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    if not ok:
        raise ImageWriteError(f"OpenCV could not encode a {arr.shape} {arr.dtype} image as {ext}")
    return buf.tobytes()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:  # writable: Windows refuses to flush a read-only handle
        os.fsync(fh.fileno())


def _write_bytes(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _pil_save(im: PILImage.Image, tmp: Path, pil_fmt: str, options: dict[str, Any]) -> None:
    """Save with Pillow; EXIF that the format's writer rejects is left out with a warning."""
    try:
        im.save(tmp, format=pil_fmt, **options)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, struct.error) as exc:
        if "exif" not in options or isinstance(exc, OSError) and exc.errno is not None:
            raise
        warnings.warn(
            f"the EXIF data could not be written to the {pil_fmt} file ({exc}); it is left out", stacklevel=4
        )
        im.save(tmp, format=pil_fmt, **{k: v for k, v in options.items() if k != "exif"})


def write_image(
    path: str | os.PathLike[str], rgb: np.ndarray, like: DecodedImage, *, fmt: str = "same", quality: int = 95
) -> Path:
    """Write the model's result ``rgb`` ((H, W, 3) float32 [0, 1]) to ``path`` atomically, in ``like``'s kind.

    The format comes from ``path``'s suffix (the caller picked it with :func:`output_suffix`); ``fmt``
    is used only when the suffix names no format. Keeps alpha (PNG, WebP, TIFF; JPEG: composited on
    white), gray, 16 bits (PNG, TIFF), ICC and EXIF as the module docstring says. ``quality`` (1-100)
    is JPEG / WebP quality; WebP at 100 is lossless. Returns the path written. Never overwrites
    ``like.source``.
    """
    target = Path(path)
    if not 1 <= int(quality) <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    pil_fmt = _SUFFIX_TO_PIL.get(target.suffix.lower())
    if pil_fmt is None:
        key = normalize_format(fmt)
        if key == "same":
            raise ImageWriteError(
                f"cannot write {str(target)!r}: imgxlate writes .png, .jpg, .webp and .tif files, not "
                f"{target.suffix or 'files without a suffix'}; choose --format png (or jpg, webp, tiff)"
            )
        pil_fmt = _FMT_TO_PIL[key]
    if like.source is not None and target.exists():
        try:
            if os.path.samefile(target, like.source):
                raise ImageWriteError(
                    f"refusing to write over the input image {str(target)!r}; choose another output folder "
                    "or suffix"
                )
        except OSError:
            pass
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    limit = _MAX_SIDE.get(pil_fmt)
    if limit is not None and max(h, w) > limit:
        raise ImageWriteError(
            f"cannot write {str(target)!r}: {pil_fmt} images can be at most {limit} pixels on a side and "
            f"this one is {w}x{h}; choose --format png or tiff"
        )
    alpha = _fit_alpha(like.alpha, h, w)
    if pil_fmt == "JPEG" and alpha is not None:
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])  # composite on white
        alpha = None
    gray = like.grayscale and pil_fmt != "WEBP"
    color = luminance(rgb) if gray else rgb
    depth = 16 if like.bit_depth == 16 and pil_fmt in ("PNG", "TIFF") else 8
    samples = (
        color
        if alpha is None
        else np.concatenate([color[..., None] if color.ndim == 2 else color, alpha[..., None]], axis=-1)
    )
    q = quantize(samples, depth)
    out_space = b"GRAY" if gray else b"RGB "
    icc = like.icc_profile if _icc_space(like.icc_profile) == out_space else None
    exif = like.exif

    try:
        with atomic_path(target) as tmp:
            if depth == 16 and (pil_fmt == "PNG" or q.ndim == 3):
                if pil_fmt == "PNG":
                    raw = encode_png16(q) if q.ndim == 3 and q.shape[2] == 2 else _encode_cv2(q, ".png")
                    _write_bytes(tmp, _png_add_metadata(raw, icc, exif))
                else:
                    # 16-bit gray+alpha TIFF is stored as RGBA: few readers (OpenCV, Pillow) take 2 samples.
                    rgba = np.concatenate([q[..., :1]] * 3 + [q[..., 1:]], axis=2) if q.shape[2] == 2 else q
                    _write_bytes(tmp, encode_tiff16(rgba, icc if out_space == b"RGB " else None, exif))
            else:
                # uint8 (H, W) -> L, (H, W, 2) -> LA, 3 -> RGB, 4 -> RGBA; uint16 (H, W) -> I;16
                im = _pil().fromarray(q)
                options: dict[str, Any] = {}
                if icc:
                    options["icc_profile"] = icc
                if exif:
                    options["exif"] = exif
                if pil_fmt == "JPEG":
                    options.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
                elif pil_fmt == "WEBP":
                    # exact: keep the colour under fully transparent pixels (alpha round-trips with its RGB)
                    options.update(quality=int(quality), lossless=int(quality) == 100, exact=True, method=4)
                elif pil_fmt == "PNG":
                    # zlib level 3: ~40% faster than Pillow's default 6 for ~5% larger files (writes
                    # run beside inference and must keep up with a GPU).
                    options.update(compress_level=3)
                elif pil_fmt == "TIFF":
                    # Pillow's libtiff writer (needed for compression) cannot write the EXIF sub-IFD
                    # (camera settings, capture date); its own writer can, uncompressed only.
                    options.update(compression="raw" if exif else "tiff_adobe_deflate")
                _pil_save(im, tmp, pil_fmt, options)
                _fsync(tmp)  # the data is on disk before the rename makes it the result
    except ImageWriteError:
        raise
    except (ValueError, RuntimeError, TypeError, KeyError, struct.error) as exc:
        raise ImageWriteError(f"cannot write {str(target)!r}: the {pil_fmt} encoder failed ({exc})") from exc
    except OSError as exc:
        raise ImageWriteError(
            f"cannot write {str(target)!r}: {exc.strerror or exc}; check that the folder is writable and the "
            "disk has free space"
        ) from exc
    return target
