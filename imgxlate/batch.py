"""Convert files: plan a batch (:func:`plan_conversion`), run it (:func:`run_plans`), or both
(:func:`convert_paths`), one :class:`FileResult` per input.

    >>> for r in imgxlate.convert_paths(["photos"], "out", translator=t):
    ...     print(r.status, r.src, r.dst)
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.errors import ImgxlateError, UsageError
from imgxlate.inputs import PlannedFile, collect_inputs, plan_outputs
from imgxlate.translator import TILINGS, Translator


@dataclass
class FileResult:
    src: Path
    dst: Path
    status: str  # "converted" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"], d["dst"] = str(self.src), str(self.dst)
        return d


def _suffix_fn(fmt: str) -> Any:
    from imgxlate.imaging.formats import output_suffix, sniff_file

    def suffix_for(src: Path) -> str:
        # The real format, not the suffix, decides for "same" (a PNG named .jpg stays a PNG with alpha).
        return output_suffix(src.suffix, sniff_file(src) if fmt == "same" else "", fmt)

    return suffix_for


def check_format(fmt: str) -> str:
    """'PNG', 'jpeg', 'tif' -> 'png', 'jpg', 'tiff'; UsageError for an unknown format."""
    from imgxlate.imaging.formats import normalize_format

    return normalize_format(fmt)


def plan_conversion(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    fmt: str = "same",
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
) -> list[PlannedFile]:
    """Every input file with its output path and, for files not to convert, why (skipped / failed)."""
    fmt = check_format(fmt)
    files = collect_inputs(inputs, out_dir=out_dir, include=include, exclude=exclude, recursive=recursive)
    if not files:
        shown = ", ".join(str(i) for i in inputs)
        raise UsageError(f"no images found in {shown}; check the paths and --include/--exclude patterns")
    return plan_outputs(files, out_dir, _suffix_fn(fmt), overwrite=overwrite)


@dataclass
class _Item:
    plan: PlannedFile
    decode: Future[Any] | None = None
    write: Future[Any] | None = None
    result: FileResult | None = None
    seconds: float = 0.0
    size: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImgxlateError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller --tile (e.g. --tile 512) or --device cpu"
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def run_plans(
    plans: Sequence[PlannedFile],
    *,
    translator: Translator,
    fmt: str = "same",
    quality: int = 95,
    max_pixels: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    tiling: str = "exact",
    workers: int | None = None,
    batch_size: int | None = None,
) -> Iterator[FileResult]:
    """Convert planned files; yield one FileResult per plan, in plan order.

    Decoding and encoding run on a thread pool (Pillow and OpenCV release the GIL) while the main
    thread runs the model, so inference, not I/O, is the bottleneck. Consecutive images of equal size
    are batched (``batch_size``; default 4 on CUDA, 1 on CPU). Closing the iterator (or Ctrl-C) cancels
    queued decodes and waits for the writes of images already translated; each write is atomic, so no
    partial file remains (results of those last writes are not yielded; a rerun skips them).
    """
    from imgxlate.imaging.decode import DEFAULT_MAX_PIXELS, read_image
    from imgxlate.imaging.encode import write_image

    fmt = check_format(fmt)
    if tiling not in TILINGS:
        raise UsageError(f"unknown tiling {tiling!r}; use exact or blend")
    if max_pixels is None:
        max_pixels = DEFAULT_MAX_PIXELS
    if batch_size is None:
        batch_size = 4 if translator.engine.on_cuda else 1
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is None:
        workers = max(2, min(4, os.cpu_count() or 2))
    lookahead = workers + batch_size

    def decode(path: Path) -> tuple[Any, float]:
        return _timed(read_image, path, max_pixels=max_pixels)

    def write(dst: Path, rgb: np.ndarray, like: Any) -> tuple[Any, float]:
        return _timed(write_image, dst, rgb, like, fmt=fmt, quality=quality)

    queue: deque[_Item] = deque(_Item(p) for p in plans)
    decoding: deque[_Item] = deque()  # items handed to the pool for decoding, in order
    done: deque[_Item] = deque()  # items whose result is known or being written, in order
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgxlate-io")

    def feed() -> None:
        while queue and len(decoding) < lookahead:
            item = queue.popleft()
            if item.plan.status == "pending":
                item.decode = pool.submit(decode, item.plan.src)
            decoding.append(item)

    def finish(item: _Item) -> FileResult:
        if item.result is not None:
            return item.result
        assert item.write is not None
        try:
            _, seconds = item.write.result()
        except Exception as exc:  # noqa: BLE001 - any write failure is this file's failure
            return FileResult(item.plan.src, item.plan.dst, "failed", _reason(exc), item.seconds,
                              item.size[1], item.size[0])
        return FileResult(item.plan.src, item.plan.dst, "converted", "", item.seconds + seconds,
                          item.size[1], item.size[0])

    def fail(item: _Item, exc: BaseException) -> None:
        item.result = FileResult(item.plan.src, item.plan.dst, "failed", _reason(exc), item.seconds,
                                 item.size[1], item.size[0])
        done.append(item)

    try:
        feed()
        while decoding:
            item = decoding.popleft()
            feed()
            if item.decode is None:  # skipped or failed while planning
                item.result = FileResult(item.plan.src, item.plan.dst, item.plan.status, item.plan.reason)
                done.append(item)
            else:
                try:
                    decoded, item.seconds = item.decode.result()
                    item.extra["image"] = decoded
                    item.size = (decoded.height, decoded.width)
                except Exception as exc:  # noqa: BLE001 - unreadable file: report it, go on
                    fail(item, exc)
                else:
                    _infer_group(item, decoding, translator, batch_size, tile, tile_overlap, tiling, feed,
                                 pool, write, done, fail)
            # Hand back finished results in order; block on the oldest when too much is in flight.
            while done and (done[0].result is not None or (done[0].write is not None and done[0].write.done())
                            or len(done) > lookahead):
                yield finish(done.popleft())
        while done:
            yield finish(done.popleft())
    finally:
        # Stopped early (Ctrl-C, close()): drop decodes not started, but let every image already
        # translated be written (each write is atomic and short), so no finished work is lost.
        for item in (*decoding, *queue):
            if item.decode is not None:
                item.decode.cancel()
        pool.shutdown(wait=True)


def _infer_group(
    first: _Item,
    decoding: deque[_Item],
    translator: Translator,
    batch_size: int,
    tile: int | None,
    tile_overlap: int,
    tiling: str,
    feed: Any,
    pool: ThreadPoolExecutor,
    write: Any,
    done: deque[_Item],
    fail: Any,
) -> None:
    """Run ``first`` (plus following decoded images of the same size, up to ``batch_size``) through the
    model and queue their writes."""
    h, w = first.size
    group = [first]
    whole = translator._tile_for(h, w, tile) == 0
    while whole and len(group) < batch_size and decoding and decoding[0].decode is not None:
        nxt = decoding[0]
        try:
            decoded, seconds = nxt.decode.result()
        except Exception:  # noqa: BLE001 - handled when the item's own turn comes
            break
        if (decoded.height, decoded.width) != (h, w):
            break
        decoding.popleft()
        nxt.seconds, nxt.size = seconds, (h, w)
        nxt.extra["image"] = decoded
        group.append(nxt)
        feed()
    t0 = time.perf_counter()
    try:
        if len(group) == 1:
            outs = [translator.translate_rgb(first.extra["image"].rgb, tile=tile, tile_overlap=tile_overlap,
                                             tiling=tiling)]
        else:
            outs = translator.translate_rgb_batch([it.extra["image"].rgb for it in group])
    except Exception as exc:  # noqa: BLE001 - a model failure on one image must not stop the batch
        for it in group:
            it.extra.clear()
            fail(it, exc)
        return
    share = (time.perf_counter() - t0) / len(group)
    for it, out in zip(group, outs):
        it.seconds += share
        it.write = pool.submit(write, it.plan.dst, out, it.extra.pop("image"))
        done.append(it)


def convert_paths(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    translator: Translator,
    fmt: str = "same",
    quality: int = 95,
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    max_pixels: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    tiling: str = "exact",
    workers: int | None = None,
    batch_size: int | None = None,
) -> Iterator[FileResult]:
    """Translate every image under ``inputs`` into ``out_dir`` (mirrored tree); yield a FileResult per
    file, in input order. Existing outputs are skipped unless ``overwrite``; inputs are never written."""
    plans = plan_conversion(
        inputs, out_dir, fmt=fmt, overwrite=overwrite, include=include, exclude=exclude, recursive=recursive
    )
    yield from run_plans(
        plans,
        translator=translator,
        fmt=fmt,
        quality=quality,
        max_pixels=max_pixels,
        tile=tile,
        tile_overlap=tile_overlap,
        tiling=tiling,
        workers=workers,
        batch_size=batch_size,
    )
