"""Helpers of the imgxlate.imaging tests: tiny images, ICC profiles built byte by byte, LittleCMS as the reference."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------- helpers


def _save(im: Image.Image, path: Path, fmt: str | None = None, **kw: object) -> Path:
    im.save(path, format=fmt, **kw)
    return path


def _rand(h: int, w: int, c: int | None = 3, dtype: type = np.uint8) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if c is None else (h, w, c)
    return RNG.integers(0, top + 1, size=shape).astype(dtype)


def _cv2_write(path: Path, rgb_or_rgba: np.ndarray) -> Path:
    arr = rgb_or_rgba
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curv_gamma(g: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(g * 256)) + b"\0\0"


def _curv_table(values: np.ndarray) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">I", len(values)) + np.round(values * 65535).astype(">u2").tobytes()


def _para(ftype: int, *params: float) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">HH", ftype, 0) + b"".join(_s15(p) for p in params)


def _icc(space: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 display profile (header, tag table, tags) that LittleCMS accepts."""
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags.items():
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = offset + len(body)
    d50 = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", space, b"XYZ ")
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + d50
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


D50 = _xyz(0.9642, 1.0, 0.8249)
# Adobe RGB (1998) colorants adapted to D50, as in Adobe's profile.
ADOBE_COLORANTS = {
    b"rXYZ": _xyz(0.6097, 0.3111, 0.0195),
    b"gXYZ": _xyz(0.2053, 0.6257, 0.0609),
    b"bXYZ": _xyz(0.1492, 0.0632, 0.7446),
}


def _adobe_like(curve: bytes) -> bytes:
    return _icc(b"RGB ", {b"wtpt": D50, **ADOBE_COLORANTS, b"rTRC": curve, b"gTRC": curve, b"bTRC": curve})


ADOBE_ICC = _adobe_like(_curv_gamma(563 / 256))
GRAY_ICC = _icc(b"GRAY", {b"wtpt": D50, b"kTRC": _curv_gamma(1.8)})


def _littlecms_to_srgb(rgb8: np.ndarray, icc: bytes) -> np.ndarray:
    # Relative colorimetric: with the default perceptual intent LittleCMS adds black point compensation
    # (its sRGB is a v4 profile), which only differs for profiles whose black is not 0 (the para4 case).
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
    t = ImageCms.buildTransform(src, ImageCms.createProfile("sRGB"), "RGB", "RGB", renderingIntent=intent)
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb8), t)).astype(np.float32) / 255


def _u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x) * 255).astype(np.uint8)


def _u16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x) * 65535).astype(np.uint16)


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".imgxlate-tmp-") for p in folder.iterdir())
