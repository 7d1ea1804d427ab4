"""The rewrites of :mod:`imgxlate.graphs` applied to a whole model, for ONNX Runtime on the CPU.

:func:`for_cpu` finds, by node pattern,

- ``subpixel``: nearest 2x ``Resize`` -> ``Pad`` (reflect or edge, 1 pixel) -> 3x3 ``Conv``, the
  up-sampling blocks of a ``--upsample resize`` generator, replaced by four 2x2 phase convolutions at
  low resolution (:mod:`.subpixel`; 4 instead of 9 multiply-adds per output value, no up-sampled copy);
- ``rowconv``: a ``Conv`` with at most 8 output channels, the 7x7 head, replaced by a row convolution
  and a column sum (:mod:`.rowconv`; ORT's kernels run it ~2.4x faster),

and returns the rewritten model, or None when nothing matched (then the file runs as it is). The
Resize and Pad being replaced must feed only that convolution. :func:`imgxlate.engine.make_runner`
calls it for every ONNX Runtime session on the CPU: whole images, and the exact tiler's segment graphs
(whose head convolution it splits; their up-sampling is already in phase form). Measured on the
bundled model at 256 px, 2 threads: 106.8 -> 95.2 ms a run; at 1024 px 1493 -> 1387 ms
(``docs/benchmarks.md``). ``IMGXLATE_GRAPH_REWRITES=0`` turns it off (benchmarks compare both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.graphs import rowconv, subpixel

ENV = "IMGXLATE_GRAPH_REWRITES"


@dataclass(frozen=True)
class Rewritten:
    """A rewritten model: its bytes and the name of each rewrite applied, in graph order."""

    data: bytes
    applied: tuple[str, ...]


def enabled() -> bool:
    """False when ``IMGXLATE_GRAPH_REWRITES=0`` asks for the models as they are."""
    return os.environ.get(ENV, "1").strip() not in ("0", "false", "no", "off")


def for_cpu(model: bytes | str | os.PathLike[str]) -> Rewritten | None:
    """``model`` (serialized bytes or a path) with every rewrite that applies; None when none does,
    when rewrites are turned off, or when the bytes are not an ONNX model (ONNX Runtime then says
    what is wrong with the file)."""
    if not enabled():
        return None
    import onnx
    from google.protobuf.message import DecodeError

    try:
        m = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(str(Path(model)))
    except DecodeError:
        return None
    if not any(o.domain in ("", "ai.onnx") and o.version >= 11 for o in m.opset_import):
        return None  # Pad and Slice take their amounts as inputs from opset 11 on
    applied = _rewrite(m.graph)
    if not applied:
        return None
    used = {name for node in m.graph.node for name in node.input}
    kept = [init for init in m.graph.initializer if init.name in used]
    gone = {init.name for init in m.graph.initializer if init.name not in used}
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    # Weights also listed as graph inputs (torch.onnx.export(keep_initializers_as_inputs=True), the
    # layout of many older files) go from the inputs too, or the session asks for them as images.
    inputs = [i for i in m.graph.input if i.name not in gone]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    return Rewritten(m.SerializeToString(), tuple(applied))


def _rewrite(graph: Any) -> list[str]:
    """Rewrite ``graph`` in place; the names of the rewrites applied."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def attrs(node: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def only_feeds_next(node: Any) -> bool:
        return consumers.get(node.output[0], 0) == 1 and node.output[0] not in outputs

    nodes, applied, dropped = [], [], set()
    for k, node in enumerate(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2:
            nodes.append(node)
            continue
        weight = const(node.input[1])
        bias = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        a = attrs(node)
        if weight is None or weight.dtype != np.float32 or (len(node.input) > 2 and node.input[2] and bias is None):
            nodes.append(node)
            continue
        prefix = f"imgxlate_rw{k}"
        pad = producer.get(node.input[0])
        resize = producer.get(pad.input[0]) if pad is not None and pad.op_type == "Pad" else None
        if resize is not None and _upsample_pad_conv(resize, pad, a, weight, const, attrs) and only_feeds_next(
            resize
        ) and only_feeds_next(pad):
            new, new_inits = subpixel.nodes(prefix, resize.input[0], node.output[0], weight, bias)
            dropped |= {id(resize), id(pad)}
            applied.append("subpixel")
        elif rowconv.applies(weight, a):
            p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            new, new_inits = rowconv.nodes(prefix, node.input[0], node.output[0], weight, bias,
                                           pads=(p[0], p[1], p[2], p[3]))
            applied.append("rowconv")
        else:
            nodes.append(node)
            continue
        nodes += new
        graph.initializer.extend(new_inits)
    if applied:
        kept = [n for n in nodes if id(n) not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
    return applied


def _upsample_pad_conv(resize: Any, pad: Any, conv_attrs: dict[str, Any], weight: np.ndarray, const: Any,
                       attrs: Any) -> bool:
    """True for nearest 2x Resize (asymmetric, floor; scales 1, 1, 2, 2) -> Pad (reflect or edge, one
    pixel on each side of H and W, amounts as a constant input) -> plain 3x3 Conv with no padding:
    what :func:`imgxlate.graphs.subpixel.nodes` computes."""
    if resize.op_type != "Resize" or len(resize.input) < 3 or (len(resize.input) > 3 and resize.input[3]):
        return False  # no scales, or sizes given
    if subpixel.nearest_factors(attrs(resize), const(resize.input[2]), None) != (2, 2):
        return False
    pads = const(pad.input[1]) if len(pad.input) > 1 else None
    if (
        attrs(pad).get("mode", b"constant") not in (b"reflect", b"edge")
        or pads is None
        or [int(v) for v in pads.reshape(-1)] != [0, 0, 1, 1, 0, 0, 1, 1]
        or (len(pad.input) > 3 and pad.input[3])  # axes
    ):
        return False
    return (
        weight.shape[2:] == (3, 3)
        and rowconv.plain(conv_attrs)
        and list(conv_attrs.get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]
    )
