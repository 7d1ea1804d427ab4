"""Image formats: which suffixes can be read, which formats are written, and the output suffix.

``READ_SUFFIXES`` (what Pillow, plus pillow-heif when installed, can decode here), ``OUTPUT_FORMATS``
and :func:`normalize_format` (the ``--format`` values), :func:`output_suffix` (the suffix of an output
file for ``fmt="same"`` and the others) and the magic-byte table used to name a file's real format.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from imgxlate.errors import UsageError, did_you_mean
from imgxlate.imaging.raw import RAW_SUFFIXES

OUTPUT_FORMATS = ("same", "png", "jpg", "webp", "tiff")
_FORMAT_ALIASES = {"jpeg": "jpg", "tif": "tiff"}

# Pillow formats we write, and the suffix each gets when a new one is needed.
_WRITABLE = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
_FMT_TO_PIL = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
_FMT_SUFFIX = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
_SUFFIX_TO_PIL = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF",
}  # fmt: skip
# Largest width/height each format's encoder accepts (WebP: 14-bit sizes; JPEG: 16-bit).
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}


_HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
_JXL_SUFFIXES = frozenset({".jxl"})
# JPEG XL: a bare codestream, or the ISO BMFF container's signature box.
_JXL_MAGIC = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
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
        # JPEG XL when the optional pillow-jxl-plugin package is installed (importing it registers it).
        try:
            import pillow_jxl  # type: ignore[import-not-found]  # noqa: F401

            _plugins["jxl"] = True
        except ImportError:
            _plugins["jxl"] = False
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
    # HEIC, JPEG XL and camera RAW files are listed even without pillow-heif / pillow-jxl-plugin /
    # rawpy, so that folder walks report such files with a clear reason (what to install) instead of
    # skipping them silently.
    return frozenset(readable | _HEIF_SUFFIXES | _JXL_SUFFIXES | RAW_SUFFIXES)


READ_SUFFIXES: frozenset[str] = _read_suffixes()
# Suffixes that name an image, for output names (DSCF0001.MPO -> DSCF0001.jpg, while scan.2024.01 keeps
# its whole name): what walks read, and MPO, which Pillow opens with its JPEG plugin. A walk takes an MPO
# only when no JPEG of the same stem is beside it (3D and Fujifilm cameras write both; inputs._Walk._wanted_name).
NAMED_SUFFIXES: frozenset[str] = READ_SUFFIXES | {".mpo"}


_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def is_jxl(data: bytes) -> bool:
    """Do these first bytes start a JPEG XL file (codestream or container)?"""
    return data.startswith(_JXL_MAGIC)


def sniff_format(data: bytes) -> str:
    """The Pillow format name ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP") of a file from its first
    16 bytes, whatever its name says; "" for anything else."""
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return ""


def sniff_file(path: str | os.PathLike[str]) -> str:
    """:func:`sniff_format` of a file's first bytes; "" when it cannot be read."""
    try:
        # Non-blocking and regular files only: a FIFO would block the open, a device never ends.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return ""
    try:
        return sniff_format(os.read(fd, 16)) if stat.S_ISREG(os.fstat(fd).st_mode) else ""
    except OSError:
        return ""
    finally:
        os.close(fd)


# JPEG / WebP quality when none is asked for (--quality): visually lossless for photos and paintings.
DEFAULT_QUALITY = 95


def output_quality(quality: int | None, pil_fmt: str, lossless_source: bool) -> int:
    """The quality a file is written at: ``quality`` when one was asked for; else 100 (lossless) for a
    WebP written from a lossless WebP (a lossless file does not silently become a lossy one), else
    :data:`DEFAULT_QUALITY`."""
    if quality is not None:
        return int(quality)
    return 100 if pil_fmt == "WEBP" and lossless_source else DEFAULT_QUALITY


def webp_is_lossless(data: bytes | memoryview) -> bool:
    """Is this WebP file's (first) picture compressed losslessly? The RIFF container's chunks are
    walked (``RIFF size WEBP``, then fourcc + little-endian size + payload, padded to even): a simple
    lossless file is one ``VP8L`` chunk; an extended one (``VP8X``) holds ``VP8L`` or, lossy, ``VP8 ``
    (with ``ALPH`` when it has alpha); an animation's first ``ANMF`` frame holds one of them after its
    16-byte frame header. False for anything else (not a WebP, truncated)."""
    view = memoryview(data)
    if len(view) < 12 or view[:4] != b"RIFF" or view[8:12] != b"WEBP":
        return False
    pos, end = 12, len(view)
    while pos + 8 <= end:
        fourcc = bytes(view[pos : pos + 4])
        size = int.from_bytes(view[pos + 4 : pos + 8], "little")
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        if fourcc == b"ANMF":
            pos, end = pos + 8 + 16, min(end, pos + 8 + size)  # into the first frame's sub-chunks
            continue
        pos += 8 + size + (size & 1)
    return False


def encoder_options(pil_fmt: str, quality: int) -> dict[str, Any]:
    """Pillow's save options for ``pil_fmt`` at ``quality`` (1-100), for stills and animations alike."""
    if pil_fmt == "JPEG":
        return {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    if pil_fmt == "WEBP":
        # exact: keep the colour under fully transparent pixels (alpha round-trips with its RGB)
        return {"quality": int(quality), "lossless": int(quality) == 100, "exact": True, "method": 4}
    if pil_fmt == "PNG":
        # zlib level 3: ~40% faster than Pillow's default 6 for ~5% larger files (writes run beside
        # inference and must keep up with a GPU).
        return {"compress_level": 3}
    return {}


def is_animated_file(path: str | os.PathLike[str] | bytes) -> bool:
    """Does the file at ``path`` (or the file content ``path``) hold an animation (GIF, WebP or PNG
    with more than one frame)? False when it cannot be opened (decoding reports that)."""
    import io

    from imgxlate.imaging.animation import is_animated

    try:
        with _pil().open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
            return is_animated(im)
    except Exception:  # noqa: BLE001 - planning only: the decoder gives the real error
        return False


def normalize_format(fmt: str) -> str:
    """'PNG', 'jpeg', 'tif' -> 'png', 'jpg', 'tiff'; UsageError for anything not in OUTPUT_FORMATS."""
    key = fmt.strip().lower().lstrip(".")
    key = _FORMAT_ALIASES.get(key, key)
    if key not in OUTPUT_FORMATS:
        raise UsageError(
            f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
            + did_you_mean(key, OUTPUT_FORMATS)
        )
    return key


def output_suffix(
    source_suffix: str, source_format: str | None, fmt: str, *, bit_depth: int = 8, animated: bool = False
) -> str:
    """The suffix of the output file: ``fmt``'s, or for ``"same"`` the source's when it can be written.

    ``"same"`` keeps ``source_suffix`` (as spelled) for JPEG, PNG, WebP and TIFF sources whose suffix
    matches their format, and for an ``animated`` GIF; the format's usual suffix when the name lies (a
    PNG called .jpg), and ".png" for everything else (still GIF, BMP, PSD, camera RAW, arrays, ...) and
    for 16-bit sources in an 8-bit-only format.
    ``source_format=None`` (planning before decoding): the format is taken from the suffix.
    """
    key = normalize_format(fmt)
    if key != "same":
        return _FMT_SUFFIX[key]
    if source_suffix.lower() in RAW_SUFFIXES:  # a camera RAW (whatever its container): not writable
        return ".png"
    if source_format is None:
        source_format = _SUFFIX_TO_PIL.get(source_suffix.lower(), "")
    pil = "JPEG" if source_format.upper() == "MPO" else source_format.upper()
    if animated and pil == "GIF":
        return source_suffix if _SUFFIX_TO_PIL.get(source_suffix.lower()) == "GIF" else ".gif"
    if pil not in _WRITABLE or (bit_depth > 8 and pil in ("JPEG", "WEBP")):
        return ".png"
    if _SUFFIX_TO_PIL.get(source_suffix.lower()) == pil:
        return source_suffix
    return _WRITABLE[pil]
