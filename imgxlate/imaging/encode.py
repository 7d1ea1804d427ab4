"""Encoding: write a result in the source's kind (format, bit depth, alpha, gray, ICC, EXIF).

:func:`write_image` is atomic (temp file beside the target, then ``os.replace``, through
:mod:`imgxlate._atomic`). :func:`encode_png` writes every PNG still (8 and 16 bits; faster than
Pillow's encoder), :func:`encode_tiff16` the 16-bit TIFFs Pillow cannot write.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate._atomic import disk_full_error, explain_write_error, is_disk_full, write_bytes_atomic
from imgxlate._units import file_size
from imgxlate.errors import DiskFullError, ImageWriteError, UsageError
from imgxlate.imaging.notices import image_warning

if TYPE_CHECKING:
    from PIL import Image as PILImage
from imgxlate.imaging.animation import encode_animation
from imgxlate.imaging.arrays import _check_rgb, _fit_alpha
from imgxlate.imaging.color import _icc_space, luminance, quantize, unit_float
from imgxlate.imaging.decode import DecodedImage
from imgxlate.imaging.exif import _EXIF_HEADER, XMP_MAX_BYTES
from imgxlate.imaging.formats import (
    _FMT_TO_PIL,
    _MAX_SIDE,
    _SUFFIX_TO_PIL,
    _pil,
    encoder_options,
    normalize_format,
    output_quality,
)


def _png_chunk(kind: bytes, body: bytes | memoryview) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF
    return b"".join((struct.pack(">I", len(body)), kind, body, struct.pack(">I", crc)))


# Input bytes deflated per IDAT chunk: the filtered rows exist one band at a time, so encoding needs the
# image (a copy of it for 16-bit or non-contiguous samples), one band and the compressed file twice
# (its chunks, then their join). Measured above the image: 16 MiB at 12 MP (Pillow 12), 214 MiB at
# 96 MP (Pillow 480: its in-memory file grows by doubling).
_PNG_BAND_BYTES = 8 << 20
_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
_PNG_UP = 2  # filter type "Up": each byte minus the byte above it


def encode_png(samples: np.ndarray, icc: bytes | None = None, exif: bytes | None = None,
               xmp: bytes | None = None) -> bytes:
    """(H, W) / (H, W, 1|2|3|4) uint8 or uint16 -> PNG bytes (gray, gray+alpha, RGB, RGBA at 8 or 16
    bits), with the ICC profile (iCCP), EXIF (eXIf) and XMP (iTXt "XML:com.adobe.xmp", as Adobe's XMP
    specification part 3 stores it: uncompressed) before the image data.

    Every row uses the PNG "Up" filter (byte minus the byte above it: one vectorised subtraction) and
    zlib level 3, deflated a band of rows at a time into IDAT chunks. Against Pillow's encoder (a filter
    chosen per row out of five, zlib 3) it takes half the CPU time for files 1-3% larger: 3.3 against
    6.4 ms for a 256 px model output, 0.69 against 1.15 s at 12 MP, 11 against 20 ms for scikit-image's
    sample photos (docs/benchmarks.md, "PNG writer").
    """
    if samples.dtype.kind != "u" or samples.dtype.itemsize not in (1, 2):
        raise ValueError(f"encode_png takes uint8 or uint16 samples, not {samples.dtype}")
    arr = samples[..., None] if samples.ndim == 2 else samples
    if arr.ndim != 3 or arr.shape[2] not in _PNG_COLOR_TYPES or 0 in arr.shape[:2]:
        raise ValueError(f"encode_png takes (H, W) or (H, W, 1-4) samples with H, W >= 1, not {samples.shape}")
    h, w, c = arr.shape
    depth = 8 * arr.dtype.itemsize
    # (H, W*C*bytes) rows of big-endian samples, as PNG stores them
    raw = np.ascontiguousarray(arr, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _PNG_COLOR_TYPES[c], 0, 0, 0))]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        parts.append(_png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER)))
    if xmp:  # keyword, NUL, compression flag 0 and method 0, empty language tag and translated keyword
        parts.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    z = zlib.compressobj(3)
    rows = max(1, _PNG_BAND_BYTES // (raw.shape[1] + 1))
    band = np.empty((min(rows, h), raw.shape[1] + 1), np.uint8)
    band[:, 0] = _PNG_UP
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        out = band[: y1 - y0]
        if y0 == 0:  # the first row's "row above" is zeros
            out[0, 1:] = raw[0]
            np.subtract(raw[1:y1], raw[: y1 - 1], out=out[1:, 1:])  # uint8 wraps mod 256, as PNG defines
        else:
            np.subtract(raw[y0:y1], raw[y0 - 1 : y1 - 1], out=out[:, 1:])
        data = z.compress(out)
        if data:
            parts.append(_png_chunk(b"IDAT", data))
    parts += [_png_chunk(b"IDAT", z.flush()), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


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


def encode_tiff16(samples: np.ndarray, icc: bytes | None = None, exif: bytes | None = None,
                  xmp: bytes | None = None) -> bytes:
    """(H, W, 3|4) uint16 -> 16-bit RGB(A) TIFF bytes with the ICC profile, EXIF and XMP (tag 700) embedded.

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
            image_warning(
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
    if xmp:
        ifd.tagtype[700] = TiffTags.BYTE
        ifd[700] = xmp
    return b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + strip


def _with_tiff_tag(exif: bytes | None, tag: int, value: bytes) -> Any:
    """EXIF (``Exif\\0\\0`` + TIFF structure, or None) with one more IFD0 tag, as the Pillow Exif that
    its TIFF writer takes. Unreadable EXIF gives way to the tag alone (the EXIF's own writer warns)."""
    tags = _pil().Exif()
    if exif:
        try:
            tags.load(exif)
        except Exception:  # noqa: BLE001 - untrusted data: the EXIF is then written as it would be without
            tags = _pil().Exif()
    tags[tag] = value
    return tags


def _pil_encode(im: PILImage.Image, pil_fmt: str, options: dict[str, Any]) -> memoryview:
    """Encode with Pillow into memory; EXIF that the format's writer rejects is left out with a warning."""
    buf = io.BytesIO()
    try:
        im.save(buf, format=pil_fmt, **options)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, struct.error) as exc:
        if "exif" not in options or isinstance(exc, OSError) and exc.errno is not None:
            raise
        image_warning(
            f"the EXIF data could not be written to the {pil_fmt} file ({exc}); it is left out", stacklevel=4
        )
        buf = io.BytesIO()
        im.save(buf, format=pil_fmt, **{k: v for k, v in options.items() if k != "exif"})
    return buf.getbuffer()


def result_dtype(like: DecodedImage) -> Any:
    """What a translation of ``like`` can be held in without changing what :func:`write_image` writes:
    uint8 for 8-bit colour images without alpha (their samples are the rounded result itself), else
    float32 (16-bit output, gray made from the colour result, alpha compositing)."""
    if like.bit_depth == 8 and not like.grayscale and like.alpha is None:
        return np.uint8
    return np.float32


def write_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray | Sequence[np.ndarray],
    like: DecodedImage,
    *,
    fmt: str = "same",
    quality: int | None = None,
    replace: bool = True,
) -> Path:
    """Write the model's result ``rgb`` to ``path`` atomically, in ``like``'s kind.

    ``rgb`` is (H, W, 3) float32 in [0, 1], or uint8 (see :func:`result_dtype`: written as it is when
    ``like`` is 8-bit colour without alpha, else taken as k / 255). For an animation (``like.animation``)
    it is one such result per frame, written as an animated GIF, WebP or PNG
    (:mod:`imgxlate.imaging.animation`; JPEG and TIFF targets are refused); for a multi-page TIFF
    (``like.pages``) one result per page, written as a multi-page TIFF (:func:`fit_to_target` leaves the
    pages out for other targets).

    The format comes from ``path``'s suffix (the caller picked it with :func:`output_suffix`); ``fmt``
    is used only when the suffix names no format. Keeps alpha (PNG, WebP, TIFF; JPEG: composited on
    white), gray, 16 bits (PNG, TIFF), ICC and EXIF as the module docstring says. ``quality`` (1-100)
    is JPEG / WebP quality; WebP at 100 is lossless; None: 95, and lossless for a WebP written from a
    lossless WebP (:func:`imgxlate.imaging.formats.output_quality`). Returns the path written. Never
    overwrites ``like.source``. ``replace`` False: a file that is at ``path`` by the time this one is
    finished is kept (:class:`~imgxlate.errors.OutputExistsError`; a batch that planned to write there
    when nothing was, while another run wrote it).
    """
    target = Path(path)
    if quality is not None and not 1 <= int(quality) <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    pil_fmt = _SUFFIX_TO_PIL.get(target.suffix.lower())
    if pil_fmt is None:
        key = normalize_format(fmt)
        if key == "same":
            raise ImageWriteError(
                f"cannot write {str(target)!r}: imgxlate writes .png, .jpg, .webp, .tif and .gif files, not "
                f"{target.suffix or 'files without a suffix'}; choose --format png (or jpg, webp, tiff)"
            )
        pil_fmt = _FMT_TO_PIL[key]
    quality = output_quality(quality, pil_fmt, like.lossless)
    if like.source is not None and target.exists():
        try:
            if os.path.samefile(target, like.source):
                raise ImageWriteError(
                    f"refusing to write over the input image {str(target)!r}; choose another output folder "
                    "or suffix"
                )
        except OSError:
            pass
    if like.animation is not None or pil_fmt == "GIF":
        if like.animation is not None and isinstance(rgb, np.ndarray):
            raise ImageWriteError(
                f"cannot write {str(target)!r}: the source is an animation of {like.animation.count} frames; "
                "pass one result per frame (Translator.translate_decoded gives them)"
            )
        results = list(rgb) if like.animation is not None else [rgb]
        _write_encoded(target, pil_fmt, lambda: encode_animation(target, [_check_rgb(r) for r in results], like,
                                                                 pil_fmt, quality), replace)
        return target
    if like.pages:
        _write_encoded(target, pil_fmt, lambda: _encode_pages(target, rgb, like, pil_fmt), replace)
        return target
    q, depth, gray = _samples(target, rgb, like, pil_fmt)
    icc = _icc_for(like, gray)
    exif, xmp = like.exif, like.xmp

    # Encoded in memory, then written through write_bytes_atomic: every byte written, fsynced and its
    # size on disk checked before the rename. Pillow's encoders writing to a file drop the rest of a
    # short write on a nearly full disk and report success, which left truncated outputs.
    def encode() -> bytes | memoryview:
        if pil_fmt == "PNG":
            data: bytes | memoryview = encode_png(q, icc, exif, xmp)
        elif depth == 16 and q.ndim == 3:
            # 16-bit gray+alpha TIFF is stored as RGBA: few readers (OpenCV, Pillow) take 2 samples.
            rgba = np.concatenate([q[..., :1]] * 3 + [q[..., 1:]], axis=2) if q.shape[2] == 2 else q
            data = encode_tiff16(rgba, None if gray else icc, exif, xmp)  # a gray profile does not fit RGBA
        else:
            # uint8 (H, W) -> L, (H, W, 2) -> LA, 3 -> RGB, 4 -> RGBA; uint16 (H, W) -> I;16
            im = _pil().fromarray(q)
            options: dict[str, Any] = {}
            if icc:
                options["icc_profile"] = icc
            if exif:
                options["exif"] = exif
            if xmp and pil_fmt == "JPEG" and len(xmp) > XMP_MAX_BYTES:
                image_warning(
                    f"its XMP metadata ({file_size(len(xmp))}) is more than a JPEG file holds ({file_size(XMP_MAX_BYTES)}); "
                    "it is left out: choose --format png, tiff or webp to keep it", stacklevel=4,
                )
            elif xmp and pil_fmt in ("JPEG", "WEBP"):
                options["xmp"] = xmp
            elif xmp and pil_fmt == "TIFF":
                # Pillow's TIFF writer takes either ``tiffinfo`` or ``exif``, never both: the XMP goes
                # in as tag 700 of the EXIF it writes (a tiffinfo dropped the camera, date and GPS)
                options["exif"] = _with_tiff_tag(exif, 700, xmp)
            options.update(encoder_options(pil_fmt, quality))
            if pil_fmt == "TIFF":
                # Pillow's libtiff writer (needed for compression) cannot write the EXIF sub-IFD
                # (camera settings, capture date); its own writer can, uncompressed only.
                options.update(compression="raw" if exif else "tiff_adobe_deflate")
            data = _pil_encode(im, pil_fmt, options)
        return data

    _write_encoded(target, pil_fmt, encode, replace)
    return target


def _samples(target: Path, rgb: Any, like: DecodedImage, pil_fmt: str) -> tuple[np.ndarray, int, bool]:
    """A result as the samples ``pil_fmt`` stores for ``like``'s kind: (quantized samples, bit depth,
    gray). Gray in, gray out (not WebP); alpha kept (JPEG: composited on white); 16 bits for a 16-bit
    source in PNG and TIFF; an 8-bit result written as it is where that loses nothing."""
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    exact_bytes = rgb.dtype == np.uint8 and result_dtype(like) == np.uint8
    if rgb.dtype == np.uint8 and not exact_bytes:
        rgb = unit_float(rgb)
    limit = _MAX_SIDE.get(pil_fmt)
    if limit is not None and max(h, w) > limit:
        raise ImageWriteError(
            f"cannot write {str(target)!r}: {pil_fmt} images can be at most {limit} pixels on a side and "
            f"this one is {w}x{h}; choose --format png or tiff"
        )
    alpha = _fit_alpha(like.alpha, h, w)
    if pil_fmt == "JPEG" and alpha is not None:
        # an alpha opaque everywhere loses nothing (resized to a smaller result it comes out 0.9997,
        # which 8 bits store as 255: only what is below that is transparency)
        if float(alpha.min()) < 1.0 - 0.5 / 255:
            image_warning("its transparency was flattened onto white (JPEG has no alpha channel); choose "
                          "--format png or webp to keep it", stacklevel=3)
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
    return (samples if exact_bytes else quantize(samples, depth)), depth, gray


def _icc_for(like: DecodedImage, gray: bool) -> bytes | None:
    """``like``'s ICC profile where it describes what is written (a gray profile for gray samples, an
    RGB one for colour); None otherwise."""
    return like.icc_profile if _icc_space(like.icc_profile) == (b"GRAY" if gray else b"RGB ") else None


def fit_to_target(image: DecodedImage, target: str | os.PathLike[str]) -> DecodedImage:
    """``image`` as a write to ``target`` will hold it: a multi-page TIFF's pages are kept for a TIFF
    target and left out (counted in ``pages_left_out``, so the result says so) for any other, which
    holds one picture; the local batch and the Ray stages call it before translating, so no page is
    translated in vain."""
    if not image.pages or _SUFFIX_TO_PIL.get(Path(target).suffix.lower()) == "TIFF":
        return image
    return replace(image, pages=(), pages_left_out=image.pages_left_out + len(image.pages))


def _encode_pages(target: Path, results: Any, like: DecodedImage, pil_fmt: str) -> memoryview:
    """A multi-page TIFF: one result per page of ``like`` (8-bit, or 16-bit gray without alpha: what
    the decoder keeps pages for), each page in its own kind and size with its own ICC profile where it
    fits, deflate-compressed; EXIF is not written (Pillow's TIFF writer cannot write it compressed)."""
    pages = like.frames
    if pil_fmt != "TIFF":
        raise ImageWriteError(
            f"cannot write {str(target)!r}: the source is a TIFF of {len(pages)} pages and {pil_fmt} holds one "
            "picture (imgxlate.imaging.encode.fit_to_target leaves the pages out)"
        )
    if isinstance(results, np.ndarray) or len(results) != len(pages):
        raise ImageWriteError(f"cannot write {str(target)!r}: pass one result per page ({len(pages)} pages)")
    Image = _pil()
    images = []
    for rgb, page in zip(results, pages):
        q, _, gray = _samples(target, rgb, page, pil_fmt)
        im = Image.fromarray(q)
        icc = _icc_for(page, gray)
        if icc:
            im.info["icc_profile"] = icc
        images.append(im)
    buf = io.BytesIO()
    images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], compression="tiff_adobe_deflate")
    return buf.getbuffer()


def _write_encoded(target: Path, pil_fmt: str, encode: Callable[[], bytes | memoryview], replace: bool) -> None:
    """``encode()`` the file in memory, then write it through write_bytes_atomic (every byte written,
    fsynced and its size on disk checked before the rename); errors become ImageWriteError (or
    DiskFullError) naming the file."""
    try:
        write_bytes_atomic(target, encode(), replace=replace)
    except (ImageWriteError, DiskFullError):
        raise
    except (ValueError, RuntimeError, TypeError, KeyError, struct.error) as exc:
        raise ImageWriteError(f"cannot write {str(target)!r}: the {pil_fmt} encoder failed ({exc})") from exc
    except OSError as exc:
        if is_disk_full(exc):  # wherever it came from, a full disk stops a batch
            raise disk_full_error(target, exc.strerror or "") from exc
        raise ImageWriteError(f"cannot write {str(target)!r}: {explain_write_error(exc)}") from exc
