"""Animated images: every frame of an animated GIF, WebP or PNG (APNG) in, an animation out.

:func:`read_animation` decodes all frames as Pillow composes them (each frame is the whole canvas as
a viewer shows it, disposal and blending applied), through the same colour and orientation policy
as a still image (:func:`imgxlate.imaging.decode._decode_pil_object`). The first frame is the
:class:`~imgxlate.imaging.decode.DecodedImage` itself; the others, the frame durations and the loop
count are its :class:`Animation`. :func:`encode_animation` writes one result per frame back as an
animation: GIF (256 colours per frame, Pillow's quantiser), WebP (``quality``; 100 = lossless) or
APNG, with the source's durations and loop count; a gray animation's results are written gray. JPEG and TIFF hold one picture, so an animation
is not written to them (an error that names the formats that can hold it).

Memory: every frame is decoded before the first is translated and every result is kept until the
file is encoded, so the frame count times the frame size is checked against ``max_pixels`` (the
same decompression-bomb limit as a still image's pixel count).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import ImageWriteError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from imgxlate.imaging.decode import DecodedImage

# Pillow formats whose files can hold an animation, and which of them imgxlate writes as one.
FORMATS = ("GIF", "WEBP", "PNG")
# Read as animations too: AVIF (Pillow's plugin gives every frame; written back as an animated PNG
# under --format same, since imgxlate does not write AVIF, or as GIF / WebP when asked).
READ_FORMATS = (*FORMATS, "AVIF")
# The suffixes a file that may hold an animation has (a cheap test before opening it).
ANIMATED_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".avif")
# A frame without a duration of its own is shown this long (what browsers do for GIF delays of 0).
DEFAULT_DURATION_MS = 100


@dataclass(frozen=True)
class Animation:
    """The frames after the first (decoded like the first), one duration per frame (milliseconds,
    the first frame's included) and the loop count (0: forever; None: the file gives none, so it
    plays once)."""

    frames: tuple[DecodedImage, ...]
    durations: tuple[int, ...]
    loop: int | None

    @property
    def count(self) -> int:
        """Frames in all, the first included."""
        return 1 + len(self.frames)


def is_animated(im: PILImage.Image) -> bool:
    """True for an opened GIF, WebP, PNG or AVIF with more than one frame."""
    return (im.format or "") in READ_FORMATS and bool(getattr(im, "is_animated", False))


def read_animation(im: PILImage.Image, path: Path | str, max_pixels: int | None, data: bytes = b"") -> DecodedImage:
    """All frames of the animated image ``im`` (see :func:`is_animated`) as a DecodedImage whose
    ``animation`` holds the frames after the first. Raises ImageReadError for a corrupt frame or more
    than ``max_pixels`` pixels over all frames. ``data``: the file's bytes (an AVIF's loop is read from
    them: Pillow does not give it)."""
    from imgxlate.imaging.decode import _decode_pil_object, _read_error

    fmt = im.format or ""
    n = int(im.n_frames)
    width, height = im.size
    if max_pixels is not None and n * width * height > max_pixels:
        raise _read_error(
            path,
            f"it is an animation of {n} frames of {width}x{height}, {n * width * height:,} pixels in all, more "
            f"than the limit of {max_pixels:,} (a guard against decompression bombs); if you trust the file, "
            "raise the limit with --max-pixels, or convert it to a video with `imgxlate video` (frame by frame, "
            "in bounded memory)",
        )
    loop = avif_loop(data) if fmt == "AVIF" else im.info.get("loop")
    frames: list[DecodedImage] = []
    durations: list[int] = []
    for i in range(n):
        try:
            im.seek(i)
            # The canvas as a viewer shows it. The first frame as it is (a gray palette stays gray, as
            # for a still image); Pillow gives later GIF frames as RGB(A), so they are taken as RGBA.
            frame = im.copy() if i == 0 else im.convert("RGBA")
        except Exception as exc:  # untrusted data: any decoder failure is a read error
            raise _read_error(path, f"frame {i + 1} of {n} is truncated or corrupt ({exc})") from exc
        duration = im.info.get("duration")
        durations.append(round(duration) if duration else DEFAULT_DURATION_MS)
        frames.append(replace(_decode_pil_object(frame), format=fmt))
    if all(f.alpha is None or bool(np.all(f.alpha >= 1.0)) for f in frames):
        frames = [replace(f, alpha=None) for f in frames]  # opaque throughout: no alpha to keep
    # Gray when the first frame is and every other one has equal channels (its result is written gray).
    gray = frames[0].grayscale and all(_equal_channels(f.pixels) for f in frames[1:])
    frames = [replace(f, grayscale=gray) for f in frames]
    source = Path(path) if isinstance(path, (str, Path)) else None
    rest = tuple(replace(f, source=source) for f in frames[1:])
    first = replace(frames[0], source=source)
    return replace(first, animation=Animation(rest, tuple(durations), None if loop is None else int(loop)))


def _equal_channels(pixels: np.ndarray) -> bool:
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The ISO BMFF boxes in ``data[start:end]``: (type, payload start, box end); stops at a damaged one."""
    at = start
    while at + 8 <= end:
        size, head = int.from_bytes(data[at : at + 4], "big"), 8
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size, head = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:  # to the end of its container
            size = end - at
        if size < head or at + size > end:
            return
        yield data[at + 4 : at + 8], at + head, at + size
        at += size


def _child(data: bytes, parent: tuple[int, int], *path: bytes) -> tuple[int, int] | None:
    """(payload start, end) of the first box along ``path`` inside ``parent``'s payload."""
    start, end = parent
    for kind in path:
        found = next(((s, e) for t, s, e in _boxes(data, start, end) if t == kind), None)
        if found is None:
            return None
        start, end = found
    return start, end


def avif_loop(data: bytes) -> int | None:
    """An animated AVIF's loop count as :class:`Animation` holds it: 0 (forever) when its sequence says it
    repeats for an indefinite time, else None (it plays once). As libavif reads it: the edit list's
    flag 1 says "repeat", and a movie header duration of all ones "for an indefinite time" (what
    libavif, and so Pillow, writes); a finite number of repeats is rare and read as once."""
    moov = _child(data, (0, len(data)), b"moov")
    elst = _child(data, moov, b"trak", b"edts", b"elst") if moov is not None else None
    mvhd = _child(data, moov, b"mvhd") if moov is not None else None
    if elst is None or mvhd is None or elst[1] - elst[0] < 4 or mvhd[1] - mvhd[0] < 4:
        return None
    if not int.from_bytes(data[elst[0] + 1 : elst[0] + 4], "big") & 1:  # flags: bit 0 = repeat
        return None
    v1 = data[mvhd[0]] == 1  # version 1: 64-bit times (creation, modification, duration)
    at, width = (mvhd[0] + 4 + 8 + 8 + 4, 8) if v1 else (mvhd[0] + 4 + 4 + 4 + 4, 4)
    if at + width > mvhd[1]:
        return None
    return 0 if data[at : at + width] == b"\xff" * width else None


def one_picture_reason(source: Path | None, pil_fmt: str, named: Path | None = None, fmt: str = "same") -> str:
    """Why an animation cannot be written as ``pil_fmt`` (a format that holds one picture), and what to
    do: another --format, or for an output file named on the command line (``named``) another name
    (and no --format ``fmt`` that would contradict it)."""
    what = f"{source.name} is an animation" if source is not None else "the source is an animation"
    # TIFF holds pages, but no frame timing or looping: its viewers show them as a document's pages
    holds = "keeps no frame timing (its pages are a document's)" if pil_fmt == "TIFF" else "holds one picture"
    if named is not None:
        without = f", without --format {fmt}" if fmt != "same" else ""
        return (f"{what} and {pil_fmt} {holds}; name the output {named.stem}.webp, .png or .gif "
                f"(they animate) instead of {named.name}{without}")
    return (f"{what} and {pil_fmt} {holds}; choose --format webp or png (both animate), or leave "
            "--format out (an animation is then written as one)")


def encode_animation(
    target: Path, results: Sequence[np.ndarray], like: DecodedImage, pil_fmt: str, quality: int
) -> memoryview:
    """Encode one result per frame of ``like`` ((H, W, 3) uint8, or float32 in [0, 1]) as a ``pil_fmt``
    animation with ``like``'s durations and loop count; a still (no ``animation``) gives one frame."""
    from imgxlate.imaging.color import _icc_space, luminance, quantize, unit_float
    from imgxlate.imaging.formats import _pil, encoder_options

    anim = like.animation
    frames = like.frames
    if pil_fmt not in FORMATS:
        raise ImageWriteError(f"cannot write {str(target)!r}: {one_picture_reason(like.source, pil_fmt)}")
    if len(results) != len(frames):
        raise ImageWriteError(f"cannot write {str(target)!r}: {len(results)} results for {len(frames)} frames")
    alpha = any(f.alpha is not None for f in frames)
    Image = _pil()
    images = []
    for rgb, frame in zip(results, frames):
        rgb = np.asarray(rgb)
        if like.grayscale:  # gray in, gray out (as three equal channels: WebP and GIF frames are RGB here)
            rgb = np.repeat(luminance(unit_float(rgb))[..., None], 3, axis=2)
        color = rgb if rgb.dtype == np.uint8 else quantize(rgb, 8)
        if not alpha:
            images.append(Image.fromarray(color))
            continue
        a = quantize(frame.alpha, 8) if frame.alpha is not None else np.full(color.shape[:2], 255, np.uint8)
        if pil_fmt != "GIF":
            images.append(Image.fromarray(np.dstack([color, a])))
            continue
        # GIF has one transparent palette entry and no partial alpha: the colours get 255 entries
        # (median cut, exact for up to 255 colours) and pixels under half opacity the 256th.
        p = Image.fromarray(color).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
        idx = np.array(p)
        idx[a < 128] = 255
        q = Image.fromarray(idx)  # mode L; putpalette makes it P
        q.putpalette(p.getpalette()[: 255 * 3] + [0, 0, 0])
        q.info["transparency"] = 255
        images.append(q)
    durations = list(anim.durations) if anim is not None else [DEFAULT_DURATION_MS]
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "duration": durations}
    loop = anim.loop if anim is not None else None
    icc = like.icc_profile if _icc_space(like.icc_profile) == b"RGB " else None
    if pil_fmt == "GIF":
        if loop is not None:
            options["loop"] = loop
        if alpha:
            options["disposal"] = 2  # each frame replaces the last (full frames, transparency included)
            options["transparency"] = 255
    else:
        options["loop"] = 1 if loop is None else loop  # WebP and APNG: 1 = play once, 0 = forever
        if icc:
            options["icc_profile"] = icc
        if like.exif:
            options["exif"] = like.exif
        options.update(encoder_options(pil_fmt, quality))
        if pil_fmt == "WEBP" and alpha:
            # libwebp's animation encoder (1.6, through Pillow 12) wrote lossy frames whose transparent
            # part covers whole 16 px blocks without their alpha: the file came out opaque. Every frame
            # a key frame keeps it, at the cost of the inter-frame savings.
            options["kmax"] = 1
    buf = io.BytesIO()
    images[0].save(buf, format=pil_fmt, **options)
    return buf.getbuffer()
