"""What the exact tiler does for one image size: passes ("jobs"), their segments and their tiles.

A plan depends only on the graph, the padded image size and the tile edge, so it is built once per
size and cached. It is the whole-image computation rearranged:

- For every InstanceNormalization in graph order, one **stats job** computes the norm's input tensor
  tile by tile from what is stored so far (the image, kept maps) and gathers its per-channel
  statistics. Maps up to ``STORE_AREA_RATIO`` bottleneck areas (the 1/4- and 1/2-resolution maps of a
  ResNet generator) are kept whole when computed; full-resolution maps never are.
- Residual-stream checkpoints (the bottleneck Add outputs) get a **keep job** as soon as every norm
  they depend on is known, and the **output job** computes the model output.
- After each job, stored maps that no later job reads are dropped (``Job.drop_after``).

Inside a job the ops become **segments**, each one runtime call or one numpy op: a convolution with
the elementwise ops that follow it (norm with given statistics, activation, skip Add: the
*epilogue*), the elementwise ops before it (the *prologue*, moved past reflect padding and nearest
upsampling, with which they commute) and, when its output is the stats job's target, the per-channel
sums; the pads and nearest upsamplings between them run in the same graph (``Segment.pre``). Runs of
elementwise ops without a convolution become one ``group`` segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgxlate.tiling.exact.graph import Graph, Op, Region, chunks, need

# Tiles of jobs that read only bottleneck maps are at least this many bottleneck pixels on a side, so
# that small image tiles do not make the residual blocks' passes pay halo rows and calls. Not more:
# like the full-resolution tiles (tiling/auto.py, cpu_exact_tile) they run faster cache-sized (128 x
# 128 x 128 channels x 4 bytes = 8 MiB). Bundled model, 12 MP, 404 px tiles, 2 threads, maps spilled:
# 23.2-27.4 s at 256, 20.6-22.6 s at 128, 21.1 s at 160, 21.6 s at 101 (docs/benchmarks.md). It
# only matters for image tiles under 512 px: on CUDA, where tiles are as large as memory allows
# (1024 px and more on any card the budget tiles on), it does not come into play.
MIN_BOTTLENECK_TILE = 128
# Pre-norm maps up to this many times the bottleneck's area (the half-resolution 2ngf maps of a ResNet
# generator: 2 bottleneck maps of memory) are kept whole once computed, so the stem/downsampling and
# first upsampling convs are not recomputed for later norms. Full-resolution maps are never kept.
STORE_AREA_RATIO = 4


@dataclass(eq=False)
class Segment:
    """One step of a tile: ``head`` with its ``chain`` (epilogue, conv heads only), the numpy ops
    ``pre`` (pads / nearest upsampling) and elementwise ``prologue`` moved in front of the head.

    Reads ``source`` (the tensor before ``pre``/``prologue``) and the chain's other operands; writes
    ``output``. ``stats``: the runner also returns the per-channel mean and sum of squared deviations
    of ``output`` (the job's target).

    ``group``: elementwise ops (norm with given statistics, activations, Add/Sub/Mul/Div) that run
    as one graph, in graph order, ending at ``head`` (the last of them); nothing outside the group
    reads their intermediate tensors (a residual block's norm + skip Add)."""

    head: Op
    chain: tuple[Op, ...] = ()
    pre: tuple[Op, ...] = ()
    prologue: tuple[Op, ...] = ()
    stats: bool = False
    group: tuple[Op, ...] = ()

    @property
    def output(self) -> str:
        return self.chain[-1].output if self.chain else self.head.output

    @property
    def source(self) -> str:
        # ``pre`` runs on the raw values, before the prologue (they commute)
        first = (self.prologue or self.pre or (self.head,))[0]
        return first.inputs[0]

    @property
    def inputs(self) -> list[str]:
        """Tensors read: the source and the epilogue's other operands (a skip Add's stored map)."""
        if self.group:
            made = {op.output for op in self.group}
            return list(dict.fromkeys(t for op in self.group for t in op.inputs if t not in made))
        names = [self.source] if self.head.kind in ("conv", "convT") else list(self.head.inputs)
        prev = self.head.output
        for op in self.chain:
            names += [t for t in op.inputs if t != prev]
            prev = op.output
        return list(dict.fromkeys(names))

    @property
    def key(self) -> tuple[str, ...]:
        ops = self.group or (*self.prologue, self.head, *self.chain)
        return tuple(op.name for op in ops) + (("stats",) if self.stats else ())


@dataclass(eq=False)
class Job:
    target: str
    norm: Op | None  # the norm whose statistics this job gathers (None: keep / output job)
    keep: bool
    sources: tuple[str, ...]
    segments: list[Segment]
    last_use: dict[str, int]  # tensor -> index of the last segment that reads it
    tiles: list[dict[str, Region]]  # per tile: the region of every tensor it computes or reads
    drop_after: tuple[str, ...] = ()


@dataclass(eq=False)
class Plan:
    height: int  # padded image size
    width: int
    tile: int
    sizes: dict[str, tuple[int, int]]
    jobs: list[Job] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Tiles over all jobs: what progress counts."""
        return sum(len(j.tiles) for j in self.jobs)

    def stored_peak(self, channels: dict[str, int]) -> int:
        """Largest number of float values held in stored maps at once (image not counted)."""
        alive: dict[str, int] = {}
        peak = 0
        for job in self.jobs:
            if job.keep and job.target != self.output_name:
                h, w = self.sizes[job.target]
                alive[job.target] = channels[job.target] * h * w
            peak = max(peak, sum(alive.values()))
            for t in job.drop_after:
                alive.pop(t, None)
        return peak

    output_name: str = ""


def build_plan(graph: Graph, height: int, width: int, tile: int) -> Plan:
    """The plan for a padded ``height`` x ``width`` image and tile edge ``tile`` (0: whole maps)."""
    sizes = graph.sizes(height, width)
    plan = Plan(height, width, tile, sizes, output_name=graph.output_name)
    area = {t: h * w for t, (h, w) in sizes.items()}
    bottleneck = min(area.values())
    stored: set[str] = {graph.input_name}
    known: set[int] = set()
    pending = [
        op.output
        for op in graph.ops
        if op.kind == "binary" and area[op.output] == bottleneck and op.output != graph.output_name
    ]

    def ready(t: str) -> bool:
        ops, _ = graph.subgraph(t, stored)
        return all(op.norm_index in known for op in ops if op.kind == "norm")

    for norm in graph.norms:
        target = norm.inputs[0]
        keep = area[target] <= STORE_AREA_RATIO * bottleneck
        plan.jobs.append(_job(graph, plan, target, stored, norm, keep))
        if keep:
            stored.add(target)
        known.add(norm.norm_index)
        for t in list(pending):
            if ready(t):
                plan.jobs.append(_job(graph, plan, t, stored, None, True))
                stored.add(t)
                pending.remove(t)
        later = [o.inputs[0] for o in graph.norms[norm.norm_index + 1 :]] + pending + [graph.output_name]
        live: set[str] = set()
        for t in later:
            live |= graph.subgraph(t, stored)[1]
        dropped = tuple(sorted(t for t in stored if t not in live))
        stored -= set(dropped)
        plan.jobs[-1].drop_after = dropped
    plan.jobs.append(_job(graph, plan, graph.output_name, stored, None, True))
    plan.jobs[-1].drop_after = tuple(sorted(stored))
    return plan


def _segments(graph: Graph, ops: list[Op], target: str, stats: bool) -> list[Segment]:
    """Group a job's ops into segments, each placed where all of its operands exist."""
    in_job = {id(op) for op in ops}
    position = {id(op): i for i, op in enumerate(ops)}
    heads = [op for op in ops if op.kind in ("conv", "convT")]
    chains = {id(h): graph.chain(h, target, in_job) for h in heads}
    taken = {id(o) for chain in chains.values() for o in chain}
    segs: dict[int, Segment] = {}
    for head in heads:
        pre, prologue = _prologue(graph, head, in_job, taken, target) if head.kind == "conv" else ((), ())
        taken.update(id(o) for o in (*pre, *prologue))
        segs[id(head)] = Segment(head, chains[id(head)], pre, prologue)
    placed: list[tuple[int, Segment]] = []
    for op in ops:
        if id(op) in taken:
            continue
        seg = segs.get(id(op)) or Segment(op)
        placed.append((position[id(seg.chain[-1])] if seg.chain else position[id(op)], seg))
    out = _group_elementwise(graph, [seg for _, seg in sorted(placed, key=lambda p: p[0])], target, in_job)
    if stats and out[-1].output == target and out[-1].head.kind == "conv":
        out[-1].stats = True
    return out


ELEMENTWISE = ("unary", "binary", "norm")


def _group_elementwise(graph: Graph, segs: list[Segment], target: str, in_job: set[int]) -> list[Segment]:
    """Merge each run of single elementwise ops into one group segment when only its last output is
    read after it in this job (by later segments or as the target); other runs stay one op per
    segment."""
    out: list[Segment] = []
    i = 0
    while i < len(segs):
        j = i
        while j < len(segs) and segs[j].head.kind in ELEMENTWISE and not segs[j].chain and not segs[j].group:
            j += 1
        if j - i < 2:
            out.append(segs[i])
            i = max(i + 1, j)
            continue
        ops = tuple(s.head for s in segs[i:j])
        later = {t for s in segs[j:] for t in s.inputs} | {target}
        made = [op.output for op in ops]
        # intermediate outputs: read in this job only inside the group (other jobs compute their own)
        inner_ok = all(
            t not in later and all(c in ops for c in graph.consumers.get(t, []) if id(c) in in_job)
            for t in made[:-1]
        )
        if inner_ok:
            out.append(Segment(ops[-1], group=ops))
        else:
            out.extend(segs[i:j])
        i = j
    return out


def _prologue(
    graph: Graph, head: Op, in_job: set[int], taken: set[int], target: str
) -> tuple[tuple[Op, ...], tuple[Op, ...]]:
    """Ops in front of conv ``head`` that can move into its segment: walking back from the head,
    reflect/edge pads and nearest upsampling (``pre``) and then elementwise norm / activations (the
    ``prologue``), which commute with them, so the segment graph runs the prologue first, on the
    smaller tensor. Each must be computed in this job, be read in this job by nothing but the next
    one (other jobs compute it again), not be the job's target and not be part of another
    convolution's epilogue."""
    pre: list[Op] = []
    prologue: list[Op] = []
    t = head.inputs[0]
    while True:
        op = graph.producer.get(t)
        users = [c for c in graph.consumers.get(t, []) if id(c) in in_job]
        if op is None or id(op) not in in_job or id(op) in taken or len(users) != 1 or op.output == target:
            break
        if op.kind in ("pad", "resize") and not prologue:
            if op.kind == "pad" and op.attrs["mode"] not in ("reflect", "edge"):
                break
            pre.insert(0, op)
        elif op.kind == "norm" or op.kind == "unary" and op.op_type in ("Relu", "LeakyRelu", "Tanh", "Sigmoid"):
            prologue.insert(0, op)
        else:
            break
        t = op.inputs[0]
    return tuple(pre), tuple(prologue)


def _job(graph: Graph, plan: Plan, target: str, stored: set[str], norm: Op | None, keep: bool) -> Job:
    ops, sources = graph.subgraph(target, stored)
    segments = _segments(graph, ops, target, stats=norm is not None)
    last_use: dict[str, int] = {}
    for i, seg in enumerate(segments):
        for t in seg.inputs:
            last_use[t] = i
    sizes = plan.sizes
    nh, nw = sizes[target]
    biggest = max(sizes[s][0] * sizes[s][1] for s in sources)
    if plan.tile <= 0:
        th, tw = nh, nw
    else:
        ih, iw = sizes[graph.input_name]
        th, tw = max(1, round(plan.tile * nh / ih)), max(1, round(plan.tile * nw / iw))
        if biggest <= min(h * w for h, w in sizes.values()):  # reads only bottleneck maps
            th, tw = max(th, MIN_BOTTLENECK_TILE), max(tw, MIN_BOTTLENECK_TILE)
    tiles = [
        _regions(ops, sizes, target, (y0, y1, x0, x1)) for y0, y1 in chunks(nh, th) for x0, x1 in chunks(nw, tw)
    ]
    return Job(target, norm, keep, tuple(sorted(sources)), segments, last_use, tiles)


def _regions(ops: list[Op], sizes: dict[str, tuple[int, int]], target: str, region: Region) -> dict[str, Region]:
    """Backward from ``region`` of ``target``: the region of every tensor the tile needs (bounding
    box over its consumers)."""
    regions: dict[str, list[int]] = {target: list(region)}
    for op in reversed(ops):
        if op.output not in regions:
            continue
        y0, y1, x0, x1 = regions[op.output]
        for t in op.inputs:
            n = sizes[t]
            i0, i1 = need(op, 0, y0, y1, n[0])
            j0, j1 = need(op, 1, x0, x1, n[1])
            r = regions.get(t)
            regions[t] = (
                [i0, i1, j0, j1] if r is None else [min(r[0], i0), max(r[1], i1), min(r[2], j0), max(r[3], j1)]
            )
    return {t: (r[0], r[1], r[2], r[3]) for t, r in regions.items()}
