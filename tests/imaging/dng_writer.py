"""A minimal uncompressed Bayer DNG (RGGB, 16 bits, one IFD), written by hand: what LibRaw needs to
develop a file, so the RAW path is tested without a camera file in the repository."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

WHITE = 60000  # the DNG's white level


def write_dng(path: Path, rgb: np.ndarray, orientation: int = 1) -> Path:
    """``rgb`` (H, W, 3) uint8 sRGB-ish -> a mosaiced linear DNG (RGGB) with this EXIF orientation."""
    h, w, _ = rgb.shape
    linear = (np.asarray(rgb, np.float64) / 255.0) ** 2.2 * WHITE
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]  # R
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1]  # G
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1]  # G
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]  # B
    data = cfa.astype("<u2").tobytes()
    entries: list[tuple[int, int, int, bytes]] = []

    def add(tag: int, typ: int, values: object) -> None:
        if typ == 2:  # ASCII
            raw = str(values).encode() + b"\0"
            entries.append((tag, typ, len(raw), raw))
            return
        values = list(values)  # type: ignore[call-overload]
        if typ in (5, 10):  # (signed) rationals: pairs
            fmt = "II" if typ == 5 else "ii"
            raw = b"".join(struct.pack("<" + fmt, *v) for v in values)
        else:
            raw = struct.pack(f"<{len(values)}{ {1: 'B', 3: 'H', 4: 'I'}[typ] }", *values)
        entries.append((tag, typ, len(values), raw))

    one, zero = (10000, 10000), (0, 10000)
    add(254, 4, [0])  # NewSubFileType: the main image
    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, [16])
    add(259, 3, [1])  # no compression
    add(262, 3, [32803])  # photometric: CFA
    add(271, 2, "imgxlate")
    add(272, 2, "test camera")
    add(273, 4, [0])  # StripOffsets: patched below
    add(274, 3, [orientation])
    add(277, 3, [1])
    add(278, 4, [h])
    add(279, 4, [len(data)])
    add(284, 3, [1])
    add(33421, 3, [2, 2])  # CFARepeatPatternDim
    add(33422, 1, [0, 1, 1, 2])  # CFAPattern: R G / G B
    add(50706, 1, [1, 4, 0, 0])  # DNGVersion
    add(50707, 1, [1, 1, 0, 0])
    add(50708, 2, "imgxlate test camera")
    add(50714, 4, [0])  # BlackLevel
    add(50717, 4, [WHITE])  # WhiteLevel
    add(50721, 10, [one, zero, zero, zero, one, zero, zero, zero, one])  # ColorMatrix1: identity
    add(50728, 5, [(1, 1), (1, 1), (1, 1)])  # AsShotNeutral
    add(50778, 3, [21])  # CalibrationIlluminant1: D65
    entries.sort()
    ifd_end = 8 + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag, typ, count, raw in entries:
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, count, ifd_end + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
    ifd += struct.pack("<I", 0)
    at = 2 + 12 * [e[0] for e in entries].index(273) + 8  # StripOffsets' value field
    ifd = ifd[:at] + struct.pack("<I", ifd_end + len(extra)) + ifd[at + 4 :]
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + extra + data)
    return path
