"""A small-output KxK convolution as a row convolution and a column sum (graphs/rowconv.py)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from imgxlate.graphs import rowconv


def _run(nodes: list, inits: list, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(("o", "c", "kh", "kw"), [(3, 5, 7, 7), (1, 4, 5, 3), (8, 2, 3, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_split_equals_the_convolution(o: int, c: int, kh: int, kw: int, bias: bool) -> None:
    rng = np.random.default_rng(o * 100 + kh)
    weight = rng.normal(size=(o, c, kh, kw)).astype(np.float32)
    b = rng.normal(size=o).astype(np.float32) if bias else None
    x = rng.normal(size=(1, c, 13, 11)).astype(np.float32)
    nodes, inits = rowconv.nodes("t", "x", "y", weight, b)
    ref = rowconv.reference(x[0].astype(np.float64), weight, b)
    assert np.abs(_run(nodes, inits, x)[0] - ref).max() < 1e-4


def test_zero_padding_splits_between_rows_and_columns() -> None:
    """(top, left, bottom, right) padding of the original conv: all four sides differ."""
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(3, 4, 5, 5)).astype(np.float32)
    x = rng.normal(size=(1, 4, 9, 10)).astype(np.float32)
    pads = (1, 2, 3, 4)
    nodes, inits = rowconv.nodes("t", "x", "y", weight, None, pads=pads)
    padded = np.pad(x[0].astype(np.float64), ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    got = _run(nodes, inits, x)[0]
    ref = rowconv.reference(padded, weight, None)
    assert got.shape == ref.shape == (3, 9 + 4 - 4, 10 + 6 - 4)
    assert np.abs(got - ref).max() < 1e-4


def test_kernels_layout() -> None:
    weight = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
    rows, cols = rowconv.kernels(weight)
    assert rows.shape == (6, 3, 1, 4) and cols.shape == (2, 3, 3, 1)
    np.testing.assert_array_equal(rows[1 * 3 + 2, :, 0, :], weight[1, :, 2, :])  # channel o*KH + dy
    assert cols.sum() == 6 and all(cols[o, dy, dy, 0] == 1 for o in range(2) for dy in range(3))


@pytest.mark.parametrize(
    ("shape", "attrs", "expected"),
    [
        ((3, 32, 7, 7), {}, True),
        ((3, 32, 7, 7), {"strides": [1, 1], "dilations": [1, 1], "group": 1, "pads": [3, 3, 3, 3]}, True),
        ((8, 32, 3, 3), {}, True),
        ((9, 32, 7, 7), {}, False),  # wide enough for the kernels as it is
        ((3, 32, 1, 1), {}, False),  # a 1x1 conv has no rows to split
        ((3, 32, 7, 7), {"strides": [2, 2]}, False),
        ((3, 32, 7, 7), {"dilations": [2, 2]}, False),
        ((3, 3, 7, 7), {"group": 3}, False),
        ((3, 32, 7, 7), {"auto_pad": b"SAME_UPPER"}, False),
    ],
)
def test_applies(shape: tuple[int, ...], attrs: dict, expected: bool) -> None:
    assert rowconv.applies(np.zeros(shape, np.float32), attrs) is expected
