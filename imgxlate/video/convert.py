"""Translate videos frame by frame: decode (PyAV), run the generator, stabilise, encode, join, mux.

The pipeline (one call of :func:`convert_video`)::

    reader thread               main thread                     writer thread
    PyAV decode -> RGB frames -> queue -> translator (batched) -> queue -> flow stabiliser (optional)
    exact pts in the stream's                                         -> PyAV encoder -> segment files
    time base, upright                                                   (+ optional PNG frames)

then the segments are joined without re-encoding and muxed with the source's audio and subtitle
packets (copied where the container takes them) into a temp file beside the target, renamed onto
the target only when everything succeeded. Everything runs in-process (no FFmpeg child process).

Resuming: segments live in ``.imgxlate-parts-<name>/`` beside the target (:mod:`.segments`); a
rerun after Ctrl-C or a crash continues after the last complete segment. Ctrl-C closes the segment
being written with the frames already translated, so little work is lost.

Timestamps: every frame keeps its presentation timestamp, an integer in the source's time base,
from the decoder through the encoder to the muxer: constant and variable frame rates are kept frame
for frame; no frame is duplicated or dropped.

Odd sizes: formats that subsample chroma (yuv420p, the default, the one every player plays) need an
even width and height; an odd axis loses its last row/column (321x241 -> 320x240), with a warning.
``pix_fmt="yuv444p"`` (H.264 High 4:4:4) keeps every pixel; PNG frames always have the exact size.

Rotation: frames are rotated upright by the display matrix while decoding and written upright
with no rotation flag, so they are never rotated twice.

Temporal stability (``temporal="flow"``): see :mod:`.stabilize` and docs/video.md.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate._atomic import TEMP_PREFIX, atomic_path, is_disk_full, remove_stale_temps
from imgxlate.errors import DiskFullError, UsageError, VideoError
from imgxlate.inputs import domain_tag
from imgxlate.video.encoder import SegmentWriter, check_encoder, output_size
from imgxlate.video.media import OUTPUT_SUFFIXES, Decoder, check_input_file
from imgxlate.video.mux import mux_final
from imgxlate.video.probe import VideoInfo, parse_time, probe_video
from imgxlate.video.segments import Parts, file_identity, parts_dir, segment_file, target_lock
from imgxlate.video.stabilize import TEMPORAL_MODES, FlowStabilizer, TemporalSettings

# "off" until the flow blend meets issue 15's goals on both test clips; on the corpus clip it does (flicker
# 1.69 -> 1.02, 32.9 dB on moving pixels, ~2-3 % CPU), on the procedural pan it does not (docs/video.md).
DEFAULT_TEMPORAL = "off"
DEFAULT_SEGMENT_SECONDS = 4.0


@dataclass
class VideoResult:
    """The outcome of one :func:`convert_video` call."""

    src: Path
    dst: Path | None
    status: str  # "converted" | "skipped"
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0  # seconds of video written (last frame's end)
    seconds: float = 0.0  # wall time
    temporal: str = "off"
    audio: str = "none"  # "copied" | "re-encoded (aac)" | "none"
    cuts: int = 0
    frames_dir: Path | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    resumed_frames: int = 0  # frames taken from an earlier, interrupted run
    # the input broke off or was damaged: the output holds the frames that could be decoded, fewer
    # than the file announces (a warning says how many)
    partial: bool = False
    # a --duration cut ended the conversion: the video has frames after it (not said by the file's
    # length, which a browser's recording does not store, but by a decoded frame past the cut)
    cut_short: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("src", "dst", "frames_dir"):
            d[k] = str(d[k]) if d[k] is not None else None
        d["frames_per_second"] = round(self.frames_per_second, 3)
        d["seconds"] = round(self.seconds, 3)
        return d

    @property
    def frames_per_second(self) -> float:
        """Frames this run translated per second of it (a resumed run's earlier frames not counted)."""
        return (self.frames - self.resumed_frames) / self.seconds if self.seconds > 0 else 0.0


def default_output(src: str | os.PathLike[str], target: str, out: str | os.PathLike[str] | None = None) -> Path:
    """``<stem>.<target>.mp4`` beside ``src`` (or in folder ``out``); ``out`` with a video suffix is used as is."""
    src = Path(src)
    name = f"{src.stem}.{domain_tag(target)}.mp4"
    if out is None:
        return src.with_name(name)
    out = Path(out)
    if out.suffix.lower() in OUTPUT_SUFFIXES and not out.is_dir():
        return out
    return out / name


_SENTINEL = object()


class _Stage:
    """Error slot + stop flag shared by the three threads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                if self.stop.is_set():
                    return _SENTINEL


def _frame_name(i: int) -> str:
    return f"frame_{i + 1:06d}.png"


_FRAME_NAME = re.compile(r"frame_\d{6,}\.png")


def _claim_frames_dir(fdir: Path, overwrite: bool) -> None:
    """A --frames-dir that holds another conversion's frames is refused, or with ``overwrite`` emptied
    of them first (a shorter video would otherwise leave the old frames after its own)."""
    if not (fdir / _frame_name(0)).exists():
        return
    if not overwrite:
        raise VideoError(f"--frames-dir {fdir} already holds frames; pass --overwrite to replace them or choose "
                         "another folder")
    for f in fdir.iterdir():
        if (_FRAME_NAME.fullmatch(f.name) or f.name == FRAMES_MARK) and f.is_file():
            f.unlink()


# In a --frames-only folder: what made its frames and whether the run finished, so that an interrupted
# run continues where it stopped (the same command again) and a finished one is left alone.
FRAMES_MARK = ".imgxlate-frames.json"


def _mark_frames(fdir: Path, made_by: dict[str, Any], complete: bool) -> None:
    import json

    fdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(fdir / FRAMES_MARK) as tmp:
        tmp.write_text(json.dumps({"made_by": made_by, "complete": complete}, sort_keys=True))


def _frames_to_continue(fdir: Path, made_by: dict[str, Any]) -> int:
    """How many frames an interrupted --frames-only run of the same job left in ``fdir`` (the first
    missing one is where it goes on); 0 when they are another run's, a finished run's, or when frames
    cannot be continued (--temporal flow smooths each frame with the one before, whose state is gone)."""
    import json

    try:
        mark = json.loads((fdir / FRAMES_MARK).read_text())
    except (OSError, ValueError):
        return 0
    if mark.get("complete") or mark.get("made_by") != json.loads(json.dumps(made_by)) or \
            made_by.get("temporal") != "off":
        return 0
    n = 0
    while (fdir / _frame_name(n)).is_file():
        n += 1
    return n


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise VideoError(f"could not encode frame {path.name} as PNG")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.tobytes())
    except OSError as exc:
        raise VideoError(f"cannot write {path} ({exc.strerror or exc}); check the --frames-dir folder and free "
                         "disk space") from exc


def is_the_input(src: Path, dst: Path) -> bool:
    """Does the output path name the input file itself (through links or relative parts)?"""
    try:
        return dst.resolve() == src.resolve()
    except OSError:
        return False


def _check_paths(src: Path, dst: Path | None, frames_dir: Path | None, frames_only: bool) -> None:
    if frames_only and frames_dir is None:
        raise UsageError("frames_only needs frames_dir (--frames-only needs --frames-dir DIR)")
    if not frames_only:
        if dst is None:
            raise UsageError("no output file given")
        if dst.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UsageError(f"cannot write a video named {dst.name}; use one of {', '.join(OUTPUT_SUFFIXES)}")
        if is_the_input(src, dst):
            raise UsageError(f"the output {dst} is the input itself; choose another --out")
        if dst.is_dir():
            raise UsageError(f"the output {dst} is a folder; give a file name or use --out DIR/")
        _check_parent(dst.parent, "--out")
    if frames_dir is not None:
        if frames_dir.exists() and not frames_dir.is_dir():
            raise UsageError(f"--frames-dir {frames_dir} is a file; give a folder")
        _check_parent(frames_dir.parent, "--frames-dir")


def _check_parent(folder: Path, what: str) -> None:
    """A folder we will create: no part of it may be an existing file."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"cannot write under {folder}: {p} is a file, not a folder; choose another {what}")
            return




def convert_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None,
    translator: Any,
    *,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
    start: float | str | None = None,
    duration: float | str | None = None,
    frames_dir: str | os.PathLike[str] | None = None,
    frames_only: bool = False,
    temporal: str = DEFAULT_TEMPORAL,
    temporal_settings: TemporalSettings | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    overwrite: bool = False,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    resume: bool = True,
) -> VideoResult:
    """Translate every frame of ``src`` (or the part ``start``..``start+duration``) with ``translator``
    and write ``dst`` (H.264 MP4 by default) with the source's timing, audio and subtitles.

    ``translator`` has ``translate_batch`` ((N, H, W, 3) uint8 -> same) and ``default_batch_size``;
    ``batch_size`` frames go through it at a time (None: ``translator.default_batch_size``, 4 on CUDA,
    1 on the CPU). ``temporal``: ``"off"`` (the
    default: every frame on its own) or ``"flow"`` (flow-guided blend, :class:`FlowStabilizer`).
    ``frames_dir`` also writes every output frame as ``frame_000001.png`` ...; ``frames_only`` writes
    only those. ``progress(done, total)`` is called after each batch (``total`` an estimate). An
    existing ``dst`` is left alone (status "skipped") unless ``overwrite``. Nothing partial is ever
    left at ``dst``; an interrupted run leaves its complete segments for the next run to continue
    (``resume=False`` starts afresh).
    """
    t_start = time.perf_counter()
    started_at = time.time()
    src = Path(src)
    dst_path = Path(dst) if dst is not None else None
    fdir = Path(frames_dir) if frames_dir is not None else None
    _check_paths(src, dst_path, fdir, frames_only)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be >= 1, not {batch_size}")
    if not 0 <= int(crf) <= 63:
        raise UsageError(f"crf {crf} is out of range; H.264 takes 0 (lossless) .. 51, 18 looks transparent")
    if temporal not in TEMPORAL_MODES:
        raise UsageError(f"temporal mode {temporal!r} is not one of {', '.join(TEMPORAL_MODES)}")
    if segment_seconds <= 0:
        raise UsageError("segment length must be more than 0 seconds")
    s = parse_time(start, "start")
    d = parse_time(duration, "duration")
    if d is not None and d <= 0:
        raise UsageError("duration must be more than 0 seconds")
    check_input_file(src)
    if not frames_only:
        assert dst_path is not None
        if dst_path.exists() and not overwrite:
            return VideoResult(src, dst_path, "skipped", reason="output exists (pass --overwrite to replace it)")
        check_encoder(codec, dst_path.suffix.lower(), pix_fmt, int(crf), preset)
    frames_mark = {  # what made a --frames-only folder's frames: a rerun continues only the same job
        "src": file_identity(src), "model": file_identity(getattr(translator, "model_path", None)),
        "direction": str(getattr(getattr(translator, "metadata", None), "target", "")), "temporal": temporal,
        "start": s, "duration": d,
    }
    resume_frames = 0
    if frames_only and fdir is not None and (fdir / _frame_name(0)).exists() and not overwrite:
        resume_frames = _frames_to_continue(fdir, frames_mark)
        if resume_frames and not resume:  # --restart: this job's interrupted frames are redone
            resume_frames, overwrite = 0, True
        elif not resume_frames:
            return VideoResult(src, None, "skipped", frames_dir=fdir,
                               reason=f"{fdir} already has frames (pass --overwrite to replace them)")
    info = probe_video(src)
    if s and info.duration and s >= info.duration:
        raise VideoError(f"{src}: --start {s:g} s is past its end ({info.duration:.2f} s); give an earlier start")
    total = info.frames
    if info.fps > 0 and (s or d is not None):
        rest = max(0.0, (info.duration or 0.0) - (s or 0.0))
        span = min(rest, d) if d is not None else rest
        total = max(1, round(span * info.fps))
    warnings: list[str] = []
    stab = FlowStabilizer(temporal_settings) if temporal == "flow" else None
    job = _Job(src=src, info=info, translator=translator, stab=stab, start=s, duration=d, fdir=fdir,
               batch_size=translator.default_batch_size if batch_size is None else batch_size,
               progress=progress, total=total, warnings=warnings)
    if frames_only:
        if fdir is not None and not resume_frames:
            _claim_frames_dir(fdir, overwrite)  # here skipped above unless --overwrite: emptied first
        if fdir is not None:
            _mark_frames(fdir, frames_mark, complete=False)
        job.skip = resume_frames
        job.run()
        if fdir is not None:
            _mark_frames(fdir, frames_mark, complete=True)
        r = job.result(None, "none", t_start, temporal)
        r.resumed_frames = resume_frames
        return r

    assert dst_path is not None
    suffix = dst_path.suffix.lower()
    out_w, out_h = output_size(info.width, info.height, pix_fmt)
    if (out_w, out_h) != (info.width, info.height):
        warnings.append(f"{pix_fmt} needs an even width and height: {info.width}x{info.height} is written as "
                        f"{out_w}x{out_h} (last {'column' if out_w != info.width else 'row'}"
                        f"{' and row' if out_w != info.width and out_h != info.height else ''} dropped); "
                        "--pix-fmt yuv444p keeps every pixel")
    fingerprint = {  # the frames' job and how its segments are encoded
        **frames_mark, "codec": codec, "crf": int(crf), "preset": preset, "pix_fmt": pix_fmt,
        "settings": asdict(stab.s) if stab is not None else None, "segment_seconds": segment_seconds,
    }
    # one conversion per target at a time: a second one (another terminal, a script run twice) is
    # refused instead of both removing and rewriting each other's parts
    with target_lock(dst_path):
        if fdir is not None and not parts_dir(dst_path).is_dir():  # not the frames of a run being resumed
            _claim_frames_dir(fdir, overwrite)  # after the probe and the lock: a refused run deletes nothing
        parts = Parts(dst_path, fingerprint)
        remove_stale_temps([dst_path.parent], started_at)  # temp files a killed run left beside the target
        if not resume:
            parts.remove()
        done = parts.load()
        if parts.discarded:
            warnings.append("an earlier, interrupted run with other settings was discarded")
        if done and stab is not None:
            stab.set_state(parts.state())
        rate = info.fps if info.fps > 0 else 25.0
        job.parts = parts
        job.skip = done
        job.seg_frames = max(1, round(segment_seconds * rate))
        job.writer_factory = lambda path: SegmentWriter(path, info, codec, crf, preset, pix_fmt)
        try:
            job.run()
        except BaseException as exc:
            # a stop or a full disk: the complete segments stay, and the same command continues from them
            # (as its message says); any other failure discards them
            if not isinstance(exc, KeyboardInterrupt) and not is_disk_full(exc):
                parts.remove()
            raise
        try:
            with atomic_path(dst_path) as tmp:
                report = mux_final(parts.paths(), info, s, d, tmp, suffix, final=dst_path)
        except (DiskFullError, KeyboardInterrupt):  # the segments stay: the same command only joins them
            raise
        except OSError as exc:  # the folder (permissions, a network drive's hiccup): the segments stay too
            raise VideoError(f"cannot write {dst_path} ({exc.strerror or exc}); check the folder, then run the "
                             "same command again (it only joins the translated segments)") from exc
        except BaseException:
            # a join that fails in FFmpeg fails the same way from the same segments: they go, as for a
            # failed conversion, and nothing of this input is left beside the target
            parts.remove()
            raise
        warnings.extend(report.warnings)
        parts.remove()
        r = job.result(dst_path, report.audio, t_start, temporal)
        r.width, r.height = out_w, out_h
        r.resumed_frames = done
        return r


class _Job:
    """One conversion's decode -> translate -> (stabilise, encode) loop; owns its threads."""

    def __init__(self, *, src: Path, info: VideoInfo, translator: Any, stab: FlowStabilizer | None,
                 start: float | None, duration: float | None, fdir: Path | None, batch_size: int,
                 progress: Callable[[int, int | None], None] | None, total: int, warnings: list[str]) -> None:
        self.src, self.info, self.translator, self.stab = src, info, translator, stab
        self.start, self.duration, self.fdir = start, duration, fdir
        self.batch_size, self.progress, self.total, self.warnings = batch_size, progress, total, warnings
        self.parts: Parts | None = None
        self.skip = 0
        self.seg_frames = 1 << 30
        self.writer_factory: Callable[[Path], SegmentWriter] | None = None
        self.frames = 0  # frames written in this run
        self.partial = False  # the input broke off: see VideoResult.partial
        self.end = Fraction(0)
        self.decoder: Decoder | None = None
        self._seg: tuple[SegmentWriter, Any, Path, int] | None = None

    # ------------------------------------------------------------------ segments (writer thread)

    def _segment_write(self, frame: Any, out: np.ndarray) -> None:
        if self.parts is None or self.writer_factory is None:
            return
        if self._seg is None:
            path = self.parts.new_segment_path()
            cm = segment_file(path)
            tmp = cm.__enter__()
            try:
                w = self.writer_factory(tmp)
            except BaseException as exc:
                cm.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self._seg = (w, cm, path, frame.index)
        w = self._seg[0]
        w.write(out, frame.pts, frame.duration)
        if w.frames >= self.seg_frames:
            self._segment_close()

    def _segment_close(self) -> None:
        if self._seg is None:
            return
        w, cm, path, first = self._seg
        self._seg = None
        try:
            w.close()
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        cm.__exit__(None, None, None)
        assert self.parts is not None
        self.parts.commit(path, first, w.frames, self.stab.get_state() if self.stab is not None else None)

    def _segment_abandon(self) -> None:
        if self._seg is not None:
            w, cm, _, _ = self._seg
            self._seg = None
            w._abandon()
            err = VideoError("abandoned")
            with contextlib.suppress(BaseException):
                cm.__exit__(VideoError, err, None)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        stage = _Stage()
        threading.Event()  # set: the reader must stop (interrupt); the writer still drains
        q_in: queue.Queue[Any] = queue.Queue(maxsize=2 * self.batch_size + 2)
        q_out: queue.Queue[Any] = queue.Queue(maxsize=2 * self.batch_size + 2)
        if self.fdir is not None:
            try:
                self.fdir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise VideoError(f"cannot create {self.fdir} ({exc.strerror or exc}); check --frames-dir") from exc
        dec = self.decoder = Decoder(self.info, self.start, self.duration)
        stop_reader = threading.Event()

        def reader() -> None:
            try:
                for frame in dec.frames(stop_reader, skip=self.skip):
                    if frame.index < self.skip:
                        continue
                    if stage.stop.is_set() or stop_reader.is_set() or not stage.put(q_in, frame):
                        return
                stage.put(q_in, None)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                stage.fail(exc)

        def writer() -> None:
            try:
                while True:
                    item = stage.get(q_out)
                    if item is None or item is _SENTINEL:
                        break
                    frame, out = item
                    if self.stab is not None:
                        out = self.stab(frame.rgb, out)
                    if self.fdir is not None:
                        _write_png(self.fdir / _frame_name(frame.index), out)
                    self._segment_write(frame, out)
                    self.frames += 1
                    self.end = frame.time + frame.duration
                if stage.error is None:
                    self._segment_close()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                stage.fail(exc)
            finally:
                self._segment_abandon()

        threads = [threading.Thread(target=reader, name="imgxlate-video-reader", daemon=True),
                   threading.Thread(target=writer, name="imgxlate-video-writer", daemon=True)]
        for th in threads:
            th.start()
        done = self.skip
        if self.progress is not None:
            self.progress(done, max(self.total, done))
        try:
            ended = False
            while not ended:
                item = stage.get(q_in)
                if item is None or item is _SENTINEL:
                    break
                batch = [item]
                while len(batch) < self.batch_size:
                    try:
                        nxt = q_in.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        ended = True
                        break
                    batch.append(nxt)
                outs = list(np.asarray(self.translator.translate_batch(np.stack([f.rgb for f in batch]))))
                for f, o in zip(batch, outs, strict=True):
                    if not stage.put(q_out, (f, o)):
                        break
                done += len(batch)
                if self.progress is not None:
                    self.progress(done, max(self.total, done))
        except KeyboardInterrupt:
            # Keep what is translated: the writer encodes what is queued and closes its segment.
            stop_reader.set()
            stage.put(q_out, None)
            threads[1].join()
            stage.stop.set()
            threads[0].join(timeout=10)
            dec.close()
            raise
        except BaseException:
            stage.stop.set()
            for th in threads:
                th.join(timeout=30)
            dec.close()
            raise
        stage.put(q_out, None)
        for th in threads:
            th.join()
        dec.close()
        if stage.error is not None:
            raise stage.error
        if self.frames + self.skip == 0:
            where = f" between {self.start:g} s and the end" if self.start else ""
            raise VideoError(f"{self.src}: no video frames were decoded{where}; check --start/--duration and the file")
        info = self.info
        expected = info.frames if info.frames_reliable else 0  # probe: exact, or from the video's own span
        n = self.frames + self.skip
        # fewer frames than the count said, and they end early or leave a hole: a file with a variable
        # frame rate has fewer frames than its average rate suggests, but they reach the end of the
        # video without a gap of more than a few frames (a cut-out middle leaves one)
        covered = float(dec.last_time - dec.first_time) if dec.first_time is not None else 0.0
        # how far into the file the frames reach (a video that starts after its audio starts late)
        reached = float(dec.last_time - dec.cut_start) if dec.last_time is not None else 0.0
        steady = float(dec.longest_gap) <= max(0.5, 4 * covered / max(n, 1))
        to_the_end = bool(info.span) and reached >= 0.9 * info.span
        short = bool(expected) and n < 0.9 * expected and not (to_the_end and steady)
        if short and to_the_end and not dec.error and dec.gap_at is not None:
            # The frames reach the end, in order, with a stretch without any: a screen recording's
            # pause or a cut-out middle look the same in the file, and the output keeps that timing
            # as it is. Said, not reported as a damaged file (nothing failed to decode).
            at = float(dec.gap_at - dec.cut_start)
            self.warnings.append(f"no frames for {float(dec.longest_gap):.1f} s from {at:.1f} s (a pause, as in a "
                                 "screen recording, or a cut); the output keeps that timing")
            short = False
        if self.start is None and self.duration is None and (dec.error or short):
            why = f" ({dec.error})" if dec.error else ""
            self.partial = True
            self.warnings.append(f"only {n} of about {expected} frames could be decoded{why}; the file may be "
                                 "truncated or damaged")

    def result(self, dst: Path | None, audio: str, t_start: float, temporal: str) -> VideoResult:
        return VideoResult(
            src=self.src, dst=dst, status="converted", frames=self.frames + self.skip, width=self.info.width,
            height=self.info.height, fps=self.info.fps, duration=float(self.end),
            seconds=time.perf_counter() - t_start, temporal=temporal if self.stab is not None else "off",
            audio=audio, cuts=self.stab.cuts if self.stab is not None else 0, frames_dir=self.fdir,
            warnings=self.warnings, partial=self.partial,
            cut_short=bool(self.decoder is not None and self.decoder.cut_reached),
        )


def is_temp_name(name: str) -> bool:
    """True for the temp files and parts folders convert_video writes beside its targets."""
    from imgxlate.video.segments import PARTS_PREFIX

    return name.startswith((TEMP_PREFIX, PARTS_PREFIX))
