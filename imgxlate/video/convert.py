"""Translate videos frame by frame: decode with FFmpeg, run the generator, encode, copy the audio.

The pipeline (one call of :func:`convert_video`)::

    reader thread                     main thread                      writer thread
    ffmpeg -i src -> raw RGB24  ->  queue  ->  translator (batched)  ->  queue  ->  Matroska pipe -> ffmpeg
    + per-frame timestamps                      or ExactTiler with                   (libx264 -> temp .mp4)
      (showinfo on stderr)                      smoothed IN statistics               + optional PNG frames

then a second, cheap FFmpeg pass muxes the encoded video with the source's audio and subtitle streams
(copied when the container takes them, else re-encoded) into a temp file beside the target, which is
renamed onto the target only when everything succeeded.

Timestamps: every decoded frame keeps its presentation timestamp (read exactly, as an integer in the
decoder's time base, from FFmpeg's ``showinfo`` filter). The frames go to the encoder inside a minimal
Matroska stream (nanosecond timestamps and per-frame durations), the encoder runs with
``-fps_mode passthrough`` and the source's time base, so constant and variable frame rates are both
kept frame for frame; no frame is duplicated or dropped.

Odd sizes: H.264 in yuv420p needs even width and height. An odd axis is padded by one pixel that
repeats the last row/column (so a 97x61 video becomes 98x62; nothing is cut off). Even sizes are kept.

Rotation: FFmpeg rotates frames upright while decoding (display matrix); the output is written
upright with no rotation flag, so it is never rotated twice.

Temporal stability (``stabilize=True``): per-frame CycleGAN output flickers because every
InstanceNorm layer normalises with the statistics of the current frame alone. :class:`StatsSmoother`
replaces them by an exponential moving average over the previous frames (reset at scene cuts), fed
through :class:`imgxlate.tiling.exact.ExactTiler`'s ``stats_hook``. See docs/video.md for the measurements.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate._atomic import TEMP_PREFIX, atomic_path
from imgxlate.errors import InvalidModelError, UsageError, VideoError
from imgxlate.video.ffmpeg import (
    _WEBM_VIDEO,
    OUTPUT_SUFFIXES,
    _check_encoder,
    _Decoder,
    _Encoder,
    _ffmpeg_reason,
    _mux,
    _pad_even,
)
from imgxlate.video.probe import VideoInfo, parse_time, probe_video
from imgxlate.video.stabilize import DEFAULT_CUT_THRESHOLD, DEFAULT_MOMENTUM, StatsSmoother, _StableRunner

DEFAULT_BATCH_SIZE = 4


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
    stabilized: bool = False
    audio: str = "none"  # "copied" | "re-encoded (aac)" | "none"
    cuts: int = 0
    frames_dir: Path | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def default_output(src: str | os.PathLike[str], target: str, out: str | os.PathLike[str] | None = None) -> Path:
    """``<stem>.<target>.mp4`` beside ``src`` (or in folder ``out``); ``out`` with a video suffix is used as is."""
    src = Path(src)
    name = f"{src.stem}.{_safe_domain(target)}.mp4"
    if out is None:
        return src.with_name(name)
    out = Path(out)
    if out.suffix.lower() in OUTPUT_SUFFIXES and not out.is_dir():
        return out
    return out / name


def _safe_domain(target: str) -> str:
    return re.sub(r"[^\w.-]+", "_", target).strip("._") or "translated"


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


def _check_paths(src: Path, dst: Path | None, frames_dir: Path | None, frames_only: bool) -> None:
    if frames_only and frames_dir is None:
        raise UsageError("frames_only needs frames_dir (--frames-only needs --frames-dir DIR)")
    if not frames_only:
        if dst is None:
            raise UsageError("no output file given")
        if dst.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UsageError(f"cannot write a video named {dst.name}; use one of {', '.join(OUTPUT_SUFFIXES)}")
        with contextlib.suppress(OSError):
            if dst.resolve() == src.resolve():
                raise UsageError(f"the output {dst} is the input itself; choose another --out")
        if dst.is_dir():
            raise UsageError(f"the output {dst} is a folder; give a file name or use --out DIR/")


def convert_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None,
    translator: Any,
    *,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    start: float | str | None = None,
    duration: float | str | None = None,
    frames_dir: str | os.PathLike[str] | None = None,
    frames_only: bool = False,
    stabilize: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int | None], None] | None = None,
    overwrite: bool = False,
    momentum: float = DEFAULT_MOMENTUM,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
) -> VideoResult:
    """Translate every frame of ``src`` (or the part ``start``..``start+duration``) with ``translator``
    and write ``dst`` (H.264 MP4 by default) with the source's timing, audio and subtitles.

    ``translator`` is a :class:`imgxlate.translator.Translator` (``translate_batch`` for the per-frame
    path; ``engine`` and ``metadata`` for the stabilised path). ``frames_dir`` also writes every output
    frame as ``frame_000001.png`` ...; ``frames_only`` writes only those. ``progress(done, total)`` is
    called after each batch (``total`` is an estimate, None when unknown). An existing ``dst`` is left
    alone (status "skipped") unless ``overwrite``. Nothing partial is ever left at ``dst``.
    """
    t_start = time.perf_counter()
    src = Path(src)
    dst_path = Path(dst) if dst is not None else None
    fdir = Path(frames_dir) if frames_dir is not None else None
    _check_paths(src, dst_path, fdir, frames_only)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, not {batch_size}")
    if not 0 <= int(crf) <= 63:
        raise UsageError(f"crf {crf} is out of range; H.264 takes 0 (lossless) .. 51, 18 looks transparent")
    s = parse_time(start, "start")
    d = parse_time(duration, "duration")
    if d is not None and d <= 0:
        raise UsageError("duration must be more than 0 seconds")
    if not frames_only:
        assert dst_path is not None
        if dst_path.suffix.lower() == ".webm" and codec not in _WEBM_VIDEO:
            raise UsageError(f"WebM holds VP8/VP9/AV1 video only, not {codec}; use --codec libvpx-vp9 or a .mp4 name")
        if dst_path.exists() and not overwrite:
            return VideoResult(src, dst_path, "skipped", reason="output exists (pass --overwrite to replace it)")
        _check_encoder(codec)
    elif fdir is not None and (fdir / _frame_name(0)).exists() and not overwrite:
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

    runner: Callable[[np.ndarray], np.ndarray] | None = None
    smoother: StatsSmoother | None = None
    warnings: list[str] = []
    if stabilize:
        try:
            smoother = StatsSmoother(momentum, cut_threshold)
            runner = _StableRunner(translator, smoother)
        except (ImportError, InvalidModelError) as exc:  # not a graph the exact tiler can cut
            warnings.append(f"stabilisation is not available for this model ({exc}); frames run independently")
            smoother, runner = None, None

    if frames_only:
        assert fdir is not None
        return _run(src, None, info, translator, runner, smoother, s, d, fdir, codec, crf, preset, batch_size,
                    progress, total, warnings, t_start)
    assert dst_path is not None
    with atomic_path(dst_path) as tmp:
        return _run(src, tmp, info, translator, runner, smoother, s, d, fdir, codec, crf, preset, batch_size,
                    progress, total, warnings, t_start, final=dst_path)


def _run(src: Path, tmp: Path | None, info: VideoInfo, translator: Any,
         runner: Callable[[np.ndarray], np.ndarray] | None, smoother: StatsSmoother | None,
         start: float | None, duration: float | None, fdir: Path | None, codec: str, crf: int, preset: str,
         batch_size: int, progress: Callable[[int, int | None], None] | None, total: int,
         warnings: list[str], t_start: float, final: Path | None = None) -> VideoResult:
    stage = _Stage()
    q_in: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size + 2)
    q_out: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size + 2)
    out_w, out_h = info.width + info.width % 2, info.height + info.height % 2
    written: dict[str, Any] = {"frames": 0, "t0": None, "end": Fraction(0)}
    tb = info.time_base
    video_tmp = tmp.with_name(tmp.stem + ".video.mp4") if tmp is not None else None
    threads: list[threading.Thread] = []
    dec = enc = None
    try:
        if fdir is not None:
            fdir.mkdir(parents=True, exist_ok=True)
        if video_tmp is not None:
            enc = _Encoder(video_tmp, info, out_w, out_h, tb, codec, crf, preset)
        dec = _Decoder(info, start, duration)
        return _pump(src, info, translator, runner, smoother, dec, enc, video_tmp, tmp, start, duration, fdir,
                     batch_size, progress, total, warnings, t_start, final, stage, q_in, q_out, written, threads,
                     out_w, out_h, tb)
    except OSError as exc:
        raise VideoError(f"cannot write the output ({exc}); check the folder and free disk space") from exc
    finally:
        stage.stop.set()
        if dec is not None:
            dec.kill()
        if enc is not None:
            enc.kill()
        for th in threads:
            th.join(timeout=10)
        if video_tmp is not None:
            with contextlib.suppress(OSError):
                video_tmp.unlink()


def _pump(src: Path, info: VideoInfo, translator: Any, runner: Callable[[np.ndarray], np.ndarray] | None,
          smoother: StatsSmoother | None, dec: _Decoder, enc: _Encoder | None, video_tmp: Path | None,
          tmp: Path | None, start: float | None, duration: float | None, fdir: Path | None, batch_size: int,
          progress: Callable[[int, int | None], None] | None, total: int, warnings: list[str], t_start: float,
          final: Path | None, stage: _Stage, q_in: queue.Queue[Any], q_out: queue.Queue[Any],
          written: dict[str, Any], threads: list[threading.Thread], out_w: int, out_h: int,
          tb: Fraction | None) -> VideoResult:
    """The three-thread loop of :func:`_run` (which owns and cleans up the processes and threads)."""

    def reader() -> None:
        try:
            for frame in dec.frames(stage.stop):
                if not stage.put(q_in, frame):
                    return
            stage.put(q_in, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            stage.fail(exc)

    def writer() -> None:
        try:
            while True:
                item = stage.get(q_out)
                if item is None or item is _SENTINEL:
                    return
                frame, out = item
                if written["t0"] is None:
                    written["t0"] = frame.time
                if fdir is not None:
                    _write_png(fdir / _frame_name(frame.index), out)
                if enc is not None:
                    t_ns = round((frame.time - written["t0"]) * 1_000_000_000)
                    d_ns = round(frame.duration * 1_000_000_000)
                    try:
                        enc.mkv.write(_pad_even(out), t_ns, d_ns)
                    except (BrokenPipeError, OSError) as exc:
                        enc.proc.wait()
                        raise VideoError(f"the video encoder stopped ({_ffmpeg_reason(enc.log())})") from exc
                written["frames"] += 1
                written["end"] = frame.time + frame.duration
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            stage.fail(exc)

    threads += [threading.Thread(target=reader, name="imgxlate-video-reader", daemon=True),
                threading.Thread(target=writer, name="imgxlate-video-writer", daemon=True)]
    for th in threads:
        th.start()
    done = 0
    ended = False
    while not ended:
        item = stage.get(q_in)
        if item is _SENTINEL:
            break
        if item is None:
            break
        batch = [item]
        while len(batch) < batch_size:
            try:
                nxt = q_in.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                ended = True
                break
            batch.append(nxt)
        if runner is not None:
            outs = [runner(f.rgb) for f in batch]
        else:
            arr = np.asarray(translator.translate_batch(np.stack([f.rgb for f in batch])))
            outs = list(arr)
        for f, o in zip(batch, outs):
            if not stage.put(q_out, (f, o)):
                break
        done += len(batch)
        if progress is not None:
            progress(done, max(total, done))
    stage.put(q_out, None)
    for th in threads:
        th.join()
    if stage.error is not None:
        raise stage.error
    rc, log = dec.finish()
    if rc != 0:
        raise VideoError(f"{src}: FFmpeg could not decode the video ({_ffmpeg_reason(log)}); the file may be "
                         "damaged or truncated")
    if written["frames"] == 0:
        where = f" between {start:g} s and the end" if start else ""
        raise VideoError(f"{src}: no video frames were decoded{where}; check --start/--duration and the file")
    # The container's duration x frame rate is what the file claims; a truncated file still claims it.
    expected = round(info.duration * info.fps) if info.duration > 0 and info.fps > 0 else info.frames
    if start is None and duration is None and written["frames"] < 0.9 * expected:
        warnings.append(f"only {written['frames']} of about {expected} frames could be decoded; the file "
                        "may be truncated or damaged")
    audio = "none"
    if enc is not None:
        assert tmp is not None and video_tmp is not None
        if enc.close() != 0:
            raise VideoError(f"the video encoder failed ({_ffmpeg_reason(enc.log())})")
        audio, mux_warnings = _mux(video_tmp, written["t0"] or Fraction(0), info, start, duration, tmp, tb)
        warnings.extend(mux_warnings)
    return VideoResult(
        src=src,
        dst=final,
        status="converted",
        frames=written["frames"],
        width=out_w if enc is not None else info.width,
        height=out_h if enc is not None else info.height,
        fps=info.fps,
        duration=float(written["end"]),
        seconds=time.perf_counter() - t_start,
        stabilized=runner is not None,
        audio=audio,
        cuts=smoother.cuts if smoother is not None else 0,
        frames_dir=fdir,
        warnings=warnings,
    )


def is_temp_name(name: str) -> bool:
    """True for the temp files convert_video writes beside its targets (for tools that list folders)."""
    return name.startswith(TEMP_PREFIX)
