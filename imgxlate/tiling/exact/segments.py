"""The small ONNX graph each segment of an exact-tiling plan runs as, per :class:`Variant`.

:class:`SegmentRunners` builds a segment's graph from the generator's weights (``pads = 0``) and
caches one runner per segment and variant from the caller's factory (ONNX Runtime or OpenVINO, see
:mod:`imgxlate.engine`). A convolution segment's graph: the cast of float16 stored maps, the prologue
(norm with this image's statistics, activation) on the smallest tensor, nearest upsampling and
reflect/edge padding with their crops (amounts fed per tile; an upsampling 3x3 conv runs at low
resolution, :mod:`.subpixel`), zero padding at the true border, the convolution, the epilogue (norm,
activation, skip Add), for a stats job's target the per-channel mean and sum of squared deviations,
and the cast to float16 for a float16 store. An elementwise group (a residual block's norm + skip Add)
is one graph too. Nothing here runs a graph; :mod:`.executor` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgxlate.graphs import subpixel
from imgxlate.tiling.exact.graph import Graph, Op, fail
from imgxlate.tiling.exact.plan import Segment


@dataclass(frozen=True)
class Variant:
    """Which graph a segment's tile needs (a runner is built once per segment and variant).

    ``fused``: the prologue, the ``pre`` ops (nearest upsampling, reflect/edge padding, each followed
    by a crop) and the convolution's zero padding run inside the graph; plain: the conv and its
    epilogue only. ``pre``: per ``pre`` op, (pads fed, crop fed); an interior tile pads nothing and
    gets a graph without those copies. ``conv_pad``: zero padding fed. ``emit``: the graph outputs
    the map (else only the statistics). ``x16`` / ``e16``: the input / the epilogue operands with
    these indices arrive as float16 (stored maps) and are cast inside the graph; ``out16``: the map
    leaves as float16 (it goes straight into a float16 store)."""

    fused: bool
    emit: bool
    pre: tuple[tuple[bool, bool], ...] = ()
    conv_pad: bool = False
    x16: bool = False
    e16: tuple[int, ...] = ()
    out16: bool = False
    subpixel: bool = False


class SegmentRunners:
    """Builds and caches one runner per segment and :class:`Variant`."""

    def __init__(self, graph: Graph, factory: Callable[[bytes], Any]) -> None:
        self.graph = graph
        self.factory = factory
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.used: set[tuple[Any, ...]] = set()

    def release(self) -> None:
        """Let the runners used since the last call free their working memory."""
        for key in self.used:
            release = getattr(self.cache[key], "release", None)
            if release is not None:
                release()
        self.used.clear()

    def get(self, seg: Segment, variant: Variant) -> Any:
        """Runner for ``seg`` in ``variant``."""
        key = (seg.key, variant)
        runner = self.cache.get(key)
        if runner is None:
            data = self._build(seg, variant)
            try:
                runner = _as_runner(self.factory(data))
            except Exception as exc:
                raise fail(self.graph.path, f"{seg.head.op_type} {seg.head.name!r} cannot run on its own: {exc}") from exc
            self.cache[key] = runner
        self.used.add(key)
        return runner

    def _build(self, seg: Segment, v: Variant) -> bytes:
        from onnx import TensorProto, helper, numpy_helper

        f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
        inits: list[Any] = []
        feeds: list[Any] = []
        chan = ["n", "c", 1, 1]
        nodes: list[Any] = []

        def tensor_feed(name: str, half: bool) -> str:
            """A fed map (float16 maps are cast to float32 first); returns the float32 name."""
            dims = [f"{name}_{d}" for d in "nchw"]  # its own symbols: windows differ in size
            feeds.append(helper.make_tensor_value_info(name, f16 if half else f32, dims))
            if not half:
                return name
            nodes.append(helper.make_node("Cast", [name], [f"{name}_32"], to=f32))
            return f"{name}_32"

        def norm_nodes(tag: str, op: Op, src: str, dst: str) -> None:
            feeds.extend(helper.make_tensor_value_info(f"{k}{tag}", f32, chan) for k in "ma")
            has_b = bool(op.consts[1].any())  # type: ignore[union-attr]
            nodes.append(helper.make_node("Sub", [src, f"m{tag}"], [f"s{tag}"]))
            nodes.append(helper.make_node("Mul", [f"s{tag}", f"a{tag}"], [f"p{tag}" if has_b else dst]))
            if has_b:
                feeds.append(helper.make_tensor_value_info(f"b{tag}", f32, chan))
                nodes.append(helper.make_node("Add", [f"p{tag}", f"b{tag}"], [dst]))

        def unary_node(op: Op, src: str, dst: str) -> None:
            extra = {"alpha": op.attrs["alpha"]} if op.op_type == "LeakyRelu" else {}
            nodes.append(helper.make_node(op.op_type, [src], [dst], **extra))

        def binary_node(j: int, op: Op, tensor: Callable[[str], str], dst: str) -> None:
            """``op`` with its constants as initializers; ``tensor(name)`` names each tensor operand."""
            operands, vi = [], 0
            for i, c in enumerate(op.consts):
                if c is not None:
                    inits.append(numpy_helper.from_array(c, f"c{j}_{i}"))
                    operands.append(f"c{j}_{i}")
                else:
                    operands.append(tensor(op.inputs[vi]))
                    vi += 1
            nodes.append(helper.make_node(op.op_type, operands, [dst]))

        if seg.group:
            cur = self._group_nodes(seg, v, tensor_feed, norm_nodes, unary_node, binary_node)
            return self._finish(seg, v, cur, nodes, feeds, inits)
        cur = tensor_feed("x", v.x16)
        if v.fused:
            # The prologue first, on the smallest tensor: elementwise ops commute with nearest
            # upsampling and reflect/edge padding.
            for j, op in enumerate(seg.prologue):
                nxt = f"q{j}"
                if op.kind == "norm":
                    norm_nodes(f"p{j}", op, cur, nxt)
                else:
                    unary_node(op, cur, nxt)
                cur = nxt
        if v.subpixel:
            self._subpixel_nodes(seg, cur, "t0", nodes, inits, feeds)
        else:
            self._conv_nodes(seg, v, cur, "t0", nodes, inits, feeds)
        cur, prev_out = "t0", seg.head.output
        for j, op in enumerate(seg.chain):
            nxt = f"t{j + 1}"
            if op.kind == "norm":
                norm_nodes(str(j), op, cur, nxt)
            elif op.kind == "unary":
                unary_node(op, cur, nxt)
            else:  # binary: the chain's running value, or a fed operand (a skip Add's stored map)
                binary_node(j, op, lambda t, j=j, c=cur, p=prev_out: c if t == p else tensor_feed(f"e{j}", j in v.e16), nxt)
            cur, prev_out = nxt, op.output
        return self._finish(seg, v, cur, nodes, feeds, inits)

    @staticmethod
    def _conv_nodes(
        seg: Segment, v: Variant, cur: str, dst: str, nodes: list[Any], inits: list[Any], feeds: list[Any]
    ) -> None:
        """From ``cur`` to ``dst``: the ``pre`` ops (upsampling; reflect/edge padding and crops with
        fed amounts), the zero padding at the true border (fed) and the convolution."""
        from onnx import TensorProto, helper, numpy_helper

        i64 = TensorProto.INT64
        head = seg.head
        if v.pre:  # only fused variants have pre flags
            inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw"))
        for j, (op, (padded, cropped)) in enumerate(zip(seg.pre, v.pre)):
            if op.kind == "resize":
                fy, fx = op.s
                inits.append(numpy_helper.from_array(np.array([1, 1, fy, fx], np.float32), f"scales{j}"))
                nodes.append(helper.make_node(
                    "Resize", [cur, "", f"scales{j}"], [f"u{j}"], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
                cur = f"u{j}"
            elif padded:
                feeds.append(helper.make_tensor_value_info(f"pd{j}", i64, [8]))
                nodes.append(helper.make_node("Pad", [cur, f"pd{j}"], [f"u{j}"], mode=op.attrs["mode"]))
                cur = f"u{j}"
            if cropped:
                feeds += [helper.make_tensor_value_info(f"{k}{j}", i64, [2]) for k in ("st", "en")]
                nodes.append(helper.make_node("Slice", [cur, f"st{j}", f"en{j}", "hw"], [f"c{j}"]))
                cur = f"c{j}"
        if v.conv_pad:
            feeds.append(helper.make_tensor_value_info("pads", i64, [8]))
            nodes.append(helper.make_node("Pad", [cur, "pads"], ["padded"], mode="constant"))
            cur = "padded"
        weight, bias = head.consts
        inits.append(numpy_helper.from_array(weight, "w"))
        names = [cur, "w"]
        if bias is not None:
            inits.append(numpy_helper.from_array(bias, "b"))
            names.append("b")
        nodes.append(helper.make_node(head.op_type, names, [dst], **head.attrs["node"]))

    @staticmethod
    def _subpixel_nodes(seg: Segment, cur: str, dst: str, nodes: list[Any], inits: list[Any], feeds: list[Any]) -> None:
        """Upsampling + padding + 3x3 conv as four 2x2 phase convolutions at low resolution
        (:func:`imgxlate.graphs.subpixel.nodes`), then the crop to the tile (fed ``st_sp`` / ``en_sp``)."""
        from onnx import TensorProto, helper, numpy_helper

        sub_nodes, sub_inits = subpixel.nodes("sp", cur, "up", *seg.head.consts)
        nodes += sub_nodes
        inits += sub_inits
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw_sp"))
        feeds += [helper.make_tensor_value_info(n, TensorProto.INT64, [2]) for n in ("st_sp", "en_sp")]
        nodes.append(helper.make_node("Slice", ["up", "st_sp", "en_sp", "hw_sp"], [dst]))

    @staticmethod
    def _group_nodes(
        seg: Segment, v: Variant, tensor_feed: Callable[[str, bool], str], norm_nodes: Callable[..., None],
        unary_node: Callable[..., None], binary_node: Callable[..., None],
    ) -> str:
        """An elementwise group: the external inputs are fed as ``e0, e1, ...`` (``v.e16``: float16)."""
        names = {t: tensor_feed(f"e{k}", k in v.e16) for k, t in enumerate(seg.inputs)}
        for j, op in enumerate(seg.group):
            dst = f"g{j}"
            if op.kind == "norm":
                norm_nodes(f"g{j}", op, names[op.inputs[0]], dst)
            elif op.kind == "unary":
                unary_node(op, names[op.inputs[0]], dst)
            else:
                binary_node(j, op, names.__getitem__, dst)
            names[op.output] = dst
        return names[seg.group[-1].output]

    def _finish(self, seg: Segment, v: Variant, cur: str, nodes: list[Any], feeds: list[Any], inits: list[Any]) -> bytes:
        """Outputs (the map, float16 with ``v.out16``; the statistics with ``seg.stats``) and the model."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
        outputs = []
        if v.emit or not seg.stats:
            if v.out16:
                nodes.append(helper.make_node("Cast", [cur], ["y"], to=f16))
            else:
                nodes.append(helper.make_node("Identity", [cur], ["y"]))
            outputs.append(helper.make_tensor_value_info("y", f16 if v.out16 else f32, ["n", "o", "oh", "ow"]))
        if seg.stats:
            # Per-channel mean and sum of squared deviations of this tile (float32 over one tile).
            if self.graph.opset >= 18:
                inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
                red = lambda op, src, dst, keep: helper.make_node(op, [src, "axes"], [dst], keepdims=keep)
            else:
                red = lambda op, src, dst, keep: helper.make_node(op, [src], [dst], axes=[2, 3], keepdims=keep)
            nodes += [
                red("ReduceMean", cur, "mean", 1),
                helper.make_node("Sub", [cur, "mean"], ["dev"]),
                red("ReduceSumSquare", "dev", "m2", 1),
            ]
            outputs += [helper.make_tensor_value_info(n, f32, ["n", "o", 1, 1]) for n in ("mean", "m2")]
        g = helper.make_graph(nodes, f"imgxlate_tile_{seg.head.name}", feeds, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.graph.opset)])
        m.ir_version = self.graph.ir_version
        onnx.checker.check_model(m)
        return m.SerializeToString()


class _SessionRunner:
    """An ONNX Runtime session passed by older callers, behind the runner interface."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, feeds))

    def release(self) -> None:
        pass


def _as_runner(obj: Any) -> Any:
    return _SessionRunner(obj) if hasattr(obj, "get_inputs") else obj
