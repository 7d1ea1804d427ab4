"""The exact tiler's view of an ONNX generator: a list of spatial ops and their window geometry.

:class:`Graph` reads the ONNX file once into ops (Pad, Conv, ConvTranspose, Resize, elementwise,
InstanceNormalization) and answers the geometric questions the planner asks: the size of every tensor
for an image size (:meth:`Graph.sizes`), which input rows an output window of an op depends on
(:func:`need`), which ops compute a tensor from a set of stored ones (:meth:`Graph.subgraph`) and
which elementwise ops can run fused after a convolution (:meth:`Graph.chain`). Anything it cannot
cut exactly raises :class:`InvalidModelError` ("... use --tiling blend"). Nothing here runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgxlate.errors import InvalidModelError, UsageError
from imgxlate.graphs.subpixel import nearest_factors

Region = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open) in the tensor's own pixel grid

UNARY: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda x, out: np.maximum(x, 0, out=out),
    "Tanh": lambda x, out: np.tanh(x, out=out),
    "Sigmoid": lambda x, out: np.divide(1.0, np.add(1.0, np.exp(-x), out=out), out=out),
    "Identity": lambda x, out: x,
}
BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
# Elementwise ops that may run inside a convolution's segment graph.
FUSABLE_UNARY = ("Relu", "Tanh", "Sigmoid", "LeakyRelu", "Identity")


@dataclass(eq=False)
class Op:
    """One graph node in tiler form. ``inputs`` are the spatial tensor inputs only; constants of
    elementwise ops are in ``consts`` (same position, None for tensors)."""

    kind: str  # unary, binary, norm, pad, conv, convT, resize
    name: str
    inputs: list[str]
    output: str
    op_type: str = ""
    consts: list[np.ndarray | None] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    # per spatial axis (H, W): kernel, stride, dilation, pad_begin, pad_end, output_padding / factor
    k: tuple[int, int] = (1, 1)
    s: tuple[int, int] = (1, 1)
    d: tuple[int, int] = (1, 1)
    pb: tuple[int, int] = (0, 0)
    pe: tuple[int, int] = (0, 0)
    op_pad: tuple[int, int] = (0, 0)
    norm_index: int = -1


def fail(path: str, why: str) -> InvalidModelError:
    return InvalidModelError(f"{path} cannot be tiled exactly ({why}); use --tiling blend")


def pad_need(q0: int, q1: int, n: int, pb: int, mode: str) -> tuple[int, int, int, int, int]:
    """Which input rows a padded window needs.

    The padded axis has ``pb`` rows before the ``n`` real rows. For the window [q0, q1) of the
    padded axis return (u0, u1, a, b, start): read real rows [u0, u1), pad ``a`` rows before and
    ``b`` after (``a``/``b`` > 0 only where the window crosses the real border), and the padded
    result then covers padded rows [start, start + a + (u1 - u0) + b) which contain [q0, q1).
    """
    u0 = min(max(0, q0 - pb), n - 1)
    u1 = max(min(n, q1 - pb), u0 + 1)
    a = max(0, pb - q0)
    b = max(0, q1 - pb - n)
    if mode == "reflect":  # reflect of width a reads real rows 1..a (and n-1-b..n-2 at the end)
        if a:
            u1 = max(u1, min(n, a + 1))
        if b:
            u0 = min(u0, max(0, n - 1 - b))
    elif mode == "edge":
        if a:
            u1 = max(u1, 1)
        if b:
            u0 = min(u0, n - 1)
    return u0, u1, a, b, u0 + pb - a



def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """Split [0, n) into ceil(n / size) nearly equal half-open pieces."""
    count = max(1, -(-n // max(1, size)))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count) if edges[i + 1] > edges[i]]



def need(op: Op, ax: int, o0: int, o1: int, n_in: int) -> tuple[int, int]:
    """Input rows [i0, i1) along axis ``ax`` that output rows [o0, o1) of ``op`` depend on."""
    if op.kind in ("unary", "binary", "norm"):
        return o0, o1
    if op.kind == "pad":
        u0, u1, *_ = pad_need(o0, o1, n_in, op.pb[ax], op.attrs["mode"])
        return u0, u1
    if op.kind == "conv":
        s, span = op.s[ax], op.d[ax] * (op.k[ax] - 1)
        u0, u1, *_ = pad_need(o0 * s, (o1 - 1) * s + span + 1, n_in, op.pb[ax], "constant")
        return u0, u1
    if op.kind == "convT":
        s, span, pb = op.s[ax], op.d[ax] * (op.k[ax] - 1), op.pb[ax]
        # output o = i*s - pb + j*d for kernel tap j: inputs floor((o+pb-span)/s) .. floor((o+pb)/s)
        i0 = max(0, (o0 + pb - span) // s)
        i1 = min(n_in, (o1 - 1 + pb) // s + 1)
        return i0, max(i1, i0 + 1)
    # resize (nearest, asymmetric, floor): out[o] = in[o // f]
    f = op.s[ax]
    return o0 // f, (o1 - 1) // f + 1



class Graph:
    """The spatial ops of one ONNX generator, in graph order, with producers and consumers."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        import onnx
        from onnx import numpy_helper

        self.path = str(model_path)
        try:
            model = onnx.load(self.path)
        except Exception as exc:  # onnx raises DecodeError, FileNotFoundError, ...
            raise InvalidModelError(f"{self.path} is not a readable ONNX file ({exc})") from exc
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=18)
        self.ir_version = model.ir_version
        graph = model.graph
        consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise fail(self.path, "it needs exactly one image input and one output")
        self.input_name = inputs[0].name
        self.output_name = graph.output[0].name
        self.ops: list[Op] = []
        self.producer: dict[str, Op] = {}
        spatial = {self.input_name}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        consts[node.output[0]] = numpy_helper.to_array(attr.t)
                        break
                else:
                    raise fail(self.path, f"Constant node {node.name!r} without a tensor value")
                continue
            op = self._parse(node, consts, spatial)
            spatial.add(op.output)
            self.ops.append(op)
            self.producer[op.output] = op
        if self.output_name not in self.producer:
            raise fail(self.path, "the output is not computed from the input")
        self.consumers: dict[str, list[Op]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):
                self.consumers.setdefault(t, []).append(op)
        self.consumers.setdefault(self.output_name, []).append(Op("output", "output", [], ""))
        self.norms = [op for op in self.ops if op.kind == "norm"]
        for i, op in enumerate(self.norms):
            op.norm_index = i
        self.position = {id(op): i for i, op in enumerate(self.ops)}
        self.multiple = self._size_multiple()

    def _parse(self, node: Any, consts: dict[str, np.ndarray], spatial: set[str]) -> Op:
        import onnx

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        t, name = node.op_type, node.name or node.output[0]
        if len(node.output) != 1:
            raise fail(self.path, f"{t} node {name!r} has {len(node.output)} outputs")
        out = node.output[0]
        data = [i for i in node.input if i in spatial]
        if (
            t in ("Conv", "ConvTranspose", "Pad", "Resize", "InstanceNormalization")
            or t in UNARY
            or t
            in (
                "LeakyRelu",
                "Clip",
            )
        ):
            if not node.input or node.input[0] not in spatial:
                raise fail(self.path, f"{t} node {name!r} does not read an image tensor")
            if any(i in spatial for i in node.input[1:]):
                raise fail(self.path, f"{t} node {name!r} has a computed (non-constant) parameter")
        for extra in node.input[1:]:
            if extra and extra not in spatial and extra not in consts:
                raise fail(self.path, f"{t} node {name!r} reads {extra!r}, which is not a constant")

        def const(i: int) -> np.ndarray | None:
            return consts[node.input[i]] if len(node.input) > i and node.input[i] else None

        if t in ("Conv", "ConvTranspose"):
            return self._parse_conv(node, t, name, out, attrs, consts)
        if t == "InstanceNormalization":
            scale, bias = const(1), const(2)
            if scale is None or bias is None:
                raise fail(self.path, f"InstanceNormalization {name!r} lacks scale or bias")
            return Op(
                "norm",
                name,
                data[:1],
                out,
                t,
                consts=[scale.astype(np.float32), bias.astype(np.float32)],
                attrs={"epsilon": float(attrs.get("epsilon", 1e-5))},
            )
        if t == "Pad":
            pads = const(1)
            if pads is None:
                raise fail(self.path, f"Pad {name!r} has no constant pads")
            pads = [int(p) for p in pads.reshape(-1)]
            axes = const(3)
            rank = 4
            full = [0] * (2 * rank)
            ax = [int(a) % rank for a in axes.reshape(-1)] if axes is not None else list(range(rank))
            for j, a in enumerate(ax):
                full[a], full[a + rank] = pads[j], pads[j + len(ax)]
            if full[0] or full[1] or full[4] or full[5] or min(full) < 0:
                raise fail(self.path, f"Pad {name!r} pads batch/channel axes or crops")
            mode = attrs.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            if mode not in ("constant", "reflect", "edge"):
                raise fail(self.path, f"Pad {name!r} uses mode {mode!r}")
            value = const(2)
            return Op(
                "pad",
                name,
                data[:1],
                out,
                t,
                attrs={"mode": mode, "value": float(value.reshape(-1)[0]) if value is not None else 0.0},
                pb=(full[2], full[3]),
                pe=(full[6], full[7]),
            )
        if t == "Resize":
            factors = nearest_factors(attrs, const(2), const(3))
            if factors is None:
                raise fail(
                    self.path, f"Resize {name!r} is not an integer nearest (asymmetric, floor) upsampling"
                )
            return Op("resize", name, data[:1], out, t, s=factors)
        if t in UNARY or t in ("LeakyRelu", "Clip"):
            op = Op("unary", name, data[:1], out, t)
            if t == "LeakyRelu":
                op.attrs["alpha"] = float(attrs.get("alpha", 0.01))
            if t == "Clip":
                lo, hi = const(1), const(2)
                op.attrs["min"] = float(lo) if lo is not None else -np.inf
                op.attrs["max"] = float(hi) if hi is not None else np.inf
            return op
        if t in BINARY:
            if len(node.input) != 2 or not data:
                raise fail(self.path, f"{t} node {name!r} is not a binary op on image tensors")
            ins, cs = [], []
            for i in node.input:
                if i in spatial:
                    ins.append(i)
                    cs.append(None)
                else:
                    c = consts[i].astype(np.float32)
                    if c.ndim > 4 or (c.ndim >= 2 and any(v != 1 for v in c.shape[-2:])):
                        raise fail(self.path, f"{t} node {name!r} has a spatially varying constant")
                    cs.append(c)
            return Op("binary", name, ins, out, t, consts=cs)
        raise fail(self.path, f"unsupported op {t} in node {name!r}")

    def _parse_conv(
        self, node: Any, t: str, name: str, out: str, attrs: dict[str, Any], consts: dict[str, np.ndarray]
    ) -> Op:
        weight = consts.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or weight.ndim != 4:
            raise fail(self.path, f"{t} {name!r} has no constant 2-D kernel")
        bias = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if auto_pad not in (b"NOTSET", b"VALID") or "output_shape" in attrs:
            raise fail(self.path, f"{t} {name!r} uses auto_pad/output_shape")
        k = tuple(int(v) for v in attrs.get("kernel_shape", weight.shape[2:]))
        s = tuple(int(v) for v in attrs.get("strides", (1, 1)))
        d = tuple(int(v) for v in attrs.get("dilations", (1, 1)))
        pads = [int(v) for v in attrs.get("pads", (0, 0, 0, 0))] if auto_pad == b"NOTSET" else [0, 0, 0, 0]
        opad = tuple(int(v) for v in attrs.get("output_padding", (0, 0)))
        if len(k) != 2 or len(s) != 2 or len(d) != 2 or len(pads) != 4:
            raise fail(self.path, f"{t} {name!r} is not a 2-D convolution")
        op = Op("conv" if t == "Conv" else "convT", name, [node.input[0]], out, t, k=k, s=s, d=d)
        op.pb, op.pe, op.op_pad = (pads[0], pads[1]), (pads[2], pads[3]), opad
        if t == "ConvTranspose":
            for ax in range(2):
                # Tiles read one input row per stride of output; the crop below needs the local
                # output to reach past the window, which holds when d(k-1) >= s-1, and the
                # output_padding rows (no input contributes) to be cut by the end pad.
                if d[ax] * (k[ax] - 1) < s[ax] - 1 or opad[ax] > op.pe[ax]:
                    raise fail(self.path, f"ConvTranspose {name!r} has an unsupported stride/padding")
        op.attrs["node"] = {
            "kernel_shape": list(k),
            "strides": list(s),
            "dilations": list(d),
            "pads": [0, 0, 0, 0],
            "group": int(attrs.get("group", 1)),
        }
        op.consts = [weight.astype(np.float32), None if bias is None else bias.astype(np.float32)]
        return op

    def chain(self, head: Op, target: str, in_job: set[int]) -> tuple[Op, ...]:
        """Elementwise ops after conv ``head`` that can run inside its session: each consumes the
        previous one's output, which nothing else reads and which is not the job's target."""
        chain: list[Op] = []
        tail = head
        while tail.output != target:
            users = self.consumers.get(tail.output, [])
            if len(users) != 1 or id(users[0]) not in in_job:
                break
            nxt = users[0]
            if nxt.kind == "unary" and nxt.op_type in FUSABLE_UNARY or nxt.kind == "norm":
                pass
            elif nxt.kind == "binary" and head.kind == "conv":
                # (a ConvTranspose output is cropped after the session, tensor operands would not fit)
                pass
            else:
                break
            chain.append(nxt)
            tail = nxt
        return tuple(chain)

    def _size_multiple(self) -> int:
        """Product of the downsampling strides on the way to the lowest resolution (4 for CycleGAN)."""
        scale: dict[str, float] = {self.input_name: 1.0}
        for op in self.ops:
            x = scale[op.inputs[0]]
            if op.kind == "conv":
                x /= op.s[0]
            elif op.kind in ("convT", "resize"):
                x *= op.s[0]
            scale[op.output] = x
        return max(1, round(1.0 / min(scale.values())))

    # --------------------------------------------------------------------------------- geometry

    def sizes(self, h: int, w: int) -> dict[str, tuple[int, int]]:
        sizes = {self.input_name: (h, w)}
        for op in self.ops:
            n = sizes[op.inputs[0]]
            out = []
            for ax in range(2):
                v = n[ax]
                if op.kind == "pad":
                    v = v + op.pb[ax] + op.pe[ax]
                    if op.attrs["mode"] == "reflect" and max(op.pb[ax], op.pe[ax]) >= n[ax]:
                        raise UsageError(
                            f"the image is too small for this model ({h}x{w} pixels after padding); "
                            "use a larger image"
                        )
                elif op.kind == "conv":
                    v = (v + op.pb[ax] + op.pe[ax] - op.d[ax] * (op.k[ax] - 1) - 1) // op.s[ax] + 1
                elif op.kind == "convT":
                    v = (
                        (v - 1) * op.s[ax]
                        + op.op_pad[ax]
                        + op.d[ax] * (op.k[ax] - 1)
                        + 1
                        - op.pb[ax]
                        - op.pe[ax]
                    )
                elif op.kind == "resize":
                    v = v * op.s[ax]
                if v < 1:
                    raise UsageError(f"the image is too small for this model ({h}x{w} pixels after padding)")
                out.append(v)
            for other in op.inputs[1:]:
                if sizes[other] != n:
                    raise InvalidModelError(
                        f"{self.path}: {op.op_type} {op.name!r} adds maps of different sizes at {h}x{w}"
                    )
            sizes[op.output] = (out[0], out[1])
        return sizes


    def subgraph(self, target: str, stored: set[str] | dict[str, Any]) -> tuple[list[Op], set[str]]:
        """Ops (graph order) computing ``target`` from stored tensors, and the stored tensors read."""
        ops: set[int] = set()
        sources: set[str] = set()
        stack = [target]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in stored:
                sources.add(t)
                continue
            op = self.producer.get(t)
            if op is None:
                raise InvalidModelError(f"{self.path}: tensor {t!r} has no producer")
            ops.add(id(op))
            stack.extend(op.inputs)
        return [op for op in self.ops if id(op) in ops], sources

    @staticmethod
    def group_inputs(head: Op, chain: tuple[Op, ...]) -> list[str]:
        """Tensors a (head, chain) group reads: the head's inputs and the chain's other operands."""
        names = list(head.inputs)
        prev = head.output
        for op in chain:
            names += [t for t in op.inputs if t != prev]
            prev = op.output
        return list(dict.fromkeys(names))
