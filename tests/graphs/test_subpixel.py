"""The low-resolution form of nearest 2x upsampling + pad 1 + 3x3 conv (graphs/subpixel.py)."""

from __future__ import annotations

import numpy as np
import pytest

from imgxlate.graphs import subpixel


def _phases(low: np.ndarray, w4: np.ndarray, b4: np.ndarray | None) -> np.ndarray:
    """Edge-pad by 1, 2x2 convolution with the stacked phase kernels, interleave (numpy)."""
    _, h, w = low.shape
    lp = np.pad(low.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    conv = np.zeros((w4.shape[0], h + 1, w + 1))
    for a in range(2):
        for b in range(2):
            conv += np.einsum("oc,chw->ohw", w4[:, :, a, b], lp[:, a : a + h + 1, b : b + w + 1])
    if b4 is not None:
        conv += b4[:, None, None]
    out = np.zeros((w4.shape[0] // 4, 2 * h, 2 * w))
    for py in (0, 1):
        for px in (0, 1):
            k = 2 * py + px  # phase k of output channel o is channel 4 o + k
            out[:, py::2, px::2] = conv[k::4, py : py + h, px : px + w]
    return out


@pytest.mark.parametrize("mode", ["reflect", "edge"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 3), (5, 4)])
def test_phases_equal_upsample_pad_conv(mode: str, h: int, w: int) -> None:
    rng = np.random.default_rng(h * 10 + w)
    low = rng.normal(size=(3, h, w))
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    w4, b4 = subpixel.kernels(weight, bias)
    assert w4.shape == (16, 3, 2, 2) and b4 is not None and b4.shape == (16,)
    ref = subpixel.reference(low, weight.astype(np.float64), bias.astype(np.float64), mode)
    assert np.abs(_phases(low, w4, b4) - ref).max() < 1e-4


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 2), (6, 9)])
def test_nodes_equal_upsample_pad_conv_in_onnxruntime(bias: bool, h: int, w: int) -> None:
    """The graph :func:`subpixel.nodes` builds (stacked phase conv, then the grouped ConvTranspose
    interleave) against the computation it replaces, in plain numpy; and the interleave alone puts
    every phase value in its place unchanged (bit for bit)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(h * 100 + w)
    cin, cout = 3, 5
    low = rng.normal(size=(1, cin, h, w)).astype(np.float32)
    weight = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32) if bias else None
    nodes, inits = subpixel.nodes("sp", "x", "y", weight, b)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": low})[0]
    ref = subpixel.reference(low[0].astype(np.float64), weight.astype(np.float64),
                             None if b is None else b.astype(np.float64), "reflect")
    assert got.shape == (1, cout, 2 * h, 2 * w)
    assert np.abs(got[0] - ref).max() < 1e-4

    phases = rng.normal(size=(1, 4 * cout, h + 1, w + 1)).astype(np.float32)
    node = next(n for n in nodes if n.op_type == "ConvTranspose")
    il = helper.make_node("ConvTranspose", ["p", "sp_il"], ["y"], **{a.name: helper.get_attribute_value(a) for a in node.attribute})
    graph = helper.make_graph([il], "g", [helper.make_tensor_value_info("p", TensorProto.FLOAT, list(phases.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [i for i in inits if i.name == "sp_il"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"p": phases})[0]
    for py in (0, 1):
        for px in (0, 1):
            k = 2 * py + px
            assert np.array_equal(out[0, :, py::2, px::2], phases[0, k::4, py : py + h, px : px + w])


@pytest.mark.parametrize("n", [1, 2, 7, 8])
def test_low_rows_cover_every_output_row(n: int) -> None:
    """Every output row of a window is computed from low rows inside [r0, r1) (its phase's two rows,
    with the edge row standing in at the true border)."""
    for o0 in range(2 * n):
        for o1 in range(o0 + 1, 2 * n + 1):
            r0, r1 = subpixel.low_rows(o0, o1, n)
            assert 0 <= r0 < r1 <= n
            for o in range(o0, o1):
                i, p = divmod(o, 2)
                reads = (i - 1, i) if p == 0 else (i, i + 1)
                for r in reads:  # inside the window, or past the true border (the edge pad's row)
                    assert r0 <= r < r1 or r in (-1, n)


@pytest.mark.parametrize(
    ("attrs", "scales", "sizes", "expected"),
    [
        ({"mode": b"nearest", "coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"},
         [1, 1, 2, 2], None, (2, 2)),
        ({"coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}, [1, 1, 3, 2], None, (3, 2)),
        ({"coordinate_transformation_mode": b"half_pixel", "nearest_mode": b"floor"}, [1, 1, 2, 2], None, None),
        ({"coordinate_transformation_mode": b"asymmetric"}, [1, 1, 2, 2], None, None),  # round_prefer_floor
        ({"mode": b"linear", "coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"},
         [1, 1, 2, 2], None, None),
        ({"coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}, [1, 1, 1.5, 2], None, None),
        ({"coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}, [1, 2, 2, 2], None, None),
        ({"coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}, None, [1, 3, 8, 8], None),
        ({"coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor", "antialias": 1},
         [1, 1, 2, 2], None, None),
    ],
)
def test_nearest_factors(attrs: dict, scales: list | None, sizes: list | None, expected: tuple | None) -> None:
    """The one test of "a Resize the tiler and the rewrite can take": out[o] = in[o // f]."""
    as_array = lambda v: None if v is None else np.array(v, np.float32)
    assert subpixel.nearest_factors(attrs, as_array(scales), as_array(sizes)) == expected
