"""The Python API's in-memory images: :func:`from_array` (an ndarray or a PIL image in, a
:class:`~imgxlate.imaging.decode.DecodedImage` out, by the policy files are read with) and
:func:`to_array` (the model's result back in the input's kind: gray, alpha, dtype), with the two
helpers writers share (:func:`_check_rgb`, :func:`_fit_alpha`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imgxlate.errors import ImageWriteError
from imgxlate.imaging.color import _to_unit, _unit_clip, luminance, quantize, to_pixels, unit_float
from imgxlate.imaging.decode import DecodedImage, _decode_pil_object, _finish, _read_error
from imgxlate.imaging.formats import _pil

if TYPE_CHECKING:
    from PIL import Image as PILImage


# How far outside [0, 1] a float image may stray (rounding in the caller's own arithmetic) and still be
# taken as [0, 1]; anything further is another scale (0..255) and is refused.
FLOAT_SLACK = 1e-3


def from_array(image: np.ndarray | PILImage.Image) -> DecodedImage:
    """Python API input: a PIL image (any mode) or an (H, W), (H, W, 1|2|3|4) array.

    Arrays: uint8, uint16, bool, other integers within 0..65535, or float in [0, 1]; channels are
    gray, gray+alpha, RGB, RGBA. No ICC conversion for arrays (taken as sRGB); PIL images follow the
    module's ICC policy and EXIF orientation like files, except mode "F" (32-bit float samples), which
    is read as a float array: values in [0, 1].
    """
    Image = _pil()
    where = "<array>"
    if isinstance(image, Image.Image):
        data = image
        try:
            data.load()
        except Exception as exc:
            raise _read_error("<PIL image>", f"it cannot be loaded ({exc})") from exc
        if data.mode != "F":
            return _decode_pil_object(data)
        image, where = np.asarray(data, dtype=np.float32), "<PIL image of mode F>"
    arr = np.asarray(image)
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
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:  # 0..255 floats would come out as a flat gray image
            raise _read_error(
                where, f"float values span {lo:.4g}..{hi:.4g}, and floats are read as 0..1; divide 8-bit "
                "values by 255 (or pass the uint8 array itself)"
            )
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
    rgb, depth = to_pixels(samples)
    if kind == np.bool_ or (not float_in and arr.dtype == np.uint8):
        depth = 8
    alpha_f = _to_unit(alpha)[0] if alpha is not None else None
    out = _finish(rgb, alpha_f, depth, gray, "", None, None, None)
    out.array_dtype = kind.name if float_in else None
    return out


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """A result to write: (H, W, 3) uint8 as it is, anything else as float32 (in [0, 1])."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageWriteError(
            f"the result to write has shape {rgb.shape}; expected (H, W, 3) float in [0, 1] or uint8"
        )
    return rgb if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=False)


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
    rgb = unit_float(_check_rgb(rgb))
    h, w = rgb.shape[:2]
    alpha = _fit_alpha(like.alpha, h, w)
    color = luminance(rgb) if like.grayscale else rgb
    if alpha is not None:
        color = np.concatenate([color[..., None] if color.ndim == 2 else color, alpha[..., None]], axis=-1)
    if like.array_dtype is not None:
        return _unit_clip(color).astype(like.array_dtype)
    return quantize(color, like.bit_depth)
