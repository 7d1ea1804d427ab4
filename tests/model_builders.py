"""Tiny ONNX "models" built with onnx.helper (no torch): a valid 1x1-conv generator and models that
are not generators (classifier, half size, constant, NaN), for the model checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def build(path: Path, kind: str = "conv", meta: dict | None = None, elem_type: int | None = None) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if elem_type is None else elem_type
    x = helper.make_tensor_value_info("input", elem, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("output", elem, None)
    inits = []
    if kind == "conv":  # a colour mix: output depends on the input, same size
        w = np.array([[0.5, 0.3, 0.1], [0.2, 0.6, 0.1], [0.1, 0.2, 0.7]], np.float32).reshape(3, 3, 1, 1)
        inits.append(numpy_helper.from_array(w, "w"))
        nodes = [helper.make_node("Conv", ["input", "w"], ["t"]), helper.make_node("Tanh", ["t"], ["output"])]
    elif kind in ("two_outputs", "two_unnamed"):  # a feature map first, then the image
        w = np.array([[0.5, 0.3, 0.1], [0.2, 0.6, 0.1], [0.1, 0.2, 0.7]], np.float32).reshape(3, 3, 1, 1)
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(-w, "v")]
        image = "output" if kind == "two_outputs" else "b"
        nodes = [helper.make_node("Conv", ["input", "w"], ["t"]), helper.make_node("Tanh", ["t"], [image]),
                 helper.make_node("Conv", ["input", "v"], ["features" if kind == "two_outputs" else "a"])]
        y = helper.make_tensor_value_info(image, elem, None)
        first = helper.make_tensor_value_info("features" if kind == "two_outputs" else "a", elem, None)
        graph = helper.make_graph(nodes, kind, [x], [first, y], inits)
        return _save(graph, path, meta)
    elif kind == "range255":  # an image in [0, 255], as some exporters leave it
        w = np.array([[0.5, 0.3, 0.1], [0.2, 0.6, 0.1], [0.1, 0.2, 0.7]], np.float32).reshape(3, 3, 1, 1)
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([127.5], np.float32), "k")]
        nodes = [helper.make_node("Conv", ["input", "w"], ["t"]), helper.make_node("Tanh", ["t"], ["u"]),
                 helper.make_node("Add", ["u", "one"], ["v"]), helper.make_node("Mul", ["v", "k"], ["output"])]
        inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    elif kind == "classifier":
        nodes = [helper.make_node("GlobalAveragePool", ["input"], ["output"])]
    elif kind == "half":
        nodes = [helper.make_node("AveragePool", ["input"], ["output"], kernel_shape=[2, 2], strides=[2, 2])]
    elif kind == "constant":
        inits.append(numpy_helper.from_array(np.zeros((1,), np.float32), "zero"))
        nodes = [helper.make_node("Mul", ["input", "zero"], ["output"])]
    elif kind == "nan":
        inits.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan"))
        nodes = [helper.make_node("Add", ["input", "nan"], ["output"])]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, kind, [x], [y], inits)
    return _save(graph, path, meta)


def _save(graph: object, path: Path, meta: dict | None) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        helper.set_model_props(model, {"imgxlate": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def meta(pair: str = "cat2dog", direction: str = "a2b", a: str = "cat", b: str = "dog", **extra: object) -> dict:
    src, dst = (a, b) if direction == "a2b" else (b, a)
    return {"schema_version": 1, "pair": pair, "direction": direction, "source": src, "target": dst,
            "domain_a": a, "domain_b": b, **extra}


def pair_folder(folder: Path, pair: str = "cat2dog", a: str = "cat", b: str = "dog",
                directions: tuple[str, ...] = ("a2b", "b2a"), card: bool = True) -> Path:
    for d in directions:
        build(folder / f"{d}.onnx", meta=meta(pair, d, a, b))
    if card:
        (folder / "README.md").write_text(f"# {pair}\n\nmodel card\n")
    return folder
