"""Runs a :class:`Plan`: segment graphs on a runtime, stored maps, statistics, progress.

Every convolution segment runs as one small ONNX graph (built by :mod:`.segments` from the generator's
weights with ``pads = 0``) on the runner the caller's factory makes (ONNX Runtime or OpenVINO, see
:mod:`imgxlate.engine`): the cast of float16 stored maps, the prologue (norm with this image's
statistics, activation) on the smallest tensor, nearest upsampling and reflect/edge padding with their
crops (amounts fed per tile; an upsampling 3x3 conv runs at low resolution, :mod:`.subpixel`), zero
padding at the true border, the convolution, the epilogue (norm, activation, skip Add), for a stats
job's target the per-channel mean and sum of squared deviations, and the cast to float16 for a float16
store. Elementwise groups (a residual block's norm + skip Add) are one graph too. Per tile, numpy only
slices input windows and copies results into stored maps; which graph a tile needs is its
:class:`Variant` (interior tiles pad and crop nothing).

Statistics: every tile gives (count, mean, M2) per channel (float32 inside the runtime over one
tile); tiles are combined in float64 with Chan's parallel formula, so the variance keeps its
precision when |mean| >> std.

Stored maps live in a :class:`.store.MapStore` (RAM float32 or float16, or spilled to a file), or in
a :class:`.device.DeviceStore` (torch tensors on the GPU): then every value between a tile's segments
stays on the device too, the runners bind them by address (``run_device``), and only the image window
goes up and the output tile and the statistics come down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgxlate.graphs import subpixel
from imgxlate.tiling.exact.device import DeviceArrays, DeviceStore
from imgxlate.tiling.exact.graph import BINARY, UNARY, Graph, Op, Region, need, pad_need
from imgxlate.tiling.exact.plan import Job, Plan, Segment
from imgxlate.tiling.exact.segments import SegmentRunners, Variant
from imgxlate.tiling.exact.store import MapStore
from imgxlate.tiling.pad import pad_bottom_right

StatsHook = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Progress = Callable[[int, int], None]
Sink = Callable[[Region, np.ndarray], None]
NormParams = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # mean, scale, bias; (1, C, 1, 1) float32


# ------------------------------------------------------------------------------------ allocator

_libc: Any = None


def trim_freed_memory() -> None:
    """Hand the memory glibc holds in freed blocks back to the kernel (``malloc_trim``), once per pass.

    glibc keeps freed tile-sized buffers in per-thread heaps that are rarely trimmed on their own, so
    a tiled run's resident memory would creep up by a few tiles per pass (measured: 1382 MiB peak
    instead of 293 MiB for a 1024x768 image, bundled model). Trimming after every pass bounds that
    without the page faults of mapping every buffer afresh (``M_MMAP_THRESHOLD`` = 1 MiB, the previous
    remedy: 3.8 M faults and 11.4 s instead of 6.0 s for a 3 MP photo). A no-op off glibc."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


# ------------------------------------------------------------------------------------------ input


class ImageSource:
    """The model input, read by window: (C, H, W) float32 in model range, or (H, W, C) samples of any
    dtype mapped by ``x * scale + offset`` (a decoded uint8 photo needs no float copy of its own).
    Windows past the real border (the padding to the size multiple) read reflected rows/columns, as
    :func:`imgxlate.tiling.pad_to_multiple` pads."""

    def __init__(self, image: np.ndarray, padded: tuple[int, int], *, hwc: bool = False,
                 scale: float = 1.0, offset: float = 0.0) -> None:
        self.image, self.hwc, self.scale, self.offset = image, hwc, np.float32(scale), np.float32(offset)
        h, w = image.shape[:2] if hwc else image.shape[1:]
        self.size = (h, w)
        self.index = [_pad_index(n, p) for n, p in zip((h, w), padded)]

    def read(self, region: Region) -> np.ndarray:
        y0, y1, x0, x1 = region
        h, w = self.size
        rows: Any = slice(y0, y1) if y1 <= h else self.index[0][y0:y1]
        cols: Any = slice(x0, x1) if x1 <= w else self.index[1][x0:x1]
        if self.hwc:
            win = self.image[rows][:, cols] if not isinstance(rows, slice) else self.image[rows, cols]
            out = np.empty((1, win.shape[2], y1 - y0, x1 - x0), np.float32)
            out[0] = np.moveaxis(win, 2, 0)
            if self.scale != 1 or self.offset != 0:
                out *= self.scale
                out += self.offset
            return out
        win = self.image[:, rows][:, :, cols] if not isinstance(rows, slice) else self.image[:, rows, cols]
        return np.asarray(win, dtype=np.float32)[None]


def _pad_index(n: int, padded: int) -> np.ndarray:
    """Row numbers of the image padded to ``padded`` rows by :func:`pad_bottom_right`'s rule."""
    return pad_bottom_right(np.arange(n)[None, :], 1, padded)[0]


# ------------------------------------------------------------------------------------ statistics


@dataclass
class _Moments:
    """Per-channel count, mean and M2 (sum of squared deviations), combined with Chan's formula."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def add(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        mean, m2 = mean.astype(np.float64).reshape(-1), m2.astype(np.float64).reshape(-1)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.n = total

    def add_tile(self, y: np.ndarray) -> None:
        n = y.shape[2] * y.shape[3]
        mean = y.mean(axis=(0, 2, 3), dtype=np.float64)
        dev = y - mean.astype(np.float32).reshape(1, -1, 1, 1)
        np.square(dev, out=dev)
        self.add(n, mean, dev.sum(axis=3).sum(axis=(0, 2), dtype=np.float64))


# -------------------------------------------------------------------------------------- executor


class Executor:
    """Runs plans of one graph with one runner factory."""

    def __init__(self, graph: Graph, factory: Callable[[bytes], Any]) -> None:
        self.graph = graph
        self.runners = SegmentRunners(graph, factory)
        self._sizes: dict[str, tuple[int, int]] = {}
        self.dev: DeviceArrays | None = None  # set for a run whose store is a DeviceStore

    def run(
        self,
        plan: Plan,
        source: ImageSource,
        *,
        stats_hook: StatsHook | None = None,
        progress: Progress | None = None,
        store: MapStore | DeviceStore | None = None,
        sink: Sink | None = None,
        crop: tuple[int, int] | None = None,
    ) -> np.ndarray | None:
        """Run ``plan`` on ``source``; return the output (C, h, w) cropped to ``crop``, or hand every
        output tile to ``sink(region, (C, h', w') float32)`` (regions clipped to ``crop``) and return
        None. A :class:`DeviceStore` keeps the maps and the tiles on its device."""
        g = self.graph
        self._sizes = plan.sizes
        store = store or MapStore()
        self.dev = store.arrays if isinstance(store, DeviceStore) else None
        norm: dict[int, NormParams] = {}
        h, w = crop or (plan.height, plan.width)
        out: np.ndarray | None = None
        done, total = 0, plan.steps
        try:
            for job in plan.jobs:
                moments = _Moments()
                final = job.target == g.output_name
                row: int | None = None
                for regions in job.tiles:
                    reg = regions[job.target]
                    if reg[0] != row:
                        # Spilled maps are written and read a row of tiles at a time (the tiles
                        # of a row share their map rows): the row is done, to the file with it.
                        store.release()
                        row = reg[0]
                    y = self._tile(job, regions, source, store, norm, moments)
                    if final:
                        y0, y1, x0, x1 = reg[0], min(reg[1], h), reg[2], min(reg[3], w)
                        if y1 > y0 and x1 > x0:
                            tile_out = y[0, :, : y1 - y0, : x1 - x0]
                            if self.dev is not None:
                                tile_out = self.dev.download(tile_out)
                            if sink is not None:
                                sink((y0, y1, x0, x1), tile_out)
                            else:
                                if out is None:
                                    out = np.empty((tile_out.shape[0], h, w), np.float32)
                                out[:, y0:y1, x0:x1] = tile_out
                    elif job.keep:
                        assert y is not None
                        if job.target not in store.maps:
                            store.create(job.target, (1, y.shape[1], *plan.sizes[job.target]))
                        store.write(job.target, reg, y)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                if job.norm is not None:
                    norm[job.norm.norm_index] = self._norm_params(job.norm, moments, stats_hook)
                store.release()
                for t in job.drop_after:
                    store.drop(t)
                self.runners.release()
                trim_freed_memory()
        finally:
            store.close()
        return out

    @staticmethod
    def _norm_params(op: Op, moments: _Moments, hook: StatsHook | None) -> NormParams:
        assert moments.mean is not None and moments.m2 is not None
        mean, var = moments.mean, np.maximum(moments.m2 / moments.n, 0.0)
        if hook is not None:
            from imgxlate.errors import UsageError

            got = hook(op.norm_index, mean, var)
            try:
                new_mean, new_var = (np.asarray(v, dtype=np.float64).reshape(mean.shape) for v in got)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"stats_hook must return (mean, var) arrays of shape {mean.shape} ({exc})") from exc
            mean, var = new_mean, np.maximum(new_var, 0.0)
        scale, bias = op.consts[0].astype(np.float64), op.consts[1].astype(np.float64)  # type: ignore[union-attr]
        a = scale / np.sqrt(var + op.attrs["epsilon"])
        shape = (1, -1, 1, 1)
        return (
            mean.astype(np.float32).reshape(shape),
            a.astype(np.float32).reshape(shape),
            bias.astype(np.float32).reshape(shape) if np.any(bias) else None,
        )

    # ------------------------------------------------------------------------------- one tile

    def _tile(
        self,
        job: Job,
        regions: dict[str, Region],
        source: ImageSource,
        store: MapStore,
        norm: dict[int, NormParams],
        moments: _Moments,
    ) -> np.ndarray | None:
        values: dict[str, tuple[np.ndarray, int, int]] = {}
        for s in job.sources:
            r = regions[s]
            if s != self.graph.input_name:
                arr = store.read(s, r)
            else:
                arr = source.read(r) if self.dev is None else self.dev.upload(source.read(r))
            values[s] = (arr, r[0], r[2])
        # A kept map bound for a float16 store leaves the runtime as float16 (no numpy cast).
        store16 = job.keep and store.dtype == np.float16 and job.target != self.graph.output_name
        result: np.ndarray | None = None
        for i, seg in enumerate(job.segments):
            emit = not seg.stats or job.keep or seg.output != job.target
            out16 = store16 and seg.output == job.target and (job.norm is None or seg.stats)
            y = self._segment(seg, regions, values, norm, moments, emit, out16)
            if seg.output == job.target:
                result = y
            if y is not None:
                values[seg.output] = (y, regions[seg.output][0], regions[seg.output][2])
            for t in seg.inputs:
                if job.last_use.get(t) == i:
                    values.pop(t, None)
        if job.norm is not None and not job.segments[-1].stats:
            assert result is not None
            if self.dev is None:
                moments.add_tile(result)
            else:
                moments.add(*self.dev.moments(result))
        return result

    def _segment(
        self,
        seg: Segment,
        regions: dict[str, Region],
        values: dict[str, tuple[np.ndarray, int, int]],
        norm: dict[int, NormParams],
        moments: _Moments,
        emit: bool,
        out16: bool = False,
    ) -> np.ndarray | None:
        head = seg.head
        reg = regions[seg.output]
        if seg.group:
            return self._group(seg, reg, values, norm, out16)
        if head.kind not in ("conv", "convT"):
            y = self._numpy_op(head, [self._host(values[t]) for t in head.inputs], reg, regions, norm)
            return y if self.dev is None else self.dev.upload(y)
        oy0, oy1, ox0, ox1 = regions[head.output]
        n_in = self._sizes[head.inputs[0]]
        feed: dict[str, np.ndarray] = {}
        if head.kind == "convT":
            i0, i1 = need(head, 0, oy0, oy1, n_in[0])
            j0, j1 = need(head, 1, ox0, ox1, n_in[1])
            self._feed_map(feed, "x", _crop(values[seg.source], i0, i1, j0, j1), float32=True)
            variant = Variant(False, emit, out16=out16)
        elif (low := self._subpixel_window(seg, (oy0, oy1, ox0, ox1), values)) is not None:
            x, (r0, c0) = low
            x16 = self._feed_map(feed, "x", x)
            # the phases cover output rows [2 r0, 2 r1): crop to the tile
            feed["st_sp"] = np.array([oy0 - 2 * r0, ox0 - 2 * c0], np.int64)
            feed["en_sp"] = np.array([oy1 - 2 * r0, ox1 - 2 * c0], np.int64)
            variant = Variant(True, emit, x16=x16, out16=out16, subpixel=True)
        else:
            windows = [
                (o0 * head.s[ax], (o1 - 1) * head.s[ax] + head.d[ax] * (head.k[ax] - 1) + 1)
                for ax, (o0, o1) in enumerate(((oy0, oy1), (ox0, ox1)))
            ]
            (u0, u1, a, b, sy), (v0, v1, c, e, sx) = (
                pad_need(q0, q1, n_in[ax], head.pb[ax], "constant") for ax, (q0, q1) in enumerate(windows)
            )
            (q0, q1), (r0, r1) = windows
            exact = sy == q0 and sx == r0 and sy + a + (u1 - u0) + b == q1 and sx + c + (v1 - v0) + e == r1
            pre = self._fused_pre(seg, regions, values, (u0, u1, v0, v1), feed) if exact else None
            if pre is not None:
                x = pre[0]
                x16 = self._feed_map(feed, "x", x)
                conv_pad = bool(a or b or c or e)
                if conv_pad:
                    feed["pads"] = np.array([0, 0, a, c, 0, 0, b, e], np.int64)
                variant = Variant(True, emit, pre[1], conv_pad, x16, out16=out16)
            else:  # numpy does the pre ops, the prologue and the zero padding (on the host)
                x = self._host(values[seg.source])
                for op in seg.pre:
                    r = regions[op.output]
                    x = (self._numpy_op(op, [x], r, regions, norm), r[0], r[2])
                raw = _crop(x, u0, u1, v0, v1)
                if seg.prologue:
                    raw = self._elementwise(seg.prologue, np.array(raw, dtype=np.float32), norm)
                if a or b or c or e:
                    raw = np.pad(raw, ((0, 0), (0, 0), (a, b), (c, e)))
                feed["x"] = np.ascontiguousarray(raw[:, :, q0 - sy : q1 - sy, r0 - sx : r1 - sx], dtype=np.float32)
                variant = Variant(False, emit, out16=out16)
        if variant.fused:  # the prologue's norms run inside the graph: their statistics are fed
            for j, op in enumerate(seg.prologue):
                if op.kind == "norm":
                    self._feed_norm(feed, f"p{j}", op, norm)
        prev = head.output
        e16: list[int] = []
        for j, op in enumerate(seg.chain):
            if op.kind == "norm":
                self._feed_norm(feed, str(j), op, norm)
            elif op.kind == "binary":
                for t in op.inputs:
                    if t != prev and self._feed_map(feed, f"e{j}", _crop(values[t], oy0, oy1, ox0, ox1)):
                        e16.append(j)
            prev = op.output
        if e16:
            variant = dataclasses.replace(variant, e16=tuple(e16))
        outs = self._run(self.runners.get(seg, variant), feed)
        y = outs[0] if emit or not seg.stats else None
        if seg.stats:
            mean, m2 = outs[-2], outs[-1]
            if self.dev is not None:
                mean, m2 = self.dev.download(mean), self.dev.download(m2)
            moments.add((oy1 - oy0) * (ox1 - ox0), mean, m2)
        if y is not None and head.kind == "convT":
            i0 = need(head, 0, oy0, oy1, n_in[0])[0]
            j0 = need(head, 1, ox0, ox1, n_in[1])[0]
            gy, gx = i0 * head.s[0] - head.pb[0], j0 * head.s[1] - head.pb[1]  # global position of y[0, 0]
            y = y[:, :, oy0 - gy : oy1 - gy, ox0 - gx : ox1 - gx]
        return y

    def _group(
        self,
        seg: Segment,
        reg: Region,
        values: dict[str, tuple[np.ndarray, int, int]],
        norm: dict[int, NormParams],
        out16: bool,
    ) -> np.ndarray:
        """An elementwise group on the region of its output (its inputs' windows may be larger)."""
        y0, y1, x0, x1 = reg
        feed: dict[str, np.ndarray] = {}
        e16: list[int] = []
        for k, t in enumerate(seg.inputs):
            if self._feed_map(feed, f"e{k}", _crop(values[t], y0, y1, x0, x1)):
                e16.append(k)
        for j, op in enumerate(seg.group):
            if op.kind == "norm":
                self._feed_norm(feed, f"g{j}", op, norm)
        variant = Variant(False, True, e16=tuple(e16), out16=out16)
        return self._run(self.runners.get(seg, variant), feed)[0]

    def _subpixel_window(
        self, seg: Segment, out: Region, values: dict[str, tuple[np.ndarray, int, int]]
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """For an upsampling conv done at low resolution (:mod:`.subpixel`): the low-resolution window
        and its origin; None when the segment is not of that form or the window is not at hand."""
        if not subpixel.applies(seg.pre, seg.head):
            return None
        n = self._sizes[seg.pre[0].inputs[0]]
        r0, r1 = subpixel.low_rows(out[0], out[1], n[0])
        c0, c1 = subpixel.low_rows(out[2], out[3], n[1])
        arr, ay, ax = values[seg.source]
        if r0 < ay or c0 < ax or r1 > ay + arr.shape[2] or c1 > ax + arr.shape[3]:
            return None
        return _crop(values[seg.source], r0, r1, c0, c1), (r0, c0)

    def _fused_pre(
        self,
        seg: Segment,
        regions: dict[str, Region],
        values: dict[str, tuple[np.ndarray, int, int]],
        conv_in: Region,
        feed: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, tuple[tuple[bool, bool], ...]] | None:
        """The input window of a fused conv segment and, per ``pre`` op, whether it pads and crops
        (their amounts go into ``feed``). Every op's input window must be exactly what the op needs,
        as the plan's regions make it for single-consumer ops; None (numpy does the pre ops) if not.

        Per op, in its input window's coordinates: nearest upsampling by (fy, fx) turns rows
        [i0, i1) into [i0*fy, i1*fy); padding adds a / b rows only where the window crosses the true
        border; then the crop keeps the rows of the op's output region."""
        flags: list[tuple[bool, bool]] = []
        x: np.ndarray | None = None
        region: Region | None = None
        for j, op in enumerate(seg.pre):
            y0, y1, x0, x1 = regions[op.output]
            n = self._sizes[op.inputs[0]]
            if op.kind == "resize":
                (i0, i1), (j0, j1) = need(op, 0, y0, y1, n[0]), need(op, 1, x0, x1, n[1])
                start, extent = (i0 * op.s[0], j0 * op.s[1]), ((i1 - i0) * op.s[0], (j1 - j0) * op.s[1])
                padded = False
            else:
                (i0, i1, a, b, sy), (j0, j1, c, e, sx) = (
                    pad_need(q0, q1, n[ax], op.pb[ax], op.attrs["mode"]) for ax, (q0, q1) in enumerate(((y0, y1), (x0, x1)))
                )
                start, extent = (sy, sx), (a + i1 - i0 + b, c + j1 - j0 + e)
                padded = bool(a or b or c or e)
                if padded:
                    feed[f"pd{j}"] = np.array([0, 0, a, c, 0, 0, b, e], np.int64)
            if x is None:
                x = _crop(values[seg.source], i0, i1, j0, j1)
            elif region != (i0, i1, j0, j1):
                return None
            st = (y0 - start[0], x0 - start[1])
            en = (st[0] + y1 - y0, st[1] + x1 - x0)
            cropped = st != (0, 0) or en != extent
            if cropped:
                feed[f"st{j}"], feed[f"en{j}"] = np.array(st, np.int64), np.array(en, np.int64)
            flags.append((padded, cropped))
            region = (y0, y1, x0, x1)
        u0, u1, v0, v1 = conv_in
        if x is None:
            return _crop(values[seg.source], u0, u1, v0, v1), ()
        if region != conv_in:
            return None
        return x, tuple(flags)

    # ---------------------------------------------------------------- host or device values

    def _feed_map(self, feed: dict[str, Any], name: str, window: Any, *, float32: bool = False) -> bool:
        """Feed a map window as it is stored (float16 stays float16: the graph casts it; ``float32``:
        always float32), anything else as float32; True when it went in as float16. Device windows
        stay on the device."""
        if self.dev is not None:
            feed[name], half = self.dev.feedable(window, force_float32=float32)
            return half
        half = window.dtype == np.float16 and not float32
        feed[name] = np.ascontiguousarray(window, dtype=None if half else np.float32)
        return half

    def _run(self, runner: Any, feed: dict[str, Any]) -> list[Any]:
        return runner.run(feed) if self.dev is None else runner.run_device(feed)

    def _host(self, v: tuple[Any, int, int]) -> tuple[np.ndarray, int, int]:
        """A value (array, row, column) with its array on the host (numpy ops run there)."""
        return v if self.dev is None else (self.dev.download(v[0]), v[1], v[2])

    def _feed_norm(self, feed: dict[str, np.ndarray], tag: str, op: Op, norm: dict[int, NormParams]) -> None:
        mean, a, b = norm[op.norm_index]
        feed[f"m{tag}"], feed[f"a{tag}"] = mean, a
        if b is not None:
            feed[f"b{tag}"] = b

    def _elementwise(self, ops: tuple[Op, ...], x: np.ndarray, norm: dict[int, NormParams]) -> np.ndarray:
        for op in ops:
            x = self._numpy_op(op, [(x, 0, 0)], (0, x.shape[2], 0, x.shape[3]), {}, norm, inplace=True)
        return x

    def _numpy_op(
        self,
        op: Op,
        xs: list[tuple[np.ndarray, int, int]],
        reg: Region,
        regions: dict[str, Region],
        norm: dict[int, NormParams],
        inplace: bool = False,
    ) -> np.ndarray:
        """Pad, Resize, elementwise ops computed exactly on ``reg`` of their output."""
        y0, y1, x0, x1 = reg
        if op.kind in ("unary", "norm"):
            x = _crop(xs[0], y0, y1, x0, x1)
            out = x if inplace else np.empty(x.shape, np.float32)
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
            return UNARY[op.op_type](x, out)
        if op.kind == "binary":
            args, vi = [], 0
            for c in op.consts:
                if c is None:
                    args.append(_crop(xs[vi], y0, y1, x0, x1))
                    vi += 1
                else:
                    args.append(c)
            return BINARY[op.op_type](args[0], args[1]).astype(np.float32, copy=False)
        n_in = self._sizes[op.inputs[0]]
        if op.kind == "resize":
            fy, fx = op.s
            i0, i1 = need(op, 0, y0, y1, n_in[0])
            j0, j1 = need(op, 1, x0, x1, n_in[1])
            x = _crop(xs[0], i0, i1, j0, j1)
            # Nearest upsampling in one copy: (n, c, h, 1, w, 1) broadcast to (n, c, h, fy, w, fx).
            n, c, h, w = x.shape
            up = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, fy, w, fx)).reshape(n, c, h * fy, w * fx)
            return up[:, :, y0 - i0 * fy : y1 - i0 * fy, x0 - j0 * fx : x1 - j0 * fx]
        # pad: read real rows, pad only across the true border, then crop
        mode, value = op.attrs["mode"], op.attrs["value"]
        cuts = [pad_need(q0, q1, n_in[ax], op.pb[ax], mode) for ax, (q0, q1) in enumerate(((y0, y1), (x0, x1)))]
        (u0, u1, a, b, sy), (v0, v1, c, e, sx) = cuts
        x = _crop(xs[0], u0, u1, v0, v1)
        if a or b or c or e:
            widths = ((0, 0), (0, 0), (a, b), (c, e))
            x = np.pad(x, widths, mode=mode, constant_values=value) if mode == "constant" else np.pad(x, widths, mode=mode)
        return x[:, :, y0 - sy : y1 - sy, x0 - sx : x1 - sx]


def _crop(v: tuple[np.ndarray, int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    arr, ay, ax = v
    return arr[:, :, r0 - ay : r1 - ay, c0 - ax : c1 - ax]
