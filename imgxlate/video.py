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
through :class:`imgxlate.exact.ExactTiler`'s ``stats_hook``. See docs/video.md for the measurements.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from imgxlate._atomic import TEMP_PREFIX, atomic_path
from imgxlate.errors import InvalidModelError, UsageError, VideoError

__all__ = [
    "OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "StatsSmoother",
    "VideoInfo",
    "VideoResult",
    "convert_video",
    "default_output",
    "ffmpeg_exe",
    "flicker_ratio",
    "measure_stability",
    "parse_time",
    "probe_video",
    "read_frames",
    "static_flicker",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
# Containers we write; the codec must fit the container (WebM takes VP8/VP9/AV1 only).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
_MP4_LIKE = (".mp4", ".m4v", ".mov")
_WEBM_VIDEO = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e")
_TEXT_SUBS = ("subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text")

# Defaults of the stabiliser, chosen on the corpus clip (docs/video.md): weight of the running
# average (0.8 -> ~5-frame memory) and the scene-cut threshold (see StatsSmoother). On the clip the
# layer-0 shift is 0.11-0.15 at its one hard cut and at most 0.04 on every other frame (two models).
DEFAULT_MOMENTUM = 0.8
DEFAULT_CUT_THRESHOLD = 0.07
DEFAULT_BATCH_SIZE = 4


def ffmpeg_exe() -> str:
    """The FFmpeg binary bundled with imageio-ffmpeg (no system FFmpeg is needed)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a dependency
        raise VideoError("imageio-ffmpeg is not installed; `pip install imageio-ffmpeg`") from exc
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:  # pragma: no cover - broken wheel
        raise VideoError(f"no FFmpeg binary found ({exc}); reinstall imageio-ffmpeg") from exc


def _popen_kwargs() -> dict[str, Any]:
    # Windows: no console window per FFmpeg process.
    if sys.platform.startswith("win"):
        return {"creationflags": 0x08000000}
    return {}


# --------------------------------------------------------------------------------------------------
# probing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInfo:
    index: int  # stream index in the file (the N of "0:N")
    kind: str  # "video" | "audio" | "subtitle" | "data" | "attachment"
    codec: str
    line: str  # FFmpeg's description of the stream


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a file.

    ``width``/``height`` are the size as displayed, i.e. after the display-matrix rotation FFmpeg
    applies while decoding (and the size our output has, before odd-size padding). ``rotation`` is the
    display matrix angle in degrees (0..359, as FFmpeg prints it). ``fps`` is FFmpeg's average frame
    rate (0 when unknown); ``frames`` the number of video packets (= frames for every common codec),
    counted by demuxing the file without decoding it.
    """

    path: Path
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    has_audio: bool
    rotation: int
    codec: str
    video_index: int = 0
    time_base: Fraction | None = None
    sar: tuple[int, int] = (1, 1)
    pix_fmt: str = ""
    # (range, matrix, primaries, transfer) as tagged in the file; "" where untagged.
    color: tuple[str, str, str, str] = ("", "", "", "")
    audio: tuple[StreamInfo, ...] = ()
    subtitles: tuple[StreamInfo, ...] = ()


_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (\w+): (\S+?)[,\s]")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)


def _parse_rate(text: str, unit: str) -> float:
    m = re.search(r"([\d.]+)(k?) " + unit + r"\b", text)
    if not m:
        return 0.0
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def _parse_color(pix: str) -> tuple[str, str, str, str]:
    """``yuv420p(tv, bt709/bt709/iec61966-2-1, progressive)`` -> (range, matrix, primaries, trc)."""
    m = re.search(r"\(([^)]*)\)", pix)
    if not m:
        return ("", "", "", "")
    rng = mat = prim = trc = ""
    for tok in (t.strip() for t in m.group(1).split(",")):
        if tok in ("tv", "pc"):
            rng = tok
        elif "/" in tok:
            parts = (tok.split("/") + ["", ""])[:3]
            mat, prim, trc = (p if p != "unknown" else "" for p in parts)
        elif tok and tok not in ("progressive", "tff", "bff", "top first", "bottom first", "top coded first (swapped)",
                                 "bottom coded first (swapped)") and re.fullmatch(r"[a-z0-9-]+", tok):
            # One name means matrix, primaries and transfer are all this.
            mat = prim = trc = tok
    return rng, mat, prim, trc


def _run_probe(path: Path) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False, **_popen_kwargs())
    except subprocess.TimeoutExpired as exc:
        raise VideoError(f"{path}: FFmpeg took over 2 minutes to open it; is it on a stalled network drive?") from exc
    return proc.stderr.decode("utf-8", errors="replace")


def _ffmpeg_reason(text: str) -> str:
    """The most telling line of an FFmpeg error log."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if any(w in low for w in ("invalid data", "no such file", "permission denied", "moov atom not found",
                                  "error", "unknown", "not recognized", "invalid", "could not")):
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return lines[-1] if lines else "FFmpeg gave no reason"


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's size, frame rate, frame count, duration, streams and rotation with FFmpeg.

    Raises :class:`VideoError` when the file does not exist, is not a media file FFmpeg can read,
    has no video stream, or has no video frames.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise VideoError(f"{path} is a folder; give a video file")
    text = _run_probe(path)
    if "Input #0" not in text:
        raise VideoError(
            f"{path} is not a video FFmpeg can read ({_ffmpeg_reason(text)}); check that the file is a "
            "complete video (a partial download or a renamed file cannot be read)"
        )
    streams: list[StreamInfo] = []
    rotation = 0
    current: StreamInfo | None = None
    for line in text.splitlines():
        m = _STREAM_RE.match(line)
        if m:
            current = StreamInfo(int(m.group(1)), m.group(2).lower(), m.group(3).lower(), line.strip())
            streams.append(current)
            continue
        rm = _ROTATION_RE.search(line)
        if rm and current is not None and current.kind == "video" and current is _first_video(streams):
            rotation = round(float(rm.group(1))) % 360
    video = _first_video(streams)
    if video is None:
        raise VideoError(f"{path} has no video stream (only {_kinds(streams) or 'no streams'}); give a video file")
    line = video.line
    size = re.search(r"[ ,](\d{1,5})x(\d{1,5})[ ,\]]", line + " ")
    if not size:
        raise VideoError(f"{path}: cannot read the video size from FFmpeg ({line}); the file may be damaged")
    w, h = int(size.group(1)), int(size.group(2))
    if rotation % 180 == 90:
        w, h = h, w
    fps = _parse_rate(line, "fps") or _parse_rate(line, "tbr")
    tbn = _parse_rate(line, "tbn")
    sar_m = re.search(r"SAR (\d+):(\d+)", line)
    sar = (int(sar_m.group(1)), int(sar_m.group(2))) if sar_m and int(sar_m.group(1)) > 0 else (1, 1)
    pix_m = re.search(r"\), (\w+(?:\([^)]*\))?)", line) or re.search(r", (\w+(?:\([^)]*\))?), \d+x\d+", line)
    pix = pix_m.group(1) if pix_m else ""
    dm = _DURATION_RE.search(text)
    duration = int(dm.group(1)) * 3600 + int(dm.group(2)) * 60 + float(dm.group(3)) if dm else 0.0
    frames = _count_packets(path, video.index)
    if frames == 0:
        raise VideoError(f"{path} has a video stream but no video frames; the file is empty or truncated")
    return VideoInfo(
        path=path,
        width=w,
        height=h,
        fps=fps,
        frames=frames,
        duration=duration,
        has_audio=any(s.kind == "audio" for s in streams),
        rotation=rotation,
        codec=video.codec,
        video_index=video.index,
        time_base=Fraction(1, int(tbn)) if tbn >= 1 and float(tbn).is_integer() else None,
        sar=sar,
        pix_fmt=pix.split("(")[0],
        color=_parse_color(pix),
        audio=tuple(s for s in streams if s.kind == "audio"),
        subtitles=tuple(s for s in streams if s.kind == "subtitle"),
    )


def _first_video(streams: Sequence[StreamInfo]) -> StreamInfo | None:
    for s in streams:
        if s.kind == "video" and "attached pic" not in s.line:
            return s
    return None


def _kinds(streams: Sequence[StreamInfo]) -> str:
    return ", ".join(sorted({s.kind for s in streams}))


def _count_packets(path: Path, index: int) -> int:
    """Video packets in the file, by demuxing with stream copy (no decoding: fast)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{index}", "-c", "copy",
           "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False, **_popen_kwargs())
    except subprocess.TimeoutExpired:  # pragma: no cover - huge file on a slow disk
        return 0
    found = re.findall(r"frame=\s*(\d+)", proc.stderr.decode("utf-8", errors="replace"))
    return int(found[-1]) if found else 0


# --------------------------------------------------------------------------------------------------
# times
# --------------------------------------------------------------------------------------------------


def parse_time(value: str | float | None, what: str = "time") -> float | None:
    """``"90"``, ``"1:30"``, ``"00:01:30.5"`` or a number -> seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        parts = text.split(":")
        try:
            if not 1 <= len(parts) <= 3 or any(p.strip() == "" for p in parts):
                raise ValueError(text)
            seconds = 0.0
            for p in parts:
                seconds = seconds * 60 + float(p)
            if len(parts) > 1 and any(float(p) >= 60 for p in parts[1:-1]):
                raise ValueError(text)
        except ValueError:
            raise UsageError(f"{what} {value!r} is not a time; give seconds (12.5) or HH:MM:SS(.ms)") from None
    if not np.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{what} must be a positive time, not {value!r}")
    return seconds


# --------------------------------------------------------------------------------------------------
# decoding: raw RGB frames with exact timestamps
# --------------------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One decoded frame: ``rgb`` (H, W, 3) uint8, ``time`` its presentation time in seconds (relative
    to ``start``), ``duration`` in seconds (0 when FFmpeg does not know it), ``index`` from 0."""

    index: int
    rgb: np.ndarray
    time: Fraction
    duration: Fraction


_SHOWINFO_RE = re.compile(r"\bn:\s*(\d+) pts:\s*(\S+) pts_time:\S+\s+duration:\s*(\S+)")
_TIMEBASE_RE = re.compile(r"config in time_base: (\d+)/(\d+)")


class _Decoder:
    """``ffmpeg -i src -> rgb24`` on a pipe, with per-frame timestamps parsed from showinfo on stderr."""

    def __init__(self, info: VideoInfo, start: float | None, duration: float | None) -> None:
        self.info = info
        self.width, self.height = info.width, info.height
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
        if start:
            cmd += ["-ss", f"{start:.6f}"]
        cmd += ["-i", str(info.path)]
        if duration is not None:
            cmd += ["-t", f"{duration:.6f}"]
        # scale: a fixed output size even if the stream changes resolution midway; it also does the
        # YUV -> RGB conversion (colour matrix from the frame's tags). showinfo last, so its frame
        # numbers are the frames we read (passthrough: no frame is dropped or duplicated after it).
        vf = f"scale={self.width}:{self.height}:flags=bicubic,showinfo"
        cmd += ["-map", f"0:{info.video_index}", "-an", "-sn", "-dn", "-vf", vf, "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_popen_kwargs()
        )
        self.time_base: Fraction | None = None
        self._stamps: dict[int, tuple[int | None, int | None]] = {}
        self._log: collections.deque[str] = collections.deque(maxlen=40)
        self._cond = threading.Condition()
        self._stderr_done = False
        self._thread = threading.Thread(target=self._read_stderr, name="imgxlate-ffmpeg-decode-log", daemon=True)
        self._thread.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if "Parsed_showinfo" in line:
                m = _SHOWINFO_RE.search(line)
                if m:
                    n = int(m.group(1))
                    pts = int(m.group(2)) if m.group(2).lstrip("-").isdigit() else None
                    dur = int(m.group(3)) if m.group(3).isdigit() else None
                    with self._cond:
                        self._stamps[n] = (pts, dur)
                        self._cond.notify_all()
                    continue
                tm = _TIMEBASE_RE.search(line)
                if tm and int(tm.group(2)) > 0:
                    self.time_base = Fraction(int(tm.group(1)), int(tm.group(2)))
                continue
            self._log.append(line)
        with self._cond:
            self._stderr_done = True
            self._cond.notify_all()

    def _stamp(self, n: int) -> tuple[int | None, int | None]:
        # showinfo logs frame n before the frame reaches the pipe, so this wait is short; the timeout
        # only guards against a log line FFmpeg never wrote.
        with self._cond:
            self._cond.wait_for(lambda: n in self._stamps or self._stderr_done, timeout=30)
            return self._stamps.pop(n, (None, None))

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        assert self.proc.stdout is not None
        size = self.width * self.height * 3
        fallback = Fraction(1) / Fraction(self.info.fps).limit_denominator(1001000) if self.info.fps > 0 else \
            Fraction(1, 25)
        last: Fraction | None = None
        n = 0
        while stop is None or not stop.is_set():
            buf = self.proc.stdout.read(size)
            if not buf:
                break
            if len(buf) < size:
                break  # a truncated last frame: FFmpeg stopped mid-frame (error reported below)
            pts, dur = self._stamp(n)
            tb = self.time_base
            t = Fraction(pts) * tb if (pts is not None and tb is not None) else None
            d = Fraction(dur) * tb if (dur is not None and tb is not None and dur > 0) else Fraction(0)
            if t is None:
                t = (last + (d or fallback)) if last is not None else Fraction(0)
            if last is not None and t <= last:
                # Repeated or backwards timestamps (broken files): keep the order, one tick apart.
                t = last + (tb if tb is not None else Fraction(1, 1000000))
            last = t
            rgb = np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)
            yield Frame(n, rgb, t, d)
            n += 1

    def finish(self) -> tuple[int, str]:
        """Wait for FFmpeg; return (returncode, tail of its log)."""
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        return rc, "\n".join(self._log)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                if pipe is not None:
                    pipe.close()


def read_frames(
    path: str | os.PathLike[str], *, start: float | str | None = None, duration: float | str | None = None
) -> Iterator[Frame]:
    """Decode a video (or a part of it) into RGB frames with their timestamps, upright."""
    info = probe_video(path)
    dec = _Decoder(info, parse_time(start, "start"), parse_time(duration, "duration"))
    try:
        yield from dec.frames()
        rc, log = dec.finish()
        if rc != 0:
            raise VideoError(f"{path}: FFmpeg could not decode the video ({_ffmpeg_reason(log)})")
    finally:
        dec.kill()


# --------------------------------------------------------------------------------------------------
# encoding: a minimal Matroska stream of raw RGB frames with exact timestamps
# --------------------------------------------------------------------------------------------------


def _ebml_size(n: int) -> bytes:
    """EBML variable-length size: length marker bit + value (all-ones values are reserved)."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML element too large: {n}")


def _el(ident: bytes, payload: bytes) -> bytes:
    return ident + _ebml_size(len(payload)) + payload


def _uint(v: int) -> bytes:
    return int(v).to_bytes(max(1, (int(v).bit_length() + 7) // 8), "big")


class _MatroskaRawWriter:
    """Writes RGB24 frames as a Matroska stream FFmpeg reads: V_UNCOMPRESSED with colour space 'RGB24'.

    TimestampScale is 1 ns, so any source time base survives to well below a tick; each frame is its
    own Cluster (absolute timestamp) holding one BlockGroup with the frame's duration when known.
    """

    def __init__(self, fh: IO[bytes], width: int, height: int) -> None:
        self.fh = fh
        header = _el(b"\x1a\x45\xdf\xa3", b"".join([
            _el(b"\x42\x86", _uint(1)),  # EBMLVersion
            _el(b"\x42\xf7", _uint(1)),  # EBMLReadVersion
            _el(b"\x42\xf2", _uint(4)),  # EBMLMaxIDLength
            _el(b"\x42\xf3", _uint(8)),  # EBMLMaxSizeLength
            _el(b"\x42\x82", b"matroska"),  # DocType
            _el(b"\x42\x87", _uint(4)),  # DocTypeVersion
            _el(b"\x42\x85", _uint(2)),  # DocTypeReadVersion
        ]))
        segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # Segment, unknown size
        info = _el(b"\x15\x49\xa9\x66", _el(b"\x2a\xd7\xb1", _uint(1)) + _el(b"\x4d\x80", b"imgxlate")
                   + _el(b"\x57\x41", b"imgxlate"))
        video = _el(b"\xe0", _el(b"\xb0", _uint(width)) + _el(b"\xba", _uint(height))
                    + _el(b"\x2e\xb5\x24", b"RGB\x18"))  # ColourSpace FourCC -> rgb24
        track = _el(b"\xae", _el(b"\xd7", _uint(1)) + _el(b"\x73\xc5", _uint(1)) + _el(b"\x83", _uint(1))
                    + _el(b"\x9c", _uint(0)) + _el(b"\x86", b"V_UNCOMPRESSED") + video)
        fh.write(header + segment + info + _el(b"\x16\x54\xae\x6b", track))

    def write(self, rgb: np.ndarray, t_ns: int, dur_ns: int) -> None:
        data = memoryview(np.ascontiguousarray(rgb)).cast("B")
        block_head = b"\x81\x00\x00\x00"  # track 1, relative timestamp 0, no flags
        block = b"\xa1" + _ebml_size(len(block_head) + len(data)) + block_head
        group_tail = _el(b"\x9b", _uint(dur_ns)) if dur_ns > 0 else b""
        group_len = len(block) + len(data) + len(group_tail)
        group = b"\xa0" + _ebml_size(group_len)
        ts = _el(b"\xe7", _uint(max(0, t_ns)))
        cluster = b"\x1f\x43\xb6\x75" + _ebml_size(len(ts) + len(group) + group_len)
        self.fh.write(cluster + ts + group + block)
        self.fh.write(data)  # the frame itself is written without another copy
        if group_tail:
            self.fh.write(group_tail)


def _pad_even(rgb: np.ndarray) -> np.ndarray:
    """Pad (H, W, 3) to even H and W by repeating the last row / column (yuv420p needs even sizes)."""
    h, w = rgb.shape[:2]
    ph, pw = h % 2, w % 2
    if not ph and not pw:
        return rgb
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")


_MATRIX_SCALE = {"bt709": "bt709", "smpte170m": "bt601", "bt470bg": "bt601", "bt601": "bt601"}


def _codec_args(codec: str, crf: int, preset: str) -> list[str]:
    if codec in ("libx264", "libx265"):
        return ["-crf", str(crf), "-preset", preset]
    if codec in ("libvpx-vp9", "libaom-av1"):
        return ["-crf", str(crf), "-b:v", "0"]
    if codec == "libsvtav1":
        return ["-crf", str(crf)]
    return []


def _check_encoder(codec: str) -> None:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-h", f"encoder={codec}"], capture_output=True,
                         check=False, **_popen_kwargs())
    text = (out.stdout + out.stderr).decode("utf-8", errors="replace")
    if "is not recognized" in text or f"Encoder {codec}" not in text:
        raise UsageError(
            f"FFmpeg has no encoder {codec!r}; use --codec libx264 (H.264), libx265 (HEVC) or libvpx-vp9 (VP9)"
        )


def _color_args(info: VideoInfo) -> tuple[str, list[str]]:
    """Colour conversion for the encoder: keep the source's matrix when tagged (and tag the output),
    else FFmpeg's untagged default, which players treat exactly like the untagged source."""
    _, matrix, prim, trc = info.color
    scale = _MATRIX_SCALE.get(matrix)
    if scale is None:
        return "", []
    vf = f"scale=out_color_matrix={scale}:out_range=tv"
    args = ["-colorspace", matrix, "-color_range", "tv"]
    if prim:
        args += ["-color_primaries", prim]
    if trc:
        args += ["-color_trc", trc]
    return vf, args


def _timescale(tb: Fraction | None) -> int:
    """MP4 track timescale: the source's time base denominator (frame times stay exact ticks)."""
    if tb is not None and tb.numerator == 1 and 1000 <= tb.denominator <= 10_000_000:
        return tb.denominator
    return 90000


class _Encoder:
    """Raw frames in (Matroska on stdin) -> encoded video-only file."""

    def __init__(self, out: Path, info: VideoInfo, width: int, height: int, tb: Fraction | None, codec: str,
                 crf: int, preset: str) -> None:
        self.out = out
        color_vf, color_args = _color_args(info)
        filters = [f for f in (color_vf, "format=yuv420p", f"setsar={info.sar[0]}/{info.sar[1]}") if f]
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
               "-f", "matroska", "-i", "pipe:0", "-map", "0:v:0", "-an", "-sn", "-dn",
               "-fps_mode", "passthrough"]
        if tb is not None:
            cmd += ["-enc_time_base", f"{tb.numerator}/{tb.denominator}"]
        cmd += ["-vf", ",".join(filters), "-c:v", codec, *_codec_args(codec, crf, preset),
                "-pix_fmt", "yuv420p", *color_args, "-video_track_timescale", str(_timescale(tb)),
                "-f", "mp4", "-y", str(out)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     **_popen_kwargs())
        self._log: collections.deque[str] = collections.deque(maxlen=40)
        self._thread = threading.Thread(target=self._read_stderr, name="imgxlate-ffmpeg-encode-log", daemon=True)
        self._thread.start()
        assert self.proc.stdin is not None
        try:
            self.mkv = _MatroskaRawWriter(self.proc.stdin, width, height)
        except OSError as exc:  # the encoder exited at once (bad option for this encoder)
            self.proc.wait()
            self._thread.join(timeout=5)
            raise VideoError(f"the video encoder did not start ({_ffmpeg_reason(self.log())})") from exc

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._log.append(raw.decode("utf-8", errors="replace").rstrip())

    def log(self) -> str:
        return "\n".join(self._log)

    def close(self) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        return rc

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stderr):
            with contextlib.suppress(Exception):
                if pipe is not None:
                    pipe.close()


def _mux(video: Path, t0: Fraction, info: VideoInfo, start: float | None, duration: float | None, dst: Path,
         tb: Fraction | None) -> tuple[str, list[str]]:
    """Mux the encoded video with the source's audio and subtitles into ``dst``.

    Tries stream copy first; if the container refuses an audio codec, re-encodes audio (AAC, or Opus for
    WebM); if it still fails, drops the subtitles. Returns (what happened to the audio, warnings).
    """
    suffix = dst.suffix.lower()
    warnings: list[str] = []
    subs: list[tuple[StreamInfo, str]] = []
    for s in info.subtitles:
        if suffix in _MP4_LIKE:
            if s.codec in _TEXT_SUBS:
                subs.append((s, "mov_text"))
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}, a bitmap format) cannot go into "
                                f"{suffix}; write .mkv to keep it")
        elif suffix == ".webm":
            if s.codec == "webvtt":
                subs.append((s, "copy"))
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}) cannot go into WebM; write .mkv to keep it")
        else:
            subs.append((s, "copy"))
    audio_encoder = "libopus" if suffix == ".webm" else "aac"
    attempts = [("copy", True), (audio_encoder, True), (audio_encoder, False)] if info.audio else [("copy", True)]
    if not subs:
        attempts = [a for a in attempts if a[1]]
    log = ""
    for audio_codec, with_subs in attempts:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
               "-itsoffset", f"{float(t0):.9f}", "-i", str(video)]
        if start:
            cmd += ["-ss", f"{start:.6f}"]
        if duration is not None:
            cmd += ["-t", f"{duration:.6f}"]
        cmd += ["-i", str(info.path), "-map", "0:v:0"]
        for a in info.audio:
            cmd += ["-map", f"1:{a.index}"]
        if with_subs:
            for s, _ in subs:
                cmd += ["-map", f"1:{s.index}"]
        cmd += ["-map_metadata", "1", "-c:v", "copy", "-c:a", audio_codec]
        if audio_codec == "aac":
            cmd += ["-b:a", "192k"]
        if with_subs:
            for k, (_, scodec) in enumerate(subs):
                cmd += [f"-c:s:{k}", scodec]
        if suffix in _MP4_LIKE:
            cmd += ["-movflags", "+faststart", "-video_track_timescale", str(_timescale(tb))]
        cmd += ["-y", str(dst)]
        proc = subprocess.run(cmd, capture_output=True, check=False, **_popen_kwargs())
        if proc.returncode == 0:
            if with_subs is False and subs:
                warnings.append("the subtitle streams could not be written into this container and were left out")
            if not info.audio:
                return "none", warnings
            what = "copied" if audio_codec == "copy" else f"re-encoded ({audio_encoder})"
            if audio_codec != "copy":
                codecs = ", ".join(a.codec for a in info.audio)
                warnings.append(f"audio ({codecs}) cannot be copied into {suffix}; re-encoded as {audio_encoder}")
            return what, warnings
        log = proc.stderr.decode("utf-8", errors="replace")
    raise VideoError(f"FFmpeg could not write {dst.name} ({_ffmpeg_reason(log)})")


# --------------------------------------------------------------------------------------------------
# temporal stability
# --------------------------------------------------------------------------------------------------


class StatsSmoother:
    """A ``stats_hook`` for :class:`imgxlate.exact.ExactTiler`: temporally smoothed InstanceNorm stats.

    Called as ``hook(layer, mean, var)`` for every InstanceNormalization layer of one frame in graph
    order (mean, var: float64 (C,)); returns the statistics to normalise with::

        M_l <- m * M_l + (1 - m) * mean_l       (exponential moving average over frames)
        V_l <- m * V_l + (1 - m) * var_l

    ``layer == 0`` starts a new frame. Scene cuts: at layer 0 (the stem conv's output, which follows
    the input image closely) the shift of this frame's channel means from the running means, in units
    of the running standard deviation, ``sqrt(mean_c((mean - M)^2 / V))``, is compared to
    ``cut_threshold``; above it the averages restart from this frame (no blending across a cut).
    ``cuts`` counts them.
    """

    def __init__(self, momentum: float = DEFAULT_MOMENTUM, cut_threshold: float = DEFAULT_CUT_THRESHOLD,
                 eps: float = 1e-5) -> None:
        if not 0.0 <= momentum < 1.0:
            raise UsageError(f"momentum must be in [0, 1), not {momentum}")
        self.momentum = float(momentum)
        self.cut_threshold = float(cut_threshold)
        self.eps = float(eps)
        self.state: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cuts = 0
        self.frames = 0
        self.last_shift = 0.0
        self._fresh = True

    def reset(self) -> None:
        self.state.clear()
        self._fresh = True

    def shift(self, mean: np.ndarray, var: np.ndarray) -> float:
        """Distance of a frame's layer-0 statistics from the running ones (the cut detector)."""
        if 0 not in self.state:
            return float("inf")
        m0, v0 = self.state[0]
        return float(np.sqrt(np.mean((mean - m0) ** 2 / (v0 + self.eps))))

    def __call__(self, layer: int, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        if layer == 0:
            self.frames += 1
            self.last_shift = self.shift(mean, var)
            self._fresh = not np.isfinite(self.last_shift) or self.last_shift > self.cut_threshold
            if self._fresh and self.state:
                self.cuts += 1
            if self._fresh:
                self.state.clear()
        prev = self.state.get(layer)
        if prev is None or prev[0].shape != mean.shape:
            self.state[layer] = (mean, var)
            return mean, var
        m = self.momentum
        new = (m * prev[0] + (1 - m) * mean, m * prev[1] + (1 - m) * var)
        self.state[layer] = new
        return new


def _model_ranges(translator: Any) -> tuple[tuple[float, float], tuple[float, float], int]:
    meta = getattr(translator, "metadata", None)
    inr = tuple(getattr(meta, "input_range", (-1.0, 1.0)))
    outr = tuple(getattr(meta, "output_range", (-1.0, 1.0)))
    mult = int(getattr(meta, "size_multiple", 4) or 4)
    return (float(inr[0]), float(inr[1])), (float(outr[0]), float(outr[1])), mult


class _StableRunner:
    """Runs frames one by one through the ExactTiler with a StatsSmoother (or the identity hook)."""

    def __init__(self, translator: Any, smoother: StatsSmoother | None) -> None:
        from imgxlate.engine import session_factory
        from imgxlate.exact import ExactTiler

        engine = translator.engine
        path = getattr(translator, "model_path", None) or engine.model_path
        self.tiler = ExactTiler(path, session_factory(engine.device, engine.threads))
        self.smoother = smoother
        self.in_range, self.out_range, _ = _model_ranges(translator)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        lo, hi = self.in_range
        # (H, W, 3) uint8 -> (3, H, W) float32 in the model's input range; the tiler pads to its size
        # multiple (reflect) and crops back.
        x = rgb.astype(np.float32).transpose(2, 0, 1) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        y = self.tiler.run(np.ascontiguousarray(x), tile=0, stats_hook=self.smoother)
        return _to_uint8(np.asarray(y), self.out_range)


def _to_uint8(chw: np.ndarray, out_range: tuple[float, float]) -> np.ndarray:
    lo, hi = out_range
    u = (chw.transpose(1, 2, 0).astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(u), 0, 255).astype(np.uint8)


def flicker_ratio(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """Temporal flicker of a translation: mean |out[t] - out[t-1]| / mean |in[t] - in[t-1]|.

    ``inputs``/``outputs``: equal-length sequences of (H, W, C) frames (any dtype, same scale). 1.0
    means the output changes from frame to frame as much as the input does; per-frame CycleGAN output
    is typically well above 1 (whole-frame colour pumping). Consumed one frame at a time.
    """
    num = den = 0.0
    prev_in: np.ndarray | None = None
    prev_out: np.ndarray | None = None
    n = 0
    for a, b in zip(inputs, outputs, strict=True):
        a64 = np.asarray(a, dtype=np.float64)
        b64 = np.asarray(b, dtype=np.float64)
        if prev_in is not None and prev_out is not None:
            den += float(np.abs(a64 - prev_in).mean())
            num += float(np.abs(b64 - prev_out).mean())
        prev_in, prev_out = a64, b64
        n += 1
    if n < 2:
        raise UsageError("flicker_ratio needs at least two frames")
    if den == 0.0:
        return float("inf") if num > 0 else 1.0
    return num / den


def static_flicker(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], tol: float = 2.0) -> float:
    """Mean |out[t] - out[t-1]| over the pixels whose input did not change (every channel within ``tol``).

    There the output should not change at all; what it does change is the whole-frame colour pumping
    that per-frame InstanceNorm statistics cause (motion elsewhere in the frame moves them). 0-255 scale.
    """
    total, count = 0.0, 0
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for a, b in zip(inputs, outputs, strict=True):
        a16, b16 = np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.float64)
        if prev is not None:
            still = (np.abs(a16 - prev[0]) <= tol).all(axis=-1)
            total += float(np.abs(b16 - prev[1])[still].sum())
            count += int(still.sum()) * b16.shape[-1]
        prev = (a16, b16)
    return total / count if count else 0.0


def _mean_abs_diff(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> float:
    total, n = 0.0, 0
    for x, y in zip(a, b, strict=True):
        total += float(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)).mean())
        n += 1
    return total / max(n, 1)


def measure_stability(
    src: str | os.PathLike[str],
    translator: Any,
    *,
    start: float | str | None = None,
    duration: float | str | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
) -> dict[str, float]:
    """Flicker with and without stabilisation on (a part of) a real video, for docs and benchmarks.

    Returns ``flicker_per_frame`` and ``flicker_stabilized`` (:func:`flicker_ratio` of each),
    ``static_flicker_*`` (:func:`static_flicker`), ``faithful_mad``
    (mean abs difference, 0-255 scale, of stabilised vs per-frame output: how far stabilising moves the
    picture), ``cuts`` (scene cuts the smoother detected) and ``frames``.
    """
    frames = [f.rgb.copy() for f in read_frames(src, start=start, duration=duration)]
    if len(frames) < 2:
        raise VideoError(f"{src}: need at least two frames to measure flicker, got {len(frames)}")
    plain = _StableRunner(translator, None)
    smoother = StatsSmoother(momentum, cut_threshold)
    stable = _StableRunner(translator, smoother)
    per_frame = [plain(f) for f in frames]
    smoothed = [stable(f) for f in frames]
    return {
        "frames": float(len(frames)),
        "flicker_per_frame": flicker_ratio(frames, per_frame),
        "flicker_stabilized": flicker_ratio(frames, smoothed),
        "static_flicker_per_frame": static_flicker(frames, per_frame),
        "static_flicker_stabilized": static_flicker(frames, smoothed),
        "faithful_mad": _mean_abs_diff(per_frame, smoothed),
        "cuts": float(smoother.cuts),
    }


# --------------------------------------------------------------------------------------------------
# the conversion
# --------------------------------------------------------------------------------------------------


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

    ``translator`` is a :class:`imgxlate.pipeline.Translator` (``translate_batch`` for the per-frame
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
        except (ImportError, AttributeError, InvalidModelError) as exc:
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
