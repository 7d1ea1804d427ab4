"""Whole-model rewrites for ONNX Runtime on the CPU (graphs/rewrite.py), and where they apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_generator import generator_model

import imgxlate
from imgxlate import engine
from imgxlate.errors import InvalidModelError
from imgxlate.graphs import rewrite

BUNDLED = Path(imgxlate.__file__).parent / "models" / "vangogh2photo" / "b2a.onnx"
# float32 rounding of a rewritten graph against the file's own. It stayed under 2e-5 on the machines
# of earlier sessions and reached 2.4e-5 on an AVX2-only CPU (the tiny resize generator, 2-core EPYC
# VM, ONNX Runtime 1.32): the kernels, and so the rounding, depend on the CPU's instruction set.
TOL = 5e-5


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _ops(data: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_model_from_string(data).graph.node]


@pytest.mark.parametrize(
    ("upsample", "applied"),
    [("resize", ("rowconv", "subpixel", "subpixel", "rowconv")), ("transpose", ("rowconv", "rowconv"))],
)
def test_tiny_generators_same_output(upsample: str, applied: tuple[str, ...]) -> None:
    """The stem (3 -> 8) and the head (8 -> 3) split by rows, each resize block in phase form; the
    output equal to the file's own within float32 rounding, at sizes whose halves are odd."""
    data = generator_model(upsample=upsample, seed=3).SerializeToString()
    got = rewrite.for_cpu(data)
    assert got is not None and got.applied == applied
    assert "Resize" not in _ops(got.data)
    onnx.checker.check_model(onnx.load_model_from_string(got.data), full_check=True)
    rng = np.random.default_rng(0)
    for h, w in [(8, 12), (12, 20), (36, 28)]:
        x = rng.uniform(-1, 1, (2, 3, h, w)).astype(np.float32)
        assert np.abs(_run(got.data, x) - _run(data, x)).max() < TOL


def test_bundled_model() -> None:
    got = rewrite.for_cpu(BUNDLED)
    assert got is not None and got.applied == ("subpixel", "subpixel", "rowconv")
    # The replaced weights are gone, not carried along unused.
    names = {i.name for i in onnx.load_model_from_string(got.data).graph.initializer}
    assert "model.30.weight" not in names and "model.21.weight" not in names
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 96)).astype(np.float32)
    assert np.abs(_run(got.data, x) - _run(BUNDLED.read_bytes(), x)).max() < TOL


def test_a_resize_used_twice_is_left_alone() -> None:
    """The pattern's Resize and Pad must feed only the convolution they are folded into."""
    model = generator_model(upsample="resize", seed=4)
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    model.graph.output.append(helper.make_tensor_value_info(resize.output[0], TensorProto.FLOAT, None))
    data = model.SerializeToString()
    got = rewrite.for_cpu(data)
    assert got is not None and got.applied == ("rowconv", "subpixel", "rowconv")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    assert np.abs(_run(got.data, x) - _run(data, x)).max() < TOL


def test_nothing_to_rewrite_or_not_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert rewrite.for_cpu(plain) is None
    assert rewrite.for_cpu(b"this is not an ONNX file") is None
    monkeypatch.setenv(rewrite.ENV, "0")
    assert rewrite.for_cpu(BUNDLED) is None


def test_float16_weights_are_left_alone() -> None:
    model = generator_model(seed=5)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 4:
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), init.name))
    assert rewrite.for_cpu(model.SerializeToString()) is None


def test_engine_on_cpu_runs_the_rewritten_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_runner is the one place: an ONNX Runtime CPU engine says what it rewrote, and
    IMGXLATE_GRAPH_REWRITES=0 gives the file as it is (what the benchmarks compare)."""
    e = engine.Engine(BUNDLED, device="cpu", threads=1, backend="onnxruntime")
    assert e.runner.rewrites == ("subpixel", "subpixel", "rowconv")
    monkeypatch.setenv(rewrite.ENV, "0")
    plain = engine.Engine(BUNDLED, device="cpu", threads=1, backend="onnxruntime")
    assert plain.runner.rewrites == ()
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 32, 48)).astype(np.float32)
    assert np.abs(e.run(x) - plain.run(x)).max() < TOL


def test_a_broken_file_is_still_named(tmp_path: Path) -> None:
    """A model ONNX Runtime refuses after the rewrite: the error names the file, not "the model"."""
    model = generator_model(seed=6)
    model.graph.node[-1].op_type = "NoSuchOp"
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModelError, match="broken.onnx"):
        engine.make_runner(path, engine.CPU, engine.ORT, 1)


def test_weights_listed_as_graph_inputs_are_dropped_from_the_inputs_with_the_weights(tmp_path: Path) -> None:
    """torch.onnx.export(keep_initializers_as_inputs=True) lists every weight as an input too: the
    replaced weights were dropped but stayed inputs, and the model was refused as having 3 inputs."""
    model = generator_model(upsample="resize", seed=8)
    model.graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                             for i in model.graph.initializer)
    data = model.SerializeToString()
    got = rewrite.for_cpu(data)
    assert got is not None and "rowconv" in got.applied
    out = onnx.load_model_from_string(got.data).graph
    kept = {i.name for i in out.initializer}
    assert [i.name for i in out.input if i.name not in kept] == [model.graph.input[0].name]
    path = tmp_path / "keep_inputs.onnx"
    path.write_bytes(data)
    e = engine.Engine(path, device="cpu", threads=1, backend="onnxruntime")
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 12, 16)).astype(np.float32)
    assert np.abs(e.run(x) - _run(data, x)).max() < TOL


def test_a_padded_small_conv_keeps_its_padding() -> None:
    """A 5x5 conv with its own zero padding (other exporters write the head so): rows padded left /
    right, the column sum top / bottom, the same output size and values."""
    rng = np.random.default_rng(7)
    weight = numpy_helper.from_array(rng.normal(size=(3, 4, 5, 5)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[5, 5], pads=[2, 1, 2, 3])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, bias])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    got = rewrite.for_cpu(data)
    assert got is not None and got.applied == ("rowconv",)
    x = rng.normal(size=(1, 4, 9, 11)).astype(np.float32)
    want = _run(data, x)
    assert want.shape == (1, 3, 9, 11 + 4 - 4) and np.abs(_run(got.data, x) - want).max() < 1e-4
