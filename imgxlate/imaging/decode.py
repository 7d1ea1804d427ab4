"""Decoding: image files and in-memory images to :class:`DecodedImage` (sRGB pixels, upright).

:func:`read_image` (a path; refuses images over ``max_pixels`` from their header) and
:func:`read_rgb8` (8-bit sRGB for training and benchmarks). This is the one decoder: inference,
training and the benchmarks all read pixels through :func:`read_image`; in-memory images (the
Python API) go through the same policy in :mod:`imgxlate.imaging.arrays`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgxlate.errors import ImageReadError, brief
from imgxlate.extras import pip_install

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from imgxlate.imaging.animation import Animation
from imgxlate.imaging import raw
from imgxlate.imaging.color import (
    _apply_icc,
    _fix_cmyk_polarity,
    _to_unit,
    quantize,
    to_pixels,
    unit_float,
)
from imgxlate.imaging.exif import _ORIENTATION_TAG, _exif_of, _xmp_of, apply_orientation
from imgxlate.imaging.formats import _HEIF_BRANDS, _pil, _plugins, is_jxl, sniff_format, webp_is_lossless
from imgxlate.imaging.notices import image_warning

# 16k x 16k: far above any camera (a 100 MP medium-format frame is 1e8), far below what fits in memory
# as float32 (250e6 px x 3 x 4 B = 3 GB for rgb alone).
DEFAULT_MAX_PIXELS: int = 250_000_000


_pil_lock = threading.Lock()


@dataclass
class DecodedImage:
    """A decoded image in the model's terms plus what the writer needs to give the result back.

    ``pixels`` is (H, W, 3) sRGB: uint8 when the file held 8-bit samples that needed no colour
    conversion (the common photo: a quarter of the memory of floats), else float32 in [0, 1]; it may
    be read-only (it can share the decoder's buffer). ``rgb`` is the same as float32 in [0, 1], a new
    array on each access when ``pixels`` is uint8.
    ``icc_profile`` is the profile to embed in the output (see the module's ICC policy); ``exif`` is
    ``b"Exif\\0\\0"`` + the TIFF-structured EXIF with Orientation reset to 1; ``xmp`` the XMP packet,
    likewise upright (:func:`imgxlate.imaging.exif.upright_xmp`). ``source`` is the file it
    was read from (the writer refuses to overwrite it); ``array_dtype`` the dtype given to
    :func:`from_array` when it was a float array (so :func:`to_array` gives floats back).
    ``animation``: for an animated GIF, WebP or PNG, the frames after this one (this is the first),
    their durations and the loop count (:mod:`imgxlate.imaging.animation`); None for a still image.
    ``pages``: the pages of a multi-page TIFF after this one (the first), each decoded like a still
    image (they may differ in size and kind). ``pages_left_out``: pages of it that are not there
    (16-bit colour pages, which Pillow would cut to 8 bits, or a target format that holds one picture:
    :func:`imgxlate.imaging.encode.fit_to_target`); the result says so. ``lossless``: the file is a
    lossless WebP (:func:`imgxlate.imaging.formats.webp_is_lossless`).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    source: Path | None = None
    array_dtype: str | None = None
    animation: Animation | None = None
    pages: tuple[DecodedImage, ...] = ()
    pages_left_out: int = 0
    views_left_out: str = ""  # what of the file was not decoded besides pages (an MPO's other views): a partial note
    lossless: bool = False  # a lossless WebP: written as WebP again, it stays lossless by default
    xmp: bytes | None = None

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1] (a new array when ``pixels`` is uint8)."""
        return unit_float(self.pixels)

    @property
    def frames(self) -> list[DecodedImage]:
        """Every frame (an animation's) or page (a multi-page TIFF's), this one first: ``[self]`` for a
        still image."""
        return [self, *(self.animation.frames if self.animation is not None else ()), *self.pages]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


# What to do about a file cut short or damaged: where a camera, phone or download left it whole.
_COPY_AGAIN = "copy or download it again from where it came from"


def _read_error(path: Path | str, why: str) -> ImageReadError:
    return ImageReadError(f"cannot read image {str(path)!r}: {why}")


def empty_file_error(path: Path | str) -> ImageReadError:
    """What reading an empty file (0 bytes) says; the batch's planning refuses one with it too."""
    return _read_error(path, "the file is empty (0 bytes); it was probably not completely copied or downloaded")


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


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str:
    """'a named pipe (FIFO)', 'a character device', ... for a non-regular st_mode; '' for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    return next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")


def _read_regular_file(p: Path) -> bytes:
    """The whole content of ``p``, which must be a regular file (after symlinks): a FIFO would block
    forever and a device (/dev/zero) never ends, so they are refused before reading a byte."""
    try:
        # O_NONBLOCK: opening a FIFO for reading blocks until a writer appears; this open never waits.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise _read_error(p, "no such file; check the path") from None
    except IsADirectoryError:
        raise _read_error(p, "it is a folder, not a file") from None
    except PermissionError:
        raise _read_error(p, "permission denied; check the file's permissions") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _read_error(p, "it is a symlink loop (a link that points back to itself)") from None
        raise _read_error(p, exc.strerror or str(exc)) from exc
    try:
        kind = file_kind(os.fstat(fd).st_mode)
    except OSError:
        kind = ""
    if kind:
        os.close(fd)
        if kind == "a folder":
            raise _read_error(p, "it is a folder, not a file")
        raise _read_error(p, f"it is {kind}, not a regular file; imgxlate reads only regular files")
    with open(fd, "rb", closefd=True) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise _read_error(p, exc.strerror or str(exc)) from exc


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a TIFF (first image), PFM or Radiance HDR file, without
    decoding; None when the header does not say (then the file must not be decoded blindly)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if data[:3] in (b"PF\n", b"Pf\n", b"PF\r", b"Pf\r") or data[:3] in (b"PF ", b"Pf "):
        parts = data[:128].split()
        try:
            return int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return None
    if data[:2] == b"#?":
        end = data.find(b"\n\n", 0, 65536)
        if end < 0:
            return None
        line = data[end + 2 : end + 2 + 64].split(b"\n", 1)[0].split()
        if len(line) != 4:
            return None
        try:
            sizes = {line[0][1:2]: int(line[1]), line[2][1:2]: int(line[3])}
        except ValueError:
            return None
        if set(sizes) != {b"X", b"Y"}:
            return None
        return sizes[b"X"], sizes[b"Y"]
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    found = _tiff_tags(data)
    if found is None or 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


# TIFF tags read from the first image's directory: width, height, bits per sample, samples per pixel.
_TIFF_TAGS = (256, 257, 258, 277)


def _tiff_tags(data: bytes) -> dict[int, int] | None:
    """The first value of each of :data:`_TIFF_TAGS` present in the first image's directory (SHORT or
    LONG; a tag of another type is left out); None when the header is broken or the width or height is
    of another type."""
    order = "<" if data[:2] == b"II" else ">"
    found: dict[int, int] = {}
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
            if tag not in _TIFF_TAGS or n < 1:
                continue
            if kind not in (3, 4):  # SHORT, LONG: a size of another type is a broken header; skip others
                if tag in (256, 257):
                    return None
                continue
            size = 2 if kind == 3 else 4
            # n values: in the entry when they fit in its 4 bytes, else at the offset it holds
            at = entry + 8 if n * size <= 4 else struct.unpack_from(order + "I", data, entry + 8)[0]
            (found[tag],) = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, at)
    except struct.error:
        return None
    return found


def _say_what_opencv_dropped(data: bytes, arr: np.ndarray, path: Path | str) -> None:
    """A TIFF that only OpenCV reads (Pillow cannot: 16-bit gray with alpha, for one) can come back with
    fewer samples or bits than the file holds: say so on the file's result (an ``image`` note)."""
    tags = _tiff_tags(data) or {}
    have = 1 if arr.ndim == 2 else arr.shape[2]
    want, bits = tags.get(277, have), tags.get(258, arr.dtype.itemsize * 8)
    lost = []
    if want > have:
        lost.append(f"{want - have} of its {want} samples per pixel (alpha, or extra channels)")
    if bits > arr.dtype.itemsize * 8 and arr.dtype.kind in "ui":
        lost.append(f"its {bits}-bit depth (read as {arr.dtype.itemsize * 8}-bit)")
    if lost:
        image_warning(
            "this TIFF is of a kind only OpenCV reads, and it dropped " + " and ".join(lost)
            + "; the result is without them (save it as a 16-bit PNG with another tool to keep them)",
            source=path,
        )


def _png_ihdr(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, from its IHDR chunk."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26:
        return data[24], data[25]
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
        alpha = None
        if has_trns and isinstance(im.info["transparency"], int) and mode != "F":
            # a PNG's tRNS for gray: the one sample value that is fully transparent
            alpha = np.where(arr == im.info["transparency"], 0, 65535).astype(np.uint16)
        return arr, alpha, 16, True
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
    if mode == "RGB":
        return np.asarray(im), None, 8, False  # no convert(): it would copy a 12-50 MP image once more
    if mode in ("RGBX", "YCbCr", "HSV", "CMYK"):
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


_cv2_log = threading.Lock()
_cv2_quiet: list[int] = [0, 0]  # [decodes inside _opencv_quiet, the log level before the first of them]


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's log held at errors for the block. libtiff's warnings (an unknown tag) reached stderr as
    OpenCV log lines naming no file, between the progress lines; a file OpenCV cannot read fails with
    our reason, and what it dropped is said on the file's result (_say_what_opencv_dropped). The level
    is process-wide and decodes run on several threads: the first in sets it, the last out restores it."""
    import cv2

    with _cv2_log:
        if _cv2_quiet[0] == 0:
            _cv2_quiet[1] = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        _cv2_quiet[0] += 1
    try:
        yield
    finally:
        with _cv2_log:
            _cv2_quiet[0] -= 1
            if _cv2_quiet[0] == 0:
                cv2.utils.logging.setLogLevel(_cv2_quiet[1])


def _cv2_decode(data: bytes, path: Path | str) -> np.ndarray:
    import cv2

    with _opencv_quiet():
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _read_error(path, f"the file is truncated or corrupt (the decoder gave up); {_COPY_AGAIN}")
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


_DAMAGED_JXL = "it is a damaged JPEG XL file (truncated or corrupt); re-export or re-download it"


def _open_pil(data: bytes, path: Path | str) -> PILImage.Image:
    from PIL import UnidentifiedImageError

    Image = _pil()
    try:
        with _pillow_unlimited():
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise
    except Exception as exc:
        if is_jxl(data):  # libjxl's own messages say nothing useful ("Generic Error")
            raise _read_error(path, _DAMAGED_JXL) from exc
        # its header: cut off (most often) or a variant Pillow does not read (a BMP with JPEG inside)
        raise _read_error(path, f"the file is truncated, corrupt, or a variant of its format that cannot be read "
                                f"({brief(exc)}); {_COPY_AGAIN}, or if it opens in another program, save it "
                                "again as PNG or JPEG there") from exc


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
        raise _read_error(path, f"the file is truncated or corrupt ({brief(exc)}); {_COPY_AGAIN}") from exc


def _not_an_image(path: Path | str, data: bytes) -> ImageReadError:
    head = data[:16]
    suffix = Path(str(path)).suffix.lower()
    hint = f" even though its name ends in {suffix}" if suffix else ""
    known = sniff_format(data)
    known = {"WEBP": "WebP"}.get(known, known)
    if known:
        return _read_error(
            path, f"it is a damaged {known} file (truncated or corrupt); re-export or re-download it"
        )
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and _plugins.get("heif"):
        return _read_error(path, "it is a damaged HEIC/HEIF file (truncated or corrupt); copy it from the phone again")
    if is_jxl(data) and _plugins.get("jxl"):
        return _read_error(path, _DAMAGED_JXL)
    if is_jxl(data):
        what = (
            f"it is a JPEG XL image; install the pillow-jxl-plugin package ({pip_install('jxl')}) to "
            "read it, or convert it to PNG first"
        )
    elif data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        what = (
            f"it is a HEIC/HEIF photo; install the pillow-heif package ({pip_install('heic')}) to read "
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


def _decode(
    data: bytes, path: Path | str, max_pixels: int | None, frames: bool = True, shorter_at_least: int = 0
) -> DecodedImage:
    from PIL import UnidentifiedImageError

    if not data:
        raise empty_file_error(path)
    if raw.is_raw(path):  # by name: most RAW files are TIFF containers around a small preview
        rgb16 = raw.develop(data, Path(str(path)).suffix.lower(), fail=lambda why: _read_error(path, why),
                            check_size=lambda w, h: _check_pixels(path, w, h, max_pixels))
        rgb, depth = to_pixels(rgb16)
        return _finish(rgb, None, depth, False, "RAW", None, None, path)
    try:
        im = _open_pil(data, path)
    except UnidentifiedImageError:
        im = None
    if im is None:
        # Pillow does not know it; OpenCV reads a few more: float TIFF (as OpenCV writes it), PFM, HDR.
        # Only those are tried, since here nothing checked the pixel count before decoding.
        if not (data[:4] in (b"II*\x00", b"MM\x00*") or data[:2] in (b"PF", b"Pf") or data[:2] == b"#?"):
            raise _not_an_image(path, data)
        # The pixel count comes from the header, before OpenCV allocates anything: a small file can
        # claim a huge float image and OpenCV would allocate all of it before we could look.
        size = header_size(data)
        if size is None:
            raise _read_error(
                path, "its header gives no usable image size (the file is corrupt or of an unusual kind)"
            )
        _check_pixels(path, size[0], size[1], max_pixels)
        try:
            arr = _cv2_decode(data, path)
        except ImageReadError:
            raise _not_an_image(path, data) from None
        _check_pixels(path, arr.shape[1], arr.shape[0], max_pixels)
        samples, alpha, gray = _split_cv2(arr, False)
        rgb, depth = to_pixels(samples)
        alpha_f = _to_unit(alpha)[0] if alpha is not None else None
        fmt = "TIFF" if data[:4] in (b"II*\x00", b"MM\x00*") else ""
        if fmt:
            _say_what_opencv_dropped(data, arr, path)
        return _finish(rgb, alpha_f, depth, gray, fmt, None, None, path)

    width, height = im.size
    _check_pixels(path, width, height, max_pixels)
    from imgxlate.imaging import animation

    if frames and animation.is_animated(im):
        return animation.read_animation(im, path, max_pixels, data)
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    views_left_out = _views_left_out(im) if frames and im.format == "MPO" else ""
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
        if shorter_at_least and fmt == "JPEG":
            _draft(im, shorter_at_least)
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
        rgb, depth = to_pixels(samples)
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    rgb = apply_orientation(rgb, orientation)
    alpha_f = apply_orientation(alpha_f, orientation) if alpha_f is not None else None
    decoded = _finish(rgb, alpha_f, depth, grayscale, fmt, out_icc, exif, path, _xmp_of(im))
    return replace(decoded, views_left_out=views_left_out) if views_left_out else decoded


def _draft(im: PILImage.Image, shorter_at_least: int) -> None:
    """Have libjpeg decode ``im`` at 1/2, 1/4 or 1/8 of its size (it scales in the DCT: the pixels it
    skips are never computed), the smallest whose shorter side is still ``shorter_at_least`` or more.
    A 12 MP photo bound for a 286 px training crop decodes at 500x375: 1/64 of the work."""
    w, h = im.size
    k = 1
    while k < 8 and min(w, h) // (2 * k) >= shorter_at_least:
        k *= 2
    if k > 1:
        im.draft(im.mode, (w // k, h // k))


def _finish(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    depth: int,
    grayscale: bool,
    fmt: str,
    icc: bytes | None,
    exif: bytes | None,
    path: Path | str | None,
    xmp: bytes | None = None,
) -> DecodedImage:
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8 if rgb.dtype == np.uint8 else np.float32)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    source = Path(path) if isinstance(path, (str, os.PathLike)) else None
    return DecodedImage(rgb, alpha, depth, grayscale, fmt, icc, exif, source, xmp=xmp)


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS, frames: bool = True,
    shorter_at_least: int = 0,
) -> DecodedImage:
    """Read an image file of any kind users have into a :class:`DecodedImage` (sRGB, upright).

    ``frames``: every frame of an animated GIF, WebP or PNG (``animation``) and every page of a
    multi-page TIFF (``pages``); False: the first frame or page only, as a still image (training data,
    previews).

    ``shorter_at_least`` > 0 (an image about to be scaled down so): a JPEG may be decoded at 1/2, 1/4
    or 1/8 of its size, as long as its shorter side stays that long or more (see :func:`_draft`).

    Raises :class:`ImageReadError` naming the file and what to do: missing, empty, truncated, not an
    image, more than ``max_pixels`` pixels (``None``: no limit), unsupported pixel format.
    """
    p = Path(path)
    data = _read_regular_file(p)
    decoded = _decode(data, p, max_pixels, frames, shorter_at_least)
    if decoded.format == "TIFF":
        decoded = _with_pages(decoded, data, p, max_pixels, frames)
    elif decoded.format == "WEBP" and webp_is_lossless(data):
        decoded = replace(decoded, lossless=True)
    return decoded


# Pillow's names of the MP types (CIPA DC-007) of an MPO's pictures that are views of their own, not
# previews of the first: the other eye of a stereo pair (3D cameras, Nintendo 3DS), panorama and
# multi-angle shots. Previews ("Large Thumbnail") and gain maps ("Undefined") are not pictures to convert.
_MPO_VIEWS = {
    "Multi-Frame Image (Panorama)": "panorama",
    "Multi-Frame Image: (Disparity)": "stereo",
    "Multi-Frame Image: (Multi-Angle)": "multi-angle",
}


def _views_left_out(im: PILImage.Image) -> str:
    """For an MPO whose other pictures are views (a stereo pair's second eye...): what the result's
    ``partial`` note says (only the first view is converted); "" when they are previews or unreadable."""
    try:
        entries = im.mpinfo[0xB002]
        kinds = [_MPO_VIEWS.get(e["Attribute"]["MPType"]) for e in entries[1:]]
    except Exception:  # noqa: BLE001 - untrusted data: an unreadable MP index says nothing more
        return ""
    views = [k for k in kinds if k is not None]
    if not views:
        return ""
    return (f"it is a {views[0]} MPO with {len(views) + 1} views; only the first view was converted (export the "
            "other views as JPEG files of their own to convert them)")


def _with_pages(first: DecodedImage, data: bytes, path: Path, max_pixels: int | None, frames: bool) -> DecodedImage:
    """``first`` (a TIFF's first page, decoded) with the file's other pages, decoded like stills, when
    ``frames`` and every page is 8-bit, or 16-bit gray without alpha: the kinds a multi-page TIFF is
    written back in (Pillow would cut 16-bit colour pages to 8 bits, and cannot write them). Else the
    first page alone, the others counted in ``pages_left_out``."""
    Image = _pil()
    try:
        im = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - a TIFF only OpenCV reads (float samples): its first page is decoded
        return first
    try:
        count = int(getattr(im, "n_frames", 1))
    except Exception as exc:  # noqa: BLE001 - untrusted data: the chain of pages breaks off (a cut file)
        # The first page decoded; how many follow is unknown. Said on the file's result (an image
        # note and a warning line), so it never passes as a complete conversion.
        image_warning(f"its list of pages breaks off ({exc}): only its first page was read; if it has more, "
                      f"the file is truncated or corrupt: {_COPY_AGAIN}", source=path)
        return first
    if count < 2:
        return first
    writable = lambda d: d.bit_depth == 8 or (d.grayscale and d.alpha is None)
    if not frames or not writable(first):  # 16-bit colour or 16-bit with alpha: one page (see above)
        return replace(first, pages_left_out=count - 1)
    total = first.width * first.height
    pages: list[DecodedImage] = []
    for i in range(1, count):
        try:
            im.seek(i)
            w, h = im.size
            total += w * h
            if max_pixels is not None and total > max_pixels:
                raise _read_error(
                    path,
                    f"its {count} pages hold more than the limit of {max_pixels:,} pixels in all (a guard "
                    "against decompression bombs); if you trust the file, raise the limit with --max-pixels",
                )
            bits = im.tag_v2.get(258, (8,)) if hasattr(im, "tag_v2") else (8,)
            if im.mode in ("RGB", "RGBA", "RGBX") and max(bits if isinstance(bits, tuple) else (bits,)) > 8:
                return replace(first, pages_left_out=count - 1)  # 16-bit colour: Pillow would cut it
            page = im.copy()
        except ImageReadError:
            raise
        except Exception as exc:  # untrusted data: any decoder failure is a read error
            raise _read_error(path, f"page {i + 1} of {count} is truncated or corrupt ({exc})") from exc
        decoded = replace(_decode_pil_object(page), format="TIFF", source=first.source)
        if not writable(decoded):
            return replace(first, pages_left_out=count - 1)
        pages.append(decoded)
    return replace(first, pages=tuple(pages))


def read_rgb8(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS, background: float = 1.0,
    shorter_at_least: int = 0,
) -> np.ndarray:
    """An image file as (H, W, 3) uint8 sRGB, upright, alpha composited on a uniform ``background``
    (1.0 = white): the decoder for training data and benchmarks.

    It is :func:`read_image` (same ICC, CMYK, orientation, 16-bit and size-limit policy as inference,
    same :class:`ImageReadError`), then alpha compositing and rounding to 8 bits, so a file reaches the
    trainer as the same pixels the translator gets. ``shorter_at_least``: see :func:`read_image` (the
    training loader's resize target: large JPEGs decode several times faster).
    """
    decoded = read_image(path, max_pixels=max_pixels, frames=False, shorter_at_least=shorter_at_least)
    if decoded.alpha is None and decoded.pixels.dtype == np.uint8:
        return decoded.pixels
    rgb = decoded.rgb
    if decoded.alpha is not None:
        a = decoded.alpha[..., None]
        rgb = rgb * a + np.float32(background) * (np.float32(1.0) - a)
    return quantize(rgb, 8)


def _decode_pil_object(im: PILImage.Image) -> DecodedImage:
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    im = _fix_cmyk_polarity(im)
    samples, alpha, _, grayscale = _pil_to_arrays(im, "<PIL image>")
    icc = im.info.get("icc_profile") or None
    cmyk = im.mode == "CMYK"
    pil_rgb = (im if cmyk or im.mode == "RGB" else im.convert("RGB")) if icc and not grayscale else None
    converted, out_icc = _apply_icc(samples, grayscale, icc, pil_rgb, cmyk)
    rgb, depth = (converted, 8) if converted is not None else to_pixels(samples)
    if samples.dtype != np.uint8:
        depth = 16
    try:
        orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - untrusted data: any parser failure = leave it out
        orientation = 1
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    rgb = apply_orientation(rgb, orientation)
    alpha_f = apply_orientation(alpha_f, orientation) if alpha_f is not None else None
    return _finish(rgb, alpha_f, depth, grayscale, fmt, out_icc, _exif_of(im), None, _xmp_of(im))
