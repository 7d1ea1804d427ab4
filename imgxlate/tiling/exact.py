"""Exact (seamless) tiling: cut an ONNX generator at its InstanceNormalization nodes.

InstanceNorm normalises every channel with the mean and variance of the *whole* feature map, so a
generator run on tiles normalises each tile differently (visible colour steps at the seams). This
module reproduces the whole-image computation piece by piece:

1. The graph is read into a list of spatial ops (Pad, Conv, ConvTranspose, Resize, elementwise,
   InstanceNormalization). Each Conv / ConvTranspose runs in its own ONNX Runtime session with the
   graph's weights and ``pads = 0``, followed inside the same session by the elementwise chain after
   it (the norm as ``(x - mean) * a + b`` with this run's statistics fed as inputs, ReLU, the residual
   Add). Padding, cropping and nearest upsampling are numpy, so padding happens at the true image
   border only and never at a tile border.
2. For each InstanceNorm in graph order, the norm's input tensor is computed tile by tile from the
   tensors already available (the input image and the maps kept so far). Each tile's input window is
   derived backwards through the ops, exactly: a conv needs its kernel's halo, a stride-2 conv an
   aligned start, a ConvTranspose one more input row, Pad reflects only at the real border.
   Per-channel sums and sums of squares are accumulated (float32 along rows, float64 across rows and
   tiles); when the whole map is done, the norm has its exact statistics (``stats_hook`` may replace
   them) and becomes a fixed per-channel affine map.
3. Pre-norm maps at the lowest resolution (H/4 x W/4 x 4ngf in a CycleGAN ResNet) and at half
   resolution (H/2 x W/2 x 2ngf) are kept whole when computed, and so is the residual stream (the
   bottleneck Add outputs). Full-resolution tensors are never kept: the stem is recomputed once per
   tile for the second norm, the last upsampling once for the output. Maps no later stage reads are
   dropped after each norm. Peak memory is a few bottleneck maps plus one tile's intermediates.

The result equals ``pad_to_multiple`` + one whole-image run + crop up to float rounding (the
statistics are float64 sums instead of ORT's float32 reductions; convolutions of different input
shapes may sum in a different order).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import InvalidModelError, UsageError
from imgxlate.tiling.pad import pad_to_multiple

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime as ort

StatsHook = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Region = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open) in the tensor's own pixel grid

# Tiles of jobs that read only bottleneck maps are at least this many bottleneck pixels on a side:
# their memory is bounded by the stored maps anyway, and bigger tiles mean fewer halo rows and calls.
_MIN_BOTTLENECK_TILE = 256
# Pre-norm maps up to this many times the bottleneck's area (the half-resolution 2ngf maps of a ResNet
# generator: 2 bottleneck maps of memory) are kept whole once computed, so the stem/downsampling and
# first upsampling convs are not recomputed for later norms. Full-resolution maps are never kept.
_STORE_AREA_RATIO = 4

_UNARY: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda x, out: np.maximum(x, 0, out=out),
    "Tanh": lambda x, out: np.tanh(x, out=out),
    "Sigmoid": lambda x, out: np.divide(1.0, np.add(1.0, np.exp(-x), out=out), out=out),
    "Identity": lambda x, out: x,
}
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


@dataclass
class _Op:
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
    session: Any = None
    norm_index: int = -1


def _fail(path: str, why: str) -> InvalidModelError:
    return InvalidModelError(f"{path} cannot be tiled exactly ({why}); use --tiling blend")


def _pad_need(q0: int, q1: int, n: int, pb: int, mode: str) -> tuple[int, int, int, int, int]:
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


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    """Split [0, n) into ceil(n / size) nearly equal half-open pieces."""
    count = max(1, -(-n // max(1, size)))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count) if edges[i + 1] > edges[i]]


class ExactTiler:
    """Runs an ONNX CycleGAN-style generator on tiles with whole-image InstanceNorm statistics.

    ``session_factory`` makes an ORT session from serialized model bytes (the engine passes one for
    the chosen device); default: CPU provider, ORT_ENABLE_ALL. Raises InvalidModelError when the
    graph has an op or attribute this tiler cannot cut; callers fall back to blend tiling.
    """

    n_norm_layers: int

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        session_factory: Callable[[bytes], ort.InferenceSession] | None = None,
    ) -> None:
        import onnx
        from onnx import numpy_helper

        self.path = str(model_path)
        try:
            model = onnx.load(self.path)
        except Exception as exc:  # onnx raises DecodeError, FileNotFoundError, ...
            raise InvalidModelError(f"{self.path} is not a readable ONNX file ({exc})") from exc
        self._opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=18)
        self._ir_version = model.ir_version
        self._factory = session_factory or _default_session
        graph = model.graph
        consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise _fail(self.path, "it needs exactly one image input and one output")
        self.input_name = inputs[0].name
        self.output_name = graph.output[0].name
        self.ops: list[_Op] = []
        self._producer: dict[str, _Op] = {}
        self._sessions: dict[tuple[str, tuple[str, ...]], Any] = {}
        spatial = {self.input_name}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        consts[node.output[0]] = numpy_helper.to_array(attr.t)
                        break
                else:
                    raise _fail(self.path, f"Constant node {node.name!r} without a tensor value")
                continue
            op = self._parse(node, consts, spatial)
            spatial.add(op.output)
            self.ops.append(op)
            self._producer[op.output] = op
        if self.output_name not in self._producer:
            raise _fail(self.path, "the output is not computed from the input")
        self._consumers: dict[str, list[_Op]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):
                self._consumers.setdefault(t, []).append(op)
        self._consumers.setdefault(self.output_name, []).append(_Op("output", "output", [], ""))
        self.norms = [op for op in self.ops if op.kind == "norm"]
        for i, op in enumerate(self.norms):
            op.norm_index = i
        self.n_norm_layers = len(self.norms)
        self.multiple = self._size_multiple()

    # ---------------------------------------------------------------------------------- parsing

    def _parse(self, node: Any, consts: dict[str, np.ndarray], spatial: set[str]) -> _Op:
        import onnx

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        t, name = node.op_type, node.name or node.output[0]
        if len(node.output) != 1:
            raise _fail(self.path, f"{t} node {name!r} has {len(node.output)} outputs")
        out = node.output[0]
        data = [i for i in node.input if i in spatial]
        if (
            t in ("Conv", "ConvTranspose", "Pad", "Resize", "InstanceNormalization")
            or t in _UNARY
            or t
            in (
                "LeakyRelu",
                "Clip",
            )
        ):
            if not node.input or node.input[0] not in spatial:
                raise _fail(self.path, f"{t} node {name!r} does not read an image tensor")
            if any(i in spatial for i in node.input[1:]):
                raise _fail(self.path, f"{t} node {name!r} has a computed (non-constant) parameter")
        for extra in node.input[1:]:
            if extra and extra not in spatial and extra not in consts:
                raise _fail(self.path, f"{t} node {name!r} reads {extra!r}, which is not a constant")

        def const(i: int) -> np.ndarray | None:
            return consts[node.input[i]] if len(node.input) > i and node.input[i] else None

        if t in ("Conv", "ConvTranspose"):
            return self._parse_conv(node, t, name, out, attrs, consts)
        if t == "InstanceNormalization":
            scale, bias = const(1), const(2)
            if scale is None or bias is None:
                raise _fail(self.path, f"InstanceNormalization {name!r} lacks scale or bias")
            return _Op(
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
                raise _fail(self.path, f"Pad {name!r} has no constant pads")
            pads = [int(p) for p in pads.reshape(-1)]
            axes = const(3)
            rank = 4
            full = [0] * (2 * rank)
            ax = [int(a) % rank for a in axes.reshape(-1)] if axes is not None else list(range(rank))
            for j, a in enumerate(ax):
                full[a], full[a + rank] = pads[j], pads[j + len(ax)]
            if full[0] or full[1] or full[4] or full[5] or min(full) < 0:
                raise _fail(self.path, f"Pad {name!r} pads batch/channel axes or crops")
            mode = attrs.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            if mode not in ("constant", "reflect", "edge"):
                raise _fail(self.path, f"Pad {name!r} uses mode {mode!r}")
            value = const(2)
            return _Op(
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
            mode = attrs.get("mode", b"nearest")
            ctm = attrs.get("coordinate_transformation_mode", b"half_pixel")
            nmode = attrs.get("nearest_mode", b"round_prefer_floor")
            scales = const(2)
            ok = (
                mode == b"nearest"
                and ctm == b"asymmetric"
                and nmode == b"floor"
                and scales is not None
                and scales.size == 4
                and const(3) is None
                and int(attrs.get("antialias", 0)) == 0
            )
            if ok:
                f = [float(v) for v in scales.reshape(-1)]
                ok = f[0] == 1 and f[1] == 1 and all(v >= 1 and v == int(v) for v in f[2:])
            if not ok:
                raise _fail(
                    self.path, f"Resize {name!r} is not an integer nearest (asymmetric, floor) upsampling"
                )
            return _Op("resize", name, data[:1], out, t, s=(int(f[2]), int(f[3])))
        if t in _UNARY or t in ("LeakyRelu", "Clip"):
            op = _Op("unary", name, data[:1], out, t)
            if t == "LeakyRelu":
                op.attrs["alpha"] = float(attrs.get("alpha", 0.01))
            if t == "Clip":
                lo, hi = const(1), const(2)
                op.attrs["min"] = float(lo) if lo is not None else -np.inf
                op.attrs["max"] = float(hi) if hi is not None else np.inf
            return op
        if t in _BINARY:
            if len(node.input) != 2 or not data:
                raise _fail(self.path, f"{t} node {name!r} is not a binary op on image tensors")
            ins, cs = [], []
            for i in node.input:
                if i in spatial:
                    ins.append(i)
                    cs.append(None)
                else:
                    c = consts[i].astype(np.float32)
                    if c.ndim > 4 or (c.ndim >= 2 and any(v != 1 for v in c.shape[-2:])):
                        raise _fail(self.path, f"{t} node {name!r} has a spatially varying constant")
                    cs.append(c)
            return _Op("binary", name, ins, out, t, consts=cs)
        raise _fail(self.path, f"unsupported op {t} in node {name!r}")

    def _parse_conv(
        self, node: Any, t: str, name: str, out: str, attrs: dict[str, Any], consts: dict[str, np.ndarray]
    ) -> _Op:

        weight = consts.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or weight.ndim != 4:
            raise _fail(self.path, f"{t} {name!r} has no constant 2-D kernel")
        bias = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if auto_pad not in (b"NOTSET", b"VALID") or "output_shape" in attrs:
            raise _fail(self.path, f"{t} {name!r} uses auto_pad/output_shape")
        k = tuple(int(v) for v in attrs.get("kernel_shape", weight.shape[2:]))
        s = tuple(int(v) for v in attrs.get("strides", (1, 1)))
        d = tuple(int(v) for v in attrs.get("dilations", (1, 1)))
        pads = [int(v) for v in attrs.get("pads", (0, 0, 0, 0))] if auto_pad == b"NOTSET" else [0, 0, 0, 0]
        opad = tuple(int(v) for v in attrs.get("output_padding", (0, 0)))
        if len(k) != 2 or len(s) != 2 or len(d) != 2 or len(pads) != 4:
            raise _fail(self.path, f"{t} {name!r} is not a 2-D convolution")
        op = _Op("conv" if t == "Conv" else "convT", name, [node.input[0]], out, t, k=k, s=s, d=d)
        op.pb, op.pe, op.op_pad = (pads[0], pads[1]), (pads[2], pads[3]), opad
        if t == "ConvTranspose":
            for ax in range(2):
                # Tiles read one input row per stride of output; the crop below needs the local
                # output to reach past the window, which holds when d(k-1) >= s-1, and the
                # output_padding rows (no input contributes) to be cut by the end pad.
                if d[ax] * (k[ax] - 1) < s[ax] - 1 or opad[ax] > op.pe[ax]:
                    raise _fail(self.path, f"ConvTranspose {name!r} has an unsupported stride/padding")
        op.attrs["node"] = {
            "kernel_shape": list(k),
            "strides": list(s),
            "dilations": list(d),
            "pads": [0, 0, 0, 0],
            "group": int(attrs.get("group", 1)),
        }
        op.consts = [weight.astype(np.float32), None if bias is None else bias.astype(np.float32)]
        op.session = self._session(op, ())
        return op

    def _session(self, head: _Op, chain: tuple[_Op, ...]) -> Any:
        """ORT session for conv ``head`` (pads 0: the tiler pads at the true border) followed by the
        elementwise ``chain`` (norm with per-run statistics, activations, skip additions), so the
        elementwise work runs inside ORT, fused and multi-threaded. Feeds: ``x``; per norm j
        ``m{j}``, ``a{j}`` (and ``b{j}``); per tensor operand j ``e{j}``. Cached per (head, chain)."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        key = (head.name, tuple(op.name for op in chain))
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        weight, bias = head.consts
        inits = [numpy_helper.from_array(weight, "w")]
        names = ["x", "w"]
        if bias is not None:
            inits.append(numpy_helper.from_array(bias, "b"))
            names.append("b")
        nodes = [helper.make_node(head.op_type, names, ["t0"], **head.attrs["node"])]
        feeds = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", "h", "w"])]
        chan = ["n", "c", 1, 1]
        cur, prev_out = "t0", head.output
        for j, op in enumerate(chain):
            nxt = f"t{j + 1}"
            if op.kind == "norm":
                feeds += [helper.make_tensor_value_info(f"{v}{j}", TensorProto.FLOAT, chan) for v in "ma"]
                nodes += [
                    helper.make_node("Sub", [cur, f"m{j}"], [f"s{j}"]),
                    helper.make_node("Mul", [f"s{j}", f"a{j}"], [f"p{j}" if op.consts[1].any() else nxt]),
                ]
                if op.consts[1].any():
                    feeds.append(helper.make_tensor_value_info(f"b{j}", TensorProto.FLOAT, chan))
                    nodes.append(helper.make_node("Add", [f"p{j}", f"b{j}"], [nxt]))
            elif op.kind == "unary":
                extra = {"alpha": op.attrs["alpha"]} if op.op_type == "LeakyRelu" else {}
                nodes.append(helper.make_node(op.op_type, [cur], [nxt], **extra))
            else:  # binary
                operands, vi = [], 0
                for i, c in enumerate(op.consts):
                    if c is not None:
                        inits.append(numpy_helper.from_array(c, f"c{j}_{i}"))
                        operands.append(f"c{j}_{i}")
                        continue
                    t = op.inputs[vi]
                    vi += 1
                    if t == prev_out:
                        operands.append(cur)
                    else:
                        feeds.append(
                            helper.make_tensor_value_info(f"e{j}", TensorProto.FLOAT, ["n", "o", "oh", "ow"])
                        )
                        operands.append(f"e{j}")
                nodes.append(helper.make_node(op.op_type, operands, [nxt]))
            cur, prev_out = nxt, op.output
        nodes.append(helper.make_node("Identity", [cur], ["y"]))
        g = helper.make_graph(
            nodes,
            f"imgxlate_tile_{head.name}",
            feeds,
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "o", "oh", "ow"])],
            inits,
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self._opset)])
        m.ir_version = self._ir_version
        try:
            onnx.checker.check_model(m)
            session = self._factory(m.SerializeToString())
        except Exception as exc:
            raise _fail(self.path, f"{head.op_type} {head.name!r} cannot run on its own: {exc}") from exc
        self._sessions[key] = session
        return session

    def _chain(self, head: _Op, target: str, in_job: set[int]) -> tuple[_Op, ...]:
        """Elementwise ops after conv ``head`` that can run inside its session: each consumes the
        previous one's output, which nothing else reads and which is not the job's target."""
        chain: list[_Op] = []
        tail = head
        while tail.output != target:
            users = self._consumers.get(tail.output, [])
            if len(users) != 1 or id(users[0]) not in in_job:
                break
            nxt = users[0]
            if (
                nxt.kind == "unary"
                and nxt.op_type in ("Relu", "Tanh", "Sigmoid", "LeakyRelu", "Identity")
                or nxt.kind == "norm"
            ):
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

    def _sizes(self, h: int, w: int) -> dict[str, tuple[int, int]]:
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

    @staticmethod
    def _need(op: _Op, ax: int, o0: int, o1: int, n_in: int) -> tuple[int, int]:
        """Input rows [i0, i1) along axis ``ax`` that output rows [o0, o1) of ``op`` depend on."""
        if op.kind in ("unary", "binary", "norm"):
            return o0, o1
        if op.kind == "pad":
            u0, u1, *_ = _pad_need(o0, o1, n_in, op.pb[ax], op.attrs["mode"])
            return u0, u1
        if op.kind == "conv":
            s, span = op.s[ax], op.d[ax] * (op.k[ax] - 1)
            u0, u1, *_ = _pad_need(o0 * s, (o1 - 1) * s + span + 1, n_in, op.pb[ax], "constant")
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

    # -------------------------------------------------------------------------------- execution

    def _forward(
        self,
        op: _Op,
        xs: list[tuple[np.ndarray, int, int]],
        reg: Region,
        inplace: bool,
        norm: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        sizes: dict[str, tuple[int, int]],
        chain: tuple[_Op, ...] = (),
        others: dict[str, tuple[np.ndarray, int, int]] | None = None,
    ) -> np.ndarray:
        """Compute ``op``'s output (for a conv with a ``chain``: the chain's last output) exactly on
        ``reg`` from inputs given as (array, y0, x0); ``others`` holds the chain's tensor operands."""
        y0, y1, x0, x1 = reg

        def crop(v: tuple[np.ndarray, int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            arr, ay, ax_ = v
            return arr[:, :, r0 - ay : r1 - ay, c0 - ax_ : c1 - ax_]

        def conv(x: np.ndarray) -> np.ndarray:
            feed = {"x": np.ascontiguousarray(x, dtype=np.float32)}
            prev = op.output
            for j, c in enumerate(chain):
                if c.kind == "norm":
                    mean, a, b = norm[c.norm_index]
                    feed[f"m{j}"], feed[f"a{j}"] = mean, a
                    if c.consts[1].any():
                        feed[f"b{j}"] = b
                elif c.kind == "binary":
                    for t in c.inputs:
                        if t != prev:
                            assert others is not None
                            feed[f"e{j}"] = np.ascontiguousarray(crop(others[t], y0, y1, x0, x1))
                prev = c.output
            return self._session(op, chain).run(None, feed)[0]

        if op.kind in ("unary", "norm"):
            x = crop(xs[0], y0, y1, x0, x1)
            own = inplace and x.shape == xs[0][0].shape
            out = x if own else np.empty(x.shape, np.float32)
            if op.kind == "norm":
                mean, a, b = norm[op.norm_index]
                np.subtract(x, mean, out=out)
                np.multiply(out, a, out=out)
                if b is not None:
                    np.add(out, b, out=out)
                return out
            if op.op_type == "LeakyRelu":
                return np.where(x >= 0, x, x * np.float32(op.attrs["alpha"])).astype(np.float32)
            if op.op_type == "Clip":
                return np.clip(x, op.attrs["min"], op.attrs["max"], out=out)
            return _UNARY[op.op_type](x, out)
        if op.kind == "binary":
            args, vi = [], 0
            for c in op.consts:
                if c is None:
                    args.append(crop(xs[vi], y0, y1, x0, x1))
                    vi += 1
                else:
                    args.append(c)
            return _BINARY[op.op_type](args[0], args[1]).astype(np.float32, copy=False)
        n_in = sizes[op.inputs[0]]
        if op.kind == "resize":
            fy, fx = op.s
            i0, i1 = self._need(op, 0, y0, y1, n_in[0])
            j0, j1 = self._need(op, 1, x0, x1, n_in[1])
            x = crop(xs[0], i0, i1, j0, j1)
            # Nearest upsampling in one copy: (n, c, h, 1, w, 1) broadcast to (n, c, h, fy, w, fx).
            n, c, h, w = x.shape
            up = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, fy, w, fx)).reshape(n, c, h * fy, w * fx)
            return up[:, :, y0 - i0 * fy : y1 - i0 * fy, x0 - j0 * fx : x1 - j0 * fx]
        if op.kind == "convT":
            i0, i1 = self._need(op, 0, y0, y1, n_in[0])
            j0, j1 = self._need(op, 1, x0, x1, n_in[1])
            y = conv(crop(xs[0], i0, i1, j0, j1))
            gy, gx = i0 * op.s[0] - op.pb[0], j0 * op.s[1] - op.pb[1]  # global position of y[0, 0]
            assert y0 >= gy and x0 >= gx and y1 - gy <= y.shape[2] and x1 - gx <= y.shape[3]
            return y[:, :, y0 - gy : y1 - gy, x0 - gx : x1 - gx]
        # pad and conv: read real rows, pad only across the true border, then crop / convolve
        if op.kind == "pad":
            windows = [(y0, y1), (x0, x1)]
            mode, value = op.attrs["mode"], op.attrs["value"]
        else:
            windows = [
                (o0 * op.s[ax], (o1 - 1) * op.s[ax] + op.d[ax] * (op.k[ax] - 1) + 1)
                for ax, (o0, o1) in enumerate(((y0, y1), (x0, x1)))
            ]
            mode, value = "constant", 0.0
        cuts = [_pad_need(q0, q1, n_in[ax], op.pb[ax], mode) for ax, (q0, q1) in enumerate(windows)]
        (u0, u1, a, b, sy), (v0, v1, c, e, sx) = cuts
        x = crop(xs[0], u0, u1, v0, v1)
        if a or b or c or e:
            widths = ((0, 0), (0, 0), (a, b), (c, e))
            x = (
                np.pad(x, widths, mode=mode, constant_values=value)
                if mode == "constant"
                else np.pad(x, widths, mode=mode)
            )
        (q0, q1), (r0, r1) = windows
        x = x[:, :, q0 - sy : q1 - sy, r0 - sx : r1 - sx]
        if op.kind == "pad":
            return x
        return conv(x)

    def _subgraph(self, target: str, stored: dict[str, np.ndarray]) -> tuple[list[_Op], set[str]]:
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
            op = self._producer.get(t)
            if op is None:
                raise InvalidModelError(f"{self.path}: tensor {t!r} has no producer")
            ops.add(id(op))
            stack.extend(op.inputs)
        return [op for op in self.ops if id(op) in ops], sources

    def _ready(self, target: str, stored: dict[str, np.ndarray], known: set[int]) -> bool:
        ops, _ = self._subgraph(target, stored)
        return all(op.norm_index in known for op in ops if op.kind == "norm")

    @staticmethod
    def _group_inputs(head: _Op, chain: tuple[_Op, ...]) -> list[str]:
        """Tensors a (head, chain) group reads: the head's inputs and the chain's other operands."""
        names = list(head.inputs)
        prev = head.output
        for op in chain:
            names += [t for t in op.inputs if t != prev]
            prev = op.output
        return list(dict.fromkeys(names))

    def _job(
        self,
        target: str,
        stored: dict[str, np.ndarray],
        norm: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        sizes: dict[str, tuple[int, int]],
        tile: int,
        keep: bool,
        stats: bool,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
        """Compute ``target`` tile by tile; keep it whole (``keep``) and/or accumulate per-channel
        float64 sums about a shift (``stats``). Returns (map or None, mean, var, count)."""
        ops, sources = self._subgraph(target, stored)
        # Conv heads with their fusable elementwise chains, each placed at its chain's last op (all
        # of a chain's operands are computed by then).
        in_job = {id(op) for op in ops}
        position = {id(op): i for i, op in enumerate(ops)}
        fused: set[int] = set()
        placed: list[tuple[int, _Op, tuple[_Op, ...]]] = []
        for i, op in enumerate(ops):
            if id(op) in fused:
                continue
            chain = self._chain(op, target, in_job) if op.kind in ("conv", "convT") else ()
            fused.update(id(c) for c in chain)
            placed.append((position[id(chain[-1])] if chain else i, op, chain))
        groups = [(op, chain) for _, op, chain in sorted(placed, key=lambda g: g[0])]
        last_use: dict[str, int] = {}
        for i, (op, chain) in enumerate(groups):
            for t in self._group_inputs(op, chain):
                last_use[t] = i
        nh, nw = sizes[target]
        big = max(sizes[s][0] * sizes[s][1] for s in sources)
        if tile <= 0:
            th, tw = nh, nw
        else:
            ih, iw = sizes[self.input_name]
            th, tw = max(1, round(tile * nh / ih)), max(1, round(tile * nw / iw))
            if big <= min(sizes[t][0] * sizes[t][1] for t in sizes):  # reads only bottleneck maps
                th, tw = max(th, _MIN_BOTTLENECK_TILE), max(tw, _MIN_BOTTLENECK_TILE)
        full: np.ndarray | None = None
        shift = s1 = s2 = None
        count = 0
        for ty0, ty1 in _chunks(nh, th):
            for tx0, tx1 in _chunks(nw, tw):
                out = self._run_tile(
                    ops, groups, sources, last_use, stored, norm, sizes, target, (ty0, ty1, tx0, tx1)
                )
                if keep:
                    if full is None:
                        full = np.empty((1, out.shape[1], nh, nw), np.float32)
                    full[:, :, ty0:ty1, tx0:tx1] = out
                if stats:
                    if shift is None:
                        # Sums about the first tile's mean: E[(x-c)^2] - E[x-c]^2 keeps its precision
                        # when |mean| >> std, unlike E[x^2] - E[x]^2.
                        shift = out.mean(axis=(0, 2, 3), dtype=np.float64, keepdims=True).astype(np.float32)
                        s1 = np.zeros(out.shape[1])
                        s2 = np.zeros(out.shape[1])
                    # float32 sums along rows (numpy sums a contiguous axis pairwise: error ~ eps*log2 W),
                    # then float64 across rows and tiles; no float64 copy of the tile.
                    v = np.subtract(out, shift)
                    s1 += v.sum(axis=3).sum(axis=(0, 2), dtype=np.float64)
                    np.square(v, out=v)
                    s2 += v.sum(axis=3).sum(axis=(0, 2), dtype=np.float64)
                    count += v.shape[2] * v.shape[3]
                    del v
        if not stats:
            return full, None, None, 0
        assert shift is not None and s1 is not None and s2 is not None
        m = s1 / count
        return full, shift.reshape(-1).astype(np.float64) + m, np.maximum(s2 / count - m * m, 0.0), count

    def _run_tile(
        self,
        ops: list[_Op],
        groups: list[tuple[_Op, tuple[_Op, ...]]],
        sources: set[str],
        last_use: dict[str, int],
        stored: dict[str, np.ndarray],
        norm: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        sizes: dict[str, tuple[int, int]],
        target: str,
        region: Region,
    ) -> np.ndarray:
        # Backward: the region of every tensor this tile needs (bounding box over its consumers).
        regions: dict[str, list[int]] = {target: list(region)}
        for op in reversed(ops):
            y0, y1, x0, x1 = regions[op.output]
            for t in op.inputs:
                n = sizes[t]
                i0, i1 = self._need(op, 0, y0, y1, n[0])
                j0, j1 = self._need(op, 1, x0, x1, n[1])
                r = regions.get(t)
                regions[t] = (
                    [i0, i1, j0, j1]
                    if r is None
                    else [min(r[0], i0), max(r[1], i1), min(r[2], j0), max(r[3], j1)]
                )
        # Forward: every tensor computed exactly on its region.
        values: dict[str, tuple[np.ndarray, int, int]] = {}
        owned: set[str] = set()
        for s in sources:
            y0, y1, x0, x1 = regions[s]
            values[s] = (stored[s][:, :, y0:y1, x0:x1], y0, x0)
        for i, (op, chain) in enumerate(groups):
            out_name = chain[-1].output if chain else op.output
            reg = regions[out_name]
            xs = [values[t] for t in op.inputs]
            inplace = len(op.inputs) == 1 and op.inputs[0] in owned and last_use[op.inputs[0]] == i
            others = {t: values[t] for t in self._group_inputs(op, chain)}
            y = self._forward(op, xs, (reg[0], reg[1], reg[2], reg[3]), inplace, norm, sizes, chain, others)
            values[out_name] = (y, reg[0], reg[2])
            owned.add(out_name)
            for t in self._group_inputs(op, chain):
                if last_use[t] == i:
                    values.pop(t, None)
                    owned.discard(t)
        arr, ay, ax = values[target]
        y0, y1, x0, x1 = region
        return arr[:, :, y0 - ay : y1 - ay, x0 - ax : x1 - ax]

    def run(self, image: np.ndarray, tile: int = 0, stats_hook: StatsHook | None = None) -> np.ndarray:
        """Run the model on ``image`` (C, H, W) float32 in model range; returns (C', H, W) float32.

        ``tile``: tile edge in input pixels (0: whole feature maps, no tiling). ``stats_hook(i, mean,
        var)`` is called for every InstanceNormalization in graph order with this image's exact
        per-channel statistics (float64, shape (C,)) and returns the (mean, var) to normalise with.
        """

        if tile < 0:
            raise UsageError(f"tile size must be >= 0 (0 = no tiling), got {tile}")
        padded, (h, w) = pad_to_multiple(np.asarray(image, dtype=np.float32), self.multiple)
        sizes = self._sizes(padded.shape[1], padded.shape[2])
        bottleneck = min(a * b for a, b in sizes.values())
        stored: dict[str, np.ndarray] = {self.input_name: padded[None]}
        norm: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # Residual-stream checkpoints: bottleneck Add outputs, stored once their norms are known.
        pending = [
            op.output
            for op in self.ops
            if op.kind == "binary"
            and sizes[op.output][0] * sizes[op.output][1] == bottleneck
            and op.output != self.output_name
        ]
        for op in self.norms:
            target = op.inputs[0]
            keep = sizes[target][0] * sizes[target][1] <= _STORE_AREA_RATIO * bottleneck
            full, mean, var, _ = self._job(target, stored, norm, sizes, tile, keep=keep, stats=True)
            assert mean is not None and var is not None
            if keep:
                assert full is not None
                stored[target] = full
            if stats_hook is not None:
                got = stats_hook(op.norm_index, mean, var)
                try:
                    new_mean, new_var = (np.asarray(v, dtype=np.float64).reshape(mean.shape) for v in got)
                except (TypeError, ValueError) as exc:
                    raise UsageError(
                        f"stats_hook must return (mean, var) arrays of shape {mean.shape} ({exc})"
                    ) from exc
                mean, var = new_mean, np.maximum(new_var, 0.0)
            scale, bias = op.consts[0].astype(np.float64), op.consts[1].astype(np.float64)
            a = scale / np.sqrt(var + op.attrs["epsilon"])
            shape = (1, -1, 1, 1)
            norm[op.norm_index] = (
                mean.astype(np.float32).reshape(shape),
                a.astype(np.float32).reshape(shape),
                bias.astype(np.float32).reshape(shape) if np.any(bias) else None,
            )
            known = set(norm)
            for t in list(pending):
                if self._ready(t, stored, known):
                    stored[t], *_ = self._job(t, stored, norm, sizes, tile, keep=True, stats=False)
                    pending.remove(t)
            self._free(
                stored, [o.inputs[0] for o in self.norms[op.norm_index + 1 :]] + pending + [self.output_name]
            )
        out, *_ = self._job(self.output_name, stored, norm, sizes, tile, keep=True, stats=False)
        assert out is not None
        return out[0, :, :h, :w]

    def _free(self, stored: dict[str, np.ndarray], targets: list[str]) -> None:
        """Drop stored maps that no remaining target reads."""
        live: set[str] = set()
        for t in targets:
            live |= self._subgraph(t, stored)[1]
        for name in list(stored):
            if name not in live:
                del stored[name]


def _default_session(data: bytes) -> ort.InferenceSession:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Each conv has its own session; per-session arenas would each keep their largest tile's buffers.
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def stats_shapes(tiler: ExactTiler) -> list[int]:
    """Channel count of every InstanceNormalization, in graph order (for callers that keep stats)."""
    return [int(op.consts[0].shape[0]) for op in tiler.norms]


__all__ = ["ExactTiler", "StatsHook", "stats_shapes"]
