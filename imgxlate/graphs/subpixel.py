"""Nearest 2x upsampling, reflect (or edge) padding by 1 and a 3x3 convolution, done at low resolution.

Used by the exact tiler's upsampling segments and by :mod:`.rewrite` on whole models.

The up-sampling blocks of a ``--upsample resize`` generator compute ``conv3x3(pad1(up2(L)))``. On the
up-sampled grid most of that work repeats: the four output pixels of one low-resolution pixel ``L[i]``
see the same few low-resolution values. Per output row ``o = 2i + p`` (phase ``p``), the kernel's
three taps read up-sampled rows ``o-1, o, o+1``, which are low-resolution rows:

- phase 0 (``o = 2i``): ``L[i-1], L[i], L[i]`` -> taps ``w0`` on ``L[i-1]`` and ``w1 + w2`` on ``L[i]``;
- phase 1 (``o = 2i+1``): ``L[i], L[i], L[i+1]`` -> taps ``w0 + w1`` on ``L[i]`` and ``w2`` on ``L[i+1]``.

Padding the up-sampled map by one row by reflection reads up-sampled row 1 = ``L[0]`` for row -1: the
same as padding ``L`` by one row by edge replication (also for ``edge`` mode, and at the end).
So each of the four (row, column) phases is a 2x2 convolution of the edge-padded low-resolution map
with summed taps, and the result is the phases interleaved. Per output pixel that is 4 multiply-adds
per input channel instead of 9, with no up-sampled copy of the input. The sums change the rounding of
float32 sums slightly (~1e-7 relative), not the result.

One convolution computes all four phases (``4 Cout`` channels on the padded ``(H+1, W+1)`` grid);
phase ``(py, px)`` of output pixel ``(i, j)`` sits at grid position ``(i + py, j + px)``. A grouped
``ConvTranspose`` (stride 2, 2x2 one-hot kernels, one group per output channel, pads 1) interleaves
them with that shift in one pass: output row ``r`` is row ``r + 1`` of the transposed convolution's
full output, which is ``2a + t`` with ``a = i + py`` and tap ``t = 1 - py``. Each output value is its
one phase value times 1 plus the other three times 0: the same number (finite values). Measured with
ONNX Runtime 1.31, 2 threads, 64 -> 32 channels at 380x394 -> 760x788: 40.6 ms, against 85.9 ms for
the four Slices + Concat + DepthToSpace this replaces (the convolution alone: ~26 ms); 128 -> 64 at
190x204: 40.3 against 58.0 ms; both up-sampling blocks of a 256 px image: 11.3 against 15.8 ms.

Pure functions and the nodes that compute them (:func:`nodes`); the exact tiler adds its crop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imgxlate.tiling.exact.graph import Op

def nearest_factors(attrs: dict[str, Any], scales: np.ndarray | None, sizes: np.ndarray | None) -> tuple[int, int] | None:
    """The (row, column) factors of a ``Resize`` node that is an integer nearest upsampling in the
    form ``out[o] = in[o // f]`` (mode nearest, asymmetric coordinates, floor rounding, constant
    scales 1, 1, fy, fx, no sizes, no antialiasing); None for any other Resize. ``attrs``: the node's
    attributes as ``onnx.helper.get_attribute_value`` gives them. The exact tiler and
    :mod:`.rewrite` both take a Resize only when this says so."""
    ok = (
        attrs.get("mode", b"nearest") == b"nearest"
        and attrs.get("coordinate_transformation_mode", b"half_pixel") == b"asymmetric"
        and attrs.get("nearest_mode", b"round_prefer_floor") == b"floor"
        and int(attrs.get("antialias", 0)) == 0
        and scales is not None
        and scales.size == 4
        and sizes is None
    )
    if not ok:
        return None
    assert scales is not None
    f = [float(v) for v in scales.reshape(-1)]
    if f[0] != 1 or f[1] != 1 or not all(v >= 1 and v == int(v) for v in f[2:]):
        return None
    return int(f[2]), int(f[3])


# Taps of the 3x3 kernel that land on each of the 2x2 kernel's positions, per phase (see above).
TAPS = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def applies(pre: tuple[Op, ...], head: Op) -> bool:
    """True for nearest 2x upsampling, then reflect/edge padding by 1, then a plain 3x3 convolution."""
    if len(pre) != 2 or pre[0].kind != "resize" or pre[1].kind != "pad" or head.kind != "conv":
        return False
    resize, pad = pre
    return (
        resize.s == (2, 2)
        and pad.attrs["mode"] in ("reflect", "edge")
        and pad.pb == (1, 1)
        and pad.pe == (1, 1)
        and head.k == (3, 3)
        and head.s == (1, 1)
        and head.d == (1, 1)
        and head.pb == (0, 0)
        and head.pe == (0, 0)
        and head.attrs["node"]["group"] == 1
    )


def kernels(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(Cout, Cin, 3, 3) -> the four phase kernels stacked: (4 Cout, Cin, 2, 2), phase ``k = 2 py + px``
    of output channel ``o`` at channel ``4 o + k`` (one interleave group per output channel), summed
    in float64; the bias repeated per phase."""
    w = weight.astype(np.float64)
    cout = w.shape[0]
    out = np.zeros((cout, 4, w.shape[1], 2, 2), np.float64)
    for py in (0, 1):
        for px in (0, 1):
            for a, rows in enumerate(TAPS[py]):
                for b, cols in enumerate(TAPS[px]):
                    out[:, 2 * py + px, :, a, b] = w[:, :, list(rows)][:, :, :, list(cols)].sum(axis=(2, 3))
    stacked = out.reshape(4 * cout, w.shape[1], 2, 2).astype(np.float32)
    return stacked, None if bias is None else np.repeat(bias.astype(np.float32), 4)


def interleave_kernel(cout: int) -> np.ndarray:
    """The grouped ``ConvTranspose`` weight (4 Cout, 1, 2, 2) that puts phase ``k = 2 py + px`` of
    channel ``o`` (input channel ``4 o + k``) at output pixel ``(2i + py, 2j + px)`` from grid
    position ``(i + py, j + px)``: tap ``(1 - py, 1 - px)`` with pads 1 (see the module docstring)."""
    w = np.zeros((cout, 4, 1, 2, 2), np.float32)
    for k in range(4):
        py, px = divmod(k, 2)
        w[:, k, 0, 1 - py, 1 - px] = 1.0
    return w.reshape(4 * cout, 1, 2, 2)


def nodes(prefix: str, src: str, dst: str, weight: np.ndarray, bias: np.ndarray | None) -> tuple[list[Any], list[Any]]:
    """The nodes from the low-resolution map ``src`` (N, C, H, W) to the up-sampled convolution's
    output ``dst`` (N, Cout, 2H, 2W), and their initializers (names start with ``prefix``): edge-pad
    by 1, one Conv with the four phase kernels stacked (:func:`kernels`), the interleave
    (:func:`interleave_kernel`)."""
    from onnx import helper, numpy_helper

    w4, b4 = kernels(weight, bias)
    cout = w4.shape[0] // 4
    inits = [
        numpy_helper.from_array(w4, f"{prefix}_w"),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), f"{prefix}_edge1"),
        numpy_helper.from_array(interleave_kernel(cout), f"{prefix}_il"),
    ]
    out = [helper.make_node("Pad", [src, f"{prefix}_edge1"], [f"{prefix}_lp"], mode="edge", name=f"{prefix}_pad")]
    conv_in = [f"{prefix}_lp", f"{prefix}_w"]
    if b4 is not None:
        inits.append(numpy_helper.from_array(b4, f"{prefix}_b"))
        conv_in.append(f"{prefix}_b")
    out.append(helper.make_node("Conv", conv_in, [f"{prefix}_phases"], name=f"{prefix}_conv",
                                kernel_shape=[2, 2], pads=[0, 0, 0, 0]))
    out.append(helper.make_node("ConvTranspose", [f"{prefix}_phases", f"{prefix}_il"], [dst], name=f"{prefix}_interleave",
                                kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], group=cout))
    return out, inits


def low_rows(o0: int, o1: int, n_low: int) -> tuple[int, int]:
    """Low-resolution rows [r0, r1) whose phases cover output rows [o0, o1) of the 2 n_low-row map,
    with the neighbour rows those phases read; rows a phase would read past [r0, r1) only feed
    outputs outside [o0, o1) (or, at the true border, are the edge rows the padding gives)."""
    return max(0, (o0 - 1) // 2), min(n_low, o1 // 2 + 1)


def reference(low: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, mode: str = "reflect") -> np.ndarray:
    """The computation being replaced, in plain numpy (tests): (C, H, W) -> (Cout, 2H, 2W)."""
    up = low.repeat(2, axis=1).repeat(2, axis=2)
    padded = np.pad(up, ((0, 0), (1, 1), (1, 1)), mode=mode)
    h, w = up.shape[1:]
    out = np.zeros((weight.shape[0], h, w), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], padded[:, dy : dy + h, dx : dx + w])
    if bias is not None:
        out += bias[:, None, None]
    return out
