"""Convert files: plan a batch (:func:`plan_conversion`), run it (:func:`run_plans`), or both
(:func:`convert_paths`), one :class:`FileResult` per input.

    >>> for r in imgxlate.convert_paths(["photos"], "out", translator=t):
    ...     print(r.status, r.src, r.dst)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.errors import DiskFullError, ImgxlateError, OutputExistsError, UsageError, brief
from imgxlate.imaging.notices import collected
from imgxlate.inputs import (
    Found,
    PlannedFile,
    collect_inputs,
    image_file_name,
    left_out_summary,
    plan_outputs,
    same_folder,
    walked_folders,
)
from imgxlate.notes import Note
from imgxlate.options import DEFAULT_IMAGE_OPTIONS, ImageOptions
from imgxlate.translator import Translator, is_out_of_memory


@dataclass
class FileResult:
    src: Path
    dst: Path
    status: str  # "converted" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    notes: tuple[Note, ...] = ()  # a converted file's ``partial`` / ``image`` notes (:func:`converted_notes`)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"] = str(self.src)
        d["dst"] = str(self.dst) if self.dst != Path() else None  # None: found by the walk, not planned
        d["notes"] = [{"kind": n.kind, "text": n.text} for n in self.notes]
        return d


def converted_notes(pages_left_out: int, image: Sequence[str] = (), views_left_out: str = "") -> tuple[Note, ...]:
    """What a converted file's result says besides "converted": an ``image`` note for each thing the
    imaging code handled in it (``image``: texts of :func:`imgxlate.imaging.notices.collected`, e.g. a
    broken ICC profile ignored), and a ``partial`` note when pages of a multi-page TIFF were left out
    (:attr:`imgxlate.imaging.DecodedImage.pages_left_out`). The local batch and the Ray stages both
    build their results' notes here."""
    notes = tuple(Note("image", text) for text in dict.fromkeys(image))
    if views_left_out:  # an MPO's other views (DecodedImage.views_left_out)
        notes += (Note("partial", views_left_out),)
    if pages_left_out <= 0:
        return notes
    return notes + (Note("partial", f"only the first of its {pages_left_out + 1} pages was converted: a multi-page "
                            "TIFF keeps every page when it is written as TIFF (--format same or tiff) and its "
                            "pages are 8-bit or 16-bit gray; else save the pages as files of their own"),)


def _suffix_fn(fmt: str) -> Any:
    from imgxlate.imaging.formats import is_animated_file, output_suffix, sniff_file

    def suffix_for(src: Path) -> str:
        # The real format, not the suffix, decides for "same" (a PNG named .jpg stays a PNG with alpha;
        # an animated GIF stays a GIF, a still one becomes a PNG).
        if fmt != "same":
            return output_suffix(src.suffix, "", fmt)
        real = sniff_file(src)
        return output_suffix(src.suffix, real, fmt, animated=real == "GIF" and is_animated_file(src))

    return suffix_for


def _refuse_fn(fmt: str, out_dir: str | os.PathLike[str]) -> Any:
    """Why an input fails before it is decoded ("" when it may convert), for :func:`plan_outputs`; such
    an input claims no output name (another input may then use it) and a --dry-run lists it as failed:

    - an empty file (0 bytes: reading it fails), which a dry run listed as one to convert;
    - for a --format, or an output file's suffix (``--out x.jpg``), that holds one picture (jpg,
      tiff), an animated input: not translated frame by frame to fail at the write."""
    from imgxlate.imaging.animation import ANIMATED_SUFFIXES, FORMATS, one_picture_reason
    from imgxlate.imaging.decode import empty_file_error
    from imgxlate.imaging.formats import _FMT_TO_PIL, _SUFFIX_TO_PIL, is_animated_file

    named = Path(out_dir) if image_file_name(out_dir) else None
    pil_fmt = _SUFFIX_TO_PIL[named.suffix.lower()] if named is not None else _FMT_TO_PIL.get(fmt, "")
    one_picture = bool(pil_fmt) and pil_fmt not in FORMATS

    def refuse(src: Path) -> str:
        with contextlib.suppress(OSError):  # unreadable: its read says why
            if os.stat(src).st_size == 0:
                return str(empty_file_error(src))
        if one_picture and src.suffix.lower() in ANIMATED_SUFFIXES and is_animated_file(src):
            return one_picture_reason(src, pil_fmt, named, fmt)
        return ""

    return refuse


def check_format(fmt: str) -> str:
    """'PNG', 'jpeg', 'tif' -> 'png', 'jpg', 'tiff'; UsageError for an unknown format."""
    from imgxlate.imaging.formats import normalize_format

    return normalize_format(fmt)


class Plans(list[PlannedFile]):
    """The planned files (a list, in input order) plus :attr:`ignored`: what the walk found and left out
    on purpose (hidden, not an image, excluded), for ``--dry-run``."""

    def __init__(self, plans: Sequence[PlannedFile] = (), ignored: Sequence[Found] = ()) -> None:
        super().__init__(plans)
        self.ignored: list[Found] = list(ignored)


def plan_conversion(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    fmt: str = "same",
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
) -> Plans:
    """Every input file with its output path and, for files not to convert, why (skipped / failed),
    in walk order. Non-regular files, symlink loops and unreadable folders are planned as skipped or
    failed entries (``dst`` is ``Path()`` for those)."""
    fmt = check_format(fmt)
    if isinstance(inputs, (str, os.PathLike)):  # one path, not a sequence of one-letter names
        inputs = [inputs]
    for item in inputs:
        folder = Path(item).expanduser()
        if folder.is_dir() and same_folder(folder, out_dir):
            # A rerun would read the outputs as inputs (cat.png beside cat.jpg: "output is an input").
            raise UsageError(
                f"--out is the input folder {os.fspath(item)!r}: the next run would read its outputs as "
                f"inputs; choose another --out (a folder inside it, such as "
                f"{os.path.join(os.fspath(item), 'out')!r}, is fine: it is left out when the input is read)"
            )
    files = collect_inputs(inputs, out_dir=out_dir, include=include, exclude=exclude, recursive=recursive)
    reported = [f for f in files.found if f.status != "ignored"]
    if not files and not reported:
        shown = ", ".join(str(i) for i in inputs)
        seen = left_out_summary(files.found)
        raise UsageError(f"no images found in {shown}{f' (found: {seen})' if seen else ''}; check the paths and "
                         "--include/--exclude patterns")
    if fmt != "same" and image_file_name(out_dir):
        from imgxlate.imaging.formats import _FMT_TO_PIL, _SUFFIX_TO_PIL

        if _FMT_TO_PIL[fmt] != _SUFFIX_TO_PIL[Path(out_dir).suffix.lower()]:
            raise UsageError(
                f"--format {fmt} contradicts --out {out_dir}; the output file's suffix sets the format, so "
                "leave out --format or change the suffix"
            )
    planned = plan_outputs(files, out_dir, _suffix_fn(fmt), overwrite=overwrite, refuse=_refuse_fn(fmt, out_dir),
                           fmt=fmt, protected=walked_folders(inputs)) \
        if files else []
    merged: list[PlannedFile] = []
    notes = iter(reported)
    note = next(notes, None)
    for i, plan in enumerate(planned):
        while note is not None and note.before <= i:
            merged.append(PlannedFile(note.path, Path(), note.status, note.reason))
            note = next(notes, None)
        merged.append(plan)
    while note is not None:
        merged.append(PlannedFile(note.path, Path(), note.status, note.reason))
        note = next(notes, None)
    return Plans(merged, [f for f in files.found if f.status == "ignored"])


@dataclass
class _Item:
    plan: PlannedFile
    nbytes: int = 0  # decoded image (+ result while its write is pending) held for this file
    decode: Future[Any] | None = None
    write: Future[Any] | None = None
    result: FileResult | None = None
    seconds: float = 0.0
    size: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)
    reported: bool = False


# Decoded images held in the pipeline (read ahead, or translated and waiting for their write) are kept
# under this many bytes: past it only the next image is read ahead. A folder of 12 MP photos (36 MB
# each as uint8) keeps the whole lookahead; 96 MP ones (288 MB, or 1.15 GB as float) hold one ahead.
PREFETCH_BYTES = 512 << 20


def _image_bytes(decoded: Any) -> int:
    return sum(int(f.pixels.nbytes + (f.alpha.nbytes if f.alpha is not None else 0)) for f in decoded.frames)


def _result_bytes(out: np.ndarray | list[np.ndarray]) -> int:
    return sum(int(o.nbytes) for o in out) if isinstance(out, list) else int(out.nbytes)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def failure_reason(exc: BaseException) -> str:
    """Why a file failed, in one line for the user: an ImgxlateError's own message; an OSError with the
    file and what the error means (``_atomic.explain_write_error``); else the exception's first line."""
    if isinstance(exc, ImgxlateError):
        return str(exc)
    if is_out_of_memory(exc):  # numpy's MemoryError, and a runtime's (ONNX Runtime on CUDA: a RuntimeError)
        return "out of memory; use a smaller --tile (e.g. --tile 512) or --device cpu"
    if isinstance(exc, OSError):
        import errno

        from imgxlate._atomic import explain_write_error

        where = " and ".join(repr(f) for f in (exc.filename, exc.filename2) if f)
        # advice about the output only where the error can only come from writing (a full disk, a name
        # too long, a read-only file system); a refused read (a 403 on an input object) gets the reason
        writing = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.ENAMETOOLONG,
                                errno.EROFS, errno.EEXIST, errno.ENOTDIR)
        what = explain_write_error(exc) if writing else (exc.strerror or brief(exc))
        if exc.errno in (errno.EACCES, errno.EPERM) and where:  # an input, or a file in a folder not ours
            what = f"{what}; check the permissions of that file and of the folders it is in"
        # the file and what the system said: the exception's class ("PermissionError") adds nothing
        return f"{where}: {what}" if where else f"{type(exc).__name__}: {what}"
    text = brief(exc)
    return f"{type(exc).__name__}: {text}"


class BatchRun:
    """A running batch: iterate it for one :class:`FileResult` per plan, in plan order.

    Decoding and encoding run on a thread pool (Pillow and OpenCV release the GIL) while the caller's
    thread runs the model, so inference, not I/O, is the bottleneck. Consecutive images of equal size
    are batched (``batch_size``; default 4 on CUDA, 1 on CPU).

    Guarantees:

    - :attr:`results` holds every result, recorded before it is handed out, and after a stop (Ctrl-C,
      :meth:`close`, an error) also those of the writes that were in flight: every output renamed into
      place is in it, as "converted";
    - a full disk stops the batch: the file being written fails with "disk full", files already being
      written finish (or fail the same way), nothing new starts; iteration then raises
      :class:`~imgxlate.errors.DiskFullError` and :attr:`stopped` holds its message, :attr:`not_started`
      the number of plans never tried;
    - before the first write, temp files a killed run left in the output folders are removed
      (:func:`imgxlate._atomic.remove_stale_temps`).
    """

    def __init__(
        self,
        plans: Sequence[PlannedFile],
        *,
        translator: Translator,
        options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
        workers: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        from imgxlate.imaging import DEFAULT_MAX_PIXELS

        self.started = time.time()
        options.check_model(translator.multiple)
        self.options = options
        if batch_size is None:
            batch_size = translator.default_batch_size
        if batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
        self.plans = list(plans)
        self.translator = translator
        self.max_pixels = DEFAULT_MAX_PIXELS if options.max_pixels is None else options.max_pixels
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise UsageError(f"workers is the number of decode/encode threads, a whole number >= 1 (None: "
                             f"automatic), not {workers!r}")
        self.workers = workers if workers is not None else max(2, min(4, os.cpu_count() or 2))
        self.batch_size = batch_size
        self.results: list[FileResult] = []
        self.stopped: str | None = None
        self.not_started = 0
        self.removed_temps: list[Path] = []
        self._lock = threading.Lock()
        self._full: DiskFullError | None = None
        self._gen = self._run()

    def __iter__(self) -> Iterator[FileResult]:
        return self._gen

    def __next__(self) -> FileResult:
        return next(self._gen)

    def close(self) -> None:
        """Stop: queued decodes are dropped, writes in flight finish and are recorded in :attr:`results`."""
        self._gen.close()

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("converted", "skipped", "failed")}

    # --------------------------------------------------------------------------------------- internals
    def _record(self, item: _Item, result: FileResult) -> FileResult:
        item.result = result
        if not item.reported:
            item.reported = True
            self.results.append(result)
        return result

    def _write(self, item: _Item, rgb: np.ndarray | list[np.ndarray], like: Any) -> FileResult:
        """On a pool thread: write one output; the result is known to the batch as soon as the file is in
        place (a signal in the main thread cannot come between the rename and the record)."""
        from imgxlate._atomic import disk_full_error
        from imgxlate.imaging import write_image

        plan = item.plan
        t0 = time.perf_counter()
        try:
            if self._full is not None:  # an earlier write filled the disk: this one is not tried
                raise disk_full_error(plan.dst, "not written: the disk filled up before it")
            with collected() as said:
                write_image(plan.dst, rgb, like, fmt=self.options.fmt, quality=self.options.quality,
                            replace=plan.replace)
        except Exception as exc:  # noqa: BLE001 - any write failure is this file's failure
            if isinstance(exc, DiskFullError):
                with self._lock:
                    self._full = self._full or exc
            status = "skipped" if isinstance(exc, OutputExistsError) else "failed"
            result = FileResult(plan.src, plan.dst, status, failure_reason(exc), item.seconds, item.size[1],
                                item.size[0])
        else:
            result = FileResult(plan.src, plan.dst, "converted", "", item.seconds + time.perf_counter() - t0,
                                item.size[1], item.size[0],
                                converted_notes(like.pages_left_out, [*item.extra.get("said", ()), *said],
                                                like.views_left_out))
        item.result = result
        return result

    def _run(self) -> Iterator[FileResult]:
        from imgxlate._atomic import remove_stale_temps
        from imgxlate.imaging import fit_to_target, read_image

        translator, batch_size = self.translator, self.batch_size
        lookahead = self.workers + batch_size
        folders = {p.dst.parent for p in self.plans if p.status == "pending"}
        self.removed_temps = remove_stale_temps(folders, self.started)

        def decode(plan: PlannedFile) -> tuple[Any, float, list[str]]:
            # a multi-page TIFF's pages, only where the output holds them (fit_to_target); what the
            # decoder says about the file (a broken ICC profile ignored) becomes its result's notes
            with collected() as said:
                image, seconds = _timed(lambda: fit_to_target(read_image(plan.src, max_pixels=self.max_pixels),
                                                              plan.dst))
            return image, seconds, said

        items = [_Item(p) for p in self.plans]
        queue: deque[_Item] = deque(items)
        decoding: deque[_Item] = deque()  # items handed to the pool for decoding, in order
        done: deque[_Item] = deque()  # items whose result is known or being written, in order
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="imgxlate-io")

        largest = 0  # bytes of the largest decoded image so far: what a decode in flight may hold
        # (before the first one is known, a decode in flight counts as the whole budget: one at a time)

        def held() -> int:
            nonlocal largest
            total = 0
            for it in decoding:
                if it.decode is not None and it.decode.done() and it.decode.exception() is None:
                    it.nbytes = it.nbytes or _image_bytes(it.decode.result()[0])
                    largest = max(largest, it.nbytes)
                    total += it.nbytes
                elif it.decode is not None:
                    total += largest or PREFETCH_BYTES
            return total + writing()

        def writing() -> int:
            return sum(it.nbytes for it in done if it.write is not None and not it.write.done())

        def feed() -> None:
            while queue and len(decoding) < lookahead and self._full is None:
                if decoding and held() >= PREFETCH_BYTES:
                    break  # the next one is read ahead already; the rest waits for memory to go
                item = queue.popleft()
                if item.plan.status == "pending":
                    item.decode = pool.submit(decode, item.plan)
                decoding.append(item)

        def finish(item: _Item) -> FileResult:
            if item.write is not None:
                item.write.result()  # _write never raises; this waits for it
            assert item.result is not None
            return self._record(item, item.result)

        def fail(item: _Item, exc: BaseException) -> None:
            item.result = FileResult(item.plan.src, item.plan.dst, "failed", failure_reason(exc), item.seconds,
                                     item.size[1], item.size[0])
            done.append(item)

        def submit_write(item: _Item, out: np.ndarray) -> None:
            done.append(item)  # first: a stop between these lines leaves an item with no write (not written)
            image = item.extra.pop("image")
            item.nbytes = _image_bytes(image) + _result_bytes(out)
            item.write = pool.submit(self._write, item, out, image)

        try:
            feed()
            while decoding and self._full is None:
                item = decoding.popleft()
                feed()
                if item.decode is None:  # skipped or failed while planning
                    item.result = FileResult(item.plan.src, item.plan.dst, item.plan.status, item.plan.reason)
                    done.append(item)
                else:
                    try:
                        decoded, item.seconds, item.extra["said"] = item.decode.result()
                        largest = max(largest, _image_bytes(decoded))
                        item.extra["image"] = decoded
                        item.size = (decoded.height, decoded.width)
                    except Exception as exc:  # noqa: BLE001 - unreadable file: report it, go on
                        fail(item, exc)
                    else:
                        _infer_group(item, decoding, translator, batch_size, self.options, feed, submit_write,
                                     fail)
                # Hand back finished results in order; block on the oldest when too much is in flight.
                while done and (done[0].write is None or done[0].write.done() or len(done) > lookahead
                                or writing() > PREFETCH_BYTES):
                    yield finish(done.popleft())
            while done:
                yield finish(done.popleft())
            if self._full is not None:
                self.stopped = str(self._full)
                for it in (*decoding, *queue):
                    if it.decode is not None:
                        it.decode.cancel()
                    if it.plan.status != "pending":  # planned skips and failures cost nothing: report them
                        yield self._record(it, FileResult(it.plan.src, it.plan.dst, it.plan.status, it.plan.reason))
                self.not_started = sum(1 for it in (*decoding, *queue) if it.plan.status == "pending")
                raise self._full
        finally:
            # Stopped early (Ctrl-C, close(), disk full): drop decodes not started, let every image
            # already translated be written (each write is atomic and short), and record their results.
            for it in (*decoding, *queue):
                if it.decode is not None:
                    it.decode.cancel()
            pool.shutdown(wait=True)
            for it in done:
                if it.result is not None:
                    self._record(it, it.result)
            if self._full is not None and self.stopped is None:
                self.stopped = str(self._full)
            # files to convert whose result never came (a stop, Ctrl-C, close(), a full disk)
            self.not_started = sum(1 for it in items if it.plan.status == "pending" and not it.reported)


def run_plans(
    plans: Sequence[PlannedFile],
    *,
    translator: Translator,
    options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    workers: int | None = None,
    batch_size: int | None = None,
) -> BatchRun:
    """Start converting planned files: a :class:`BatchRun` (iterate it for one FileResult per plan, in
    plan order; its ``results`` also hold the writes that finished after a stop). Tile settings that
    do not fit the model are refused here, before any file is read (UsageError)."""
    return BatchRun(plans, translator=translator, options=options, workers=workers, batch_size=batch_size)


def _infer_group(
    first: _Item,
    decoding: deque[_Item],
    translator: Translator,
    batch_size: int,
    options: ImageOptions,
    feed: Any,
    submit_write: Any,
    fail: Any,
) -> None:
    """Run ``first`` (plus following decoded images of the same size, up to ``batch_size``) through the
    model and queue their writes."""
    h, w = first.size
    group = [first]
    # Animations and multi-page TIFFs are translated on their own (frame by frame, page by page);
    # stills of one size go together.
    whole = len(first.extra["image"].frames) == 1 and translator._tile_for(h, w, options.tile, options.tiling) == 0
    while whole and len(group) < batch_size and decoding and decoding[0].decode is not None:
        nxt = decoding[0]
        if nxt.decode.cancelled() or nxt.decode.exception() is not None:  # reported in its own turn
            break
        decoded, seconds, said = nxt.decode.result()
        if (decoded.height, decoded.width) != (h, w) or len(decoded.frames) > 1:
            break
        decoding.popleft()
        nxt.seconds, nxt.size = seconds, (h, w)
        nxt.extra["image"], nxt.extra["said"] = decoded, said
        group.append(nxt)
        feed()
    t0 = time.perf_counter()
    try:
        if len(group) == 1:
            outs = [translator.translate_decoded(first.extra["image"], batch_size=batch_size, **options.tiling_args)]
        else:
            outs = translator.translate_rgb_batch([it.extra["image"].pixels for it in group])
    except Exception as exc:  # noqa: BLE001 - a model failure on one image must not stop the batch
        for it in group:
            it.extra.clear()
            fail(it, exc)
        return
    share = (time.perf_counter() - t0) / len(group)
    for it, out in zip(group, outs):
        it.seconds += share
        submit_write(it, out)


def convert_paths(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    translator: Translator,
    options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    workers: int | None = None,
    batch_size: int | None = None,
) -> Iterator[FileResult]:
    """Translate every image under ``inputs`` into ``out_dir`` (mirrored tree); yield a FileResult per
    file, in input order. Existing outputs are skipped unless ``overwrite``; inputs are never written.
    ``options``: output format and quality, size limit, tiling (:class:`imgxlate.options.ImageOptions`)."""
    plans = plan_conversion(
        inputs, out_dir, fmt=options.fmt, overwrite=overwrite, include=include, exclude=exclude, recursive=recursive
    )
    yield from run_plans(plans, translator=translator, options=options, workers=workers, batch_size=batch_size)
