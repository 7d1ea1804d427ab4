"""A tiny CycleGAN ResNet generator built with onnx.helper: no torch, so the inference tests run on an
install without the ``train`` extra.

The graph is node for node what ``imgxlate-train``'s exporter writes for ``ResnetGenerator`` (opset 18:
reflect Pad + Conv for the stem, the residual blocks and the head; stride-2 Conv for the
down-sampling; InstanceNormalization without affine parameters; ConvTranspose or nearest Resize +
reflect Pad + Conv for the up-sampling; Tanh), with random weights (normal, std ``gain``, like
``init_weights(gain=0.2)``), dynamic batch/height/width, and imgxlate metadata. Conv biases are
left out, as the exporter does for convolutions followed by InstanceNorm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imgxlate._version import __version__
from imgxlate.metadata import METADATA_KEY, ModelMetadata

# Weight seeds of a2b and b2a. Some test bounds depend on the random draw: the video stabiliser's
# faithfulness bound (mean |stabilised - per-frame| < 8 on 0-255, tests/video) measured 8.4, 8.2, 6.7,
# 10.3, 5.3 and 7.3 for seeds 0-5 of this generator and 7.24 for the torch-exported fixture this one
# replaced; seed 5 is the draw closest to the former fixture, so the bounds keep their former margin.
SEEDS = {"a2b": 5, "b2a": 6}
OPSET = 18
IR_VERSION = 10  # what the torch exporter writes; every ONNX Runtime >= 1.16 loads it


class _Graph:
    def __init__(self, seed: int, gain: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.gain = gain
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def weight(self, *shape: int) -> str:
        return self.const((self.rng.standard_normal(shape) * self.gain).astype(np.float32), "w")

    def reflect(self, x: str, p: int) -> str:
        return self.node("Pad", [x, self.const(np.array([0, 0, p, p, 0, 0, p, p], np.int64), "pads")],
                         mode="reflect")

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> str:
        return self.node("Conv", [x, self.weight(cout, cin, k, k)], kernel_shape=[k, k], strides=[stride] * 2,
                         pads=[pad] * 4, dilations=[1, 1], group=1)

    def norm(self, x: str, c: int) -> str:
        scale = self.const(np.ones(c, np.float32), "scale")
        bias = self.const(np.zeros(c, np.float32), "bias")
        return self.node("InstanceNormalization", [x, scale, bias], epsilon=1e-5)


def generator_model(
    *, ngf: int = 8, n_blocks: int = 2, upsample: str = "transpose", seed: int = 0, gain: float = 0.2,
    down_padding: str = "zeros",
) -> onnx.ModelProto:
    """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [-1, 1], H and W multiples of 4; no metadata.

    ``down_padding``: "zeros" (the stride-2 convolutions pad with zeros, as generators trained before
    0.2 do; the default, which the tests' thresholds were set on) or "reflect" (the trainer's default
    since 0.2: a reflect Pad node before each stride-2 convolution)."""
    if upsample not in ("transpose", "resize"):
        raise ValueError(f"upsample must be transpose or resize, not {upsample!r}")
    if down_padding not in ("zeros", "reflect"):
        raise ValueError(f"down_padding must be zeros or reflect, not {down_padding!r}")
    g = _Graph(seed, gain)
    x = g.node("Relu", [g.norm(g.conv(g.reflect("input", 3), 3, ngf, 7), ngf)])
    for mult in (1, 2):  # down: ngf -> 2ngf -> 4ngf, H -> H/4
        if down_padding == "reflect":
            down = g.conv(g.reflect(x, 1), ngf * mult, ngf * mult * 2, 3, stride=2)
        else:
            down = g.conv(x, ngf * mult, ngf * mult * 2, 3, stride=2, pad=1)
        x = g.node("Relu", [g.norm(down, ngf * mult * 2)])
    dim = ngf * 4
    for _ in range(n_blocks):
        y = g.node("Relu", [g.norm(g.conv(g.reflect(x, 1), dim, dim, 3), dim)])
        y = g.norm(g.conv(g.reflect(y, 1), dim, dim, 3), dim)
        x = g.node("Add", [x, y])
    for mult in (4, 2):  # up: 4ngf -> 2ngf -> ngf, H/4 -> H
        cin, cout = ngf * mult, ngf * mult // 2
        if upsample == "transpose":
            x = g.node("ConvTranspose", [x, g.weight(cin, cout, 3, 3)], kernel_shape=[3, 3], strides=[2, 2],
                       pads=[1, 1, 1, 1], output_padding=[1, 1], dilations=[1, 1], group=1)
        else:
            scales = g.const(np.array([1, 1, 2, 2], np.float32), "scales")
            x = g.node("Resize", [x, "", scales], mode="nearest", nearest_mode="floor",
                       coordinate_transformation_mode="asymmetric")
            x = g.conv(g.reflect(x, 1), cin, cout, 3)
        x = g.node("Relu", [g.norm(x, cout)])
    head = g.conv(g.reflect(x, 3), ngf, 3, 7)
    g.nodes.append(helper.make_node("Tanh", [head], ["output"]))
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        g.nodes, "tiny_resnet_generator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_pair(
    out: Path, upsample: str = "transpose", name_a: str = "horse", name_b: str = "zebra", *, ngf: int = 8,
    n_blocks: int = 2,
) -> Path:
    """``out/a2b.onnx``, ``out/b2a.onnx`` (different random weights) with imgxlate metadata, and a
    README.md, as ``imgxlate-train export`` lays a pair out."""
    out.mkdir(parents=True, exist_ok=True)
    arch = {"generator": "resnet", "ngf": ngf, "n_blocks": n_blocks, "upsample": upsample}
    for direction, source, target in (("a2b", name_a, name_b), ("b2a", name_b, name_a)):
        model = generator_model(ngf=ngf, n_blocks=n_blocks, upsample=upsample, seed=SEEDS[direction])
        meta = ModelMetadata(
            pair=f"{name_a}2{name_b}", direction=direction, source=source, target=target, domain_a=name_a,
            domain_b=name_b, image_size=32, architecture=arch, imgxlate_version=__version__,
        )
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
        model.doc_string = f"imgxlate CycleGAN generator {source} -> {target} (random test weights)"
        (out / f"{direction}.onnx").write_bytes(model.SerializeToString())
    (out / "README.md").write_text(
        f"# {name_a}2{name_b}: {name_a} <-> {name_b}\n\nRandom-weight test generators (ngf {ngf}, "
        f"{n_blocks} residual blocks, upsampling `{upsample}`), built with onnx.helper.\n",
        encoding="utf-8",
    )
    return out
