"""EXIF and XMP: the Orientation tag applied to pixels and reset in the metadata kept for the output.

:func:`apply_orientation` turns pixels upright for an Orientation value (1-8);
:func:`reset_exif_orientation` rewrites the tag to 1 byte-for-byte (maker notes keep their offsets);
:func:`upright_xmp` does the same for the XMP packet (ratings, keywords, captions, creator and rights
of photo managers), whose ``tiff:Orientation`` would otherwise turn the upright result again.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage
from imgxlate.imaging.formats import _pil
from imgxlate.imaging.notices import image_warning

_ORIENTATION_TAG = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"


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
            image_warning("the image's EXIF data is unreadable; it is not copied to the output", stacklevel=3)
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


# tiff:Orientation in an XMP packet: as an attribute (tiff:Orientation="6") or an element
# (<tiff:Orientation>6</tiff:Orientation>); the namespace prefix is "tiff" in every writer seen.
_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\'])\s*\d+\s*(["\'])|(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)')
# A JPEG's APP1 segment holds at most 65502 bytes of XMP (the rest goes to "extended XMP", which Pillow
# neither reads nor writes): a larger packet is left out of a JPEG output, with a note; PNG, TIFF and
# WebP hold any size.
XMP_MAX_BYTES = 65502


def upright_xmp(xmp: bytes | str | None) -> bytes | None:
    """The XMP packet to write beside upright pixels: ``tiff:Orientation`` set to 1 (the pixels were
    turned), everything else byte for byte; None for none or an empty one."""
    if not xmp:
        return None
    data = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    data = data.rstrip(b"\x00")
    if not data.strip():
        return None

    def one(m: re.Match[bytes]) -> bytes:
        return m.group(1) + b"1" + m.group(2) if m.group(1) else m.group(3) + b"1" + m.group(4)

    return _XMP_ORIENTATION.sub(one, data)


def _xmp_of(im: PILImage.Image) -> bytes | None:
    """The XMP packet a decoded file carries (JPEG APP1, PNG iTXt, WebP XMP chunk, TIFF tag 700), upright."""
    try:
        return upright_xmp(im.info.get("xmp"))
    except Exception:  # noqa: BLE001 - untrusted data: any failure = leave it out
        return None
