"""A KxK convolution with few output channels as a 1xK row convolution and a Kx1 column sum.

The generators end in a 7x7 convolution to 3 channels. ONNX Runtime's CPU kernels are built for
many output channels: with 3 they run at a third of the speed of the other convolutions (7x7, 32 -> 3
at 512x512, 2 threads: 60 ms, 41 GFLOP/s; a 3x3 32 -> 128 conv runs at ~400). The same sum can be
split by kernel row ``dy``:

    y[o, i, j] = b[o] + sum_dy T[o*K + dy, i + dy, j]
    T[o*K + dy, r, j] = sum_c sum_dx W[o, c, dy, dx] x[c, r, j + dx]

``T`` is a 1xK convolution with ``O*K`` output channels (21 for the head): the same multiply-adds,
in a shape the kernels run well. The column sum is a grouped Kx1 convolution (``O`` groups of ``K``
input channels) whose weights select row ``dy`` of group ``o``: K adds per output value. The
convolution's zero padding splits the same way: left/right on the rows, top/bottom on the sum (a
padded row of zeros gives a row of zeros in ``T``, which has no bias).

Measured with ``onnxruntime`` 1.31 on 2 threads, 512x512 output, original vs split: 7x7 32->3
59.7 / 24.6 ms, 5x5 32->3 42.3 / 14.7, 3x3 32->3 13.3 / 9.8, 7x7 32->1 54.5 / 15.6, 7x7 64->3
100.9 / 35.5, 7x7 32->8 65.1 / 52.9. :func:`applies` keeps to that range (``O <= 8``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_OUT = 8  # measured up to 8 output channels (see above); wider convs already run well


def plain(attrs: dict[str, Any]) -> bool:
    """A Conv node's attributes (as ``onnx.helper.get_attribute_value`` gives them) say: ungrouped,
    stride 1, dilation 1, explicit (or no) padding. Both rewrites (:mod:`.rewrite`) take only these."""
    return (
        int(attrs.get("group", 1)) == 1
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def applies(weight: np.ndarray, attrs: dict[str, Any]) -> bool:
    """True for a :func:`plain` convolution with a weight of shape (O <= 8, C, KH >= 3, KW)."""
    if weight.ndim != 4 or weight.shape[0] > MAX_OUT or weight.shape[2] < 3:
        return False
    return plain(attrs)


def kernels(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(O, C, KH, KW) -> the row convolution's (O*KH, C, 1, KW) weight (channel ``o*KH + dy``) and the
    column sum's grouped (O, KH, KH, 1) weight (one-hot: input ``dy`` of group ``o`` at row ``dy``)."""
    o, c, kh, kw = weight.shape
    rows = np.ascontiguousarray(weight.transpose(0, 2, 1, 3).reshape(o * kh, c, 1, kw))
    cols = np.zeros((o, kh, kh, 1), weight.dtype)
    cols[:, np.arange(kh), np.arange(kh), 0] = 1
    return rows, cols


def nodes(prefix: str, src: str, dst: str, weight: np.ndarray, bias: np.ndarray | None,
          pads: tuple[int, int, int, int] = (0, 0, 0, 0)) -> tuple[list[Any], list[Any]]:
    """The two Conv nodes from ``src`` to ``dst`` and their initializers (names start with ``prefix``).
    ``pads``: the original convolution's (top, left, bottom, right) zero padding."""
    from onnx import helper, numpy_helper

    rows, cols = kernels(weight)
    o, _, kh, kw = weight.shape
    top, left, bottom, right = pads
    inits = [numpy_helper.from_array(rows, f"{prefix}_rows_w"), numpy_helper.from_array(cols, f"{prefix}_cols_w")]
    col_in = [f"{prefix}_rows", f"{prefix}_cols_w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, f"{prefix}_b"))
        col_in.append(f"{prefix}_b")
    out = [
        helper.make_node("Conv", [src, f"{prefix}_rows_w"], [f"{prefix}_rows"], name=f"{prefix}_rows",
                         kernel_shape=[1, kw], pads=[0, left, 0, right]),
        helper.make_node("Conv", col_in, [dst], name=f"{prefix}_cols", kernel_shape=[kh, 1], group=o,
                         pads=[top, 0, bottom, 0]),
    ]
    return out, inits


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The convolution being replaced, in plain float64 numpy (tests): (C, H, W) -> (O, H-KH+1, W-KW+1)."""
    o, _, kh, kw = weight.shape
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((o, h, w), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx].astype(np.float64), x[:, dy : dy + h, dx : dx + w])
    if bias is not None:
        out += bias[:, None, None]
    return out
