"""Media input in-process with PyAV (FFmpeg's libraries): open and check the input, and decode it into
upright RGB frames (:class:`Decoder`); what the other video modules share (the containers written,
PyAV itself). Encoding is in :mod:`.encoder`, the final file in :mod:`.mux`.

Nothing here starts a process. Timestamps stay exact integers in the source's time base from the
decoder to the muxer, so constant and variable frame rates are kept frame for frame.
"""

from __future__ import annotations

import contextlib
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import VideoError

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.video.probe import VideoInfo

# Containers we write, and the FFmpeg muxer of each.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
OUTPUT_SUFFIXES = tuple(OUTPUT_FORMATS)
_MP4_LIKE = (".mp4", ".m4v", ".mov")
_WEBM_VIDEO = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e")
_TEXT_SUBS = ("subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text")
# Pixel formats whose chroma is subsampled horizontally / vertically (need even width / height).
_SUBSAMPLED = {"yuv420p": (True, True), "yuvj420p": (True, True), "nv12": (True, True), "yuv422p": (True, False),
               "yuv420p10le": (True, True), "yuv422p10le": (True, False)}
# Segment containers, first that takes the codec: MP4/MOV keep the time base exactly and store dts (B-frames
# join cleanly); Matroska (millisecond clock) only for codecs neither takes.
SEGMENT_FORMATS = ("mp4", "mov", "matroska")


@dataclass
class Frame:
    """One decoded frame: ``rgb`` (H, W, 3) uint8 upright, ``time`` its presentation time in seconds
    from the start of the cut, ``duration`` in seconds (0 when unknown), ``index`` from 0, ``pts`` its
    time in ``time_base`` ticks from the start of the cut (what the encoder gets)."""

    index: int
    rgb: np.ndarray
    time: Fraction
    duration: Fraction
    pts: int = 0


def av_module() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - a dependency
        raise VideoError("PyAV is not installed; `pip install av`") from exc
    return av


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def check_input_file(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it (a FIFO would block, a device
    never ends)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VideoError(f"{path} does not exist; check the path") from None
    except OSError as exc:
        raise VideoError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from exc
    if stat.S_ISDIR(st.st_mode):
        raise VideoError(f"{path} is a folder; give a video file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise VideoError(f"{path} is {kind}; only regular video files are read")


def open_input(path: Path) -> Any:
    """``av.open`` for reading, with our error messages."""
    av = av_module()
    check_input_file(path)
    try:
        return av.open(str(path), "r", timeout=(60.0, 60.0))
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoError(
            f"{path} is not a video FFmpeg can read ({_reason(exc)}); check that the file is a complete video "
            "(a partial download or a renamed file cannot be read)"
        ) from exc


# --------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------


def upright(rgb: np.ndarray, orientation: str) -> np.ndarray:
    """A decoded (H, W, 3) frame as it is shown: ``orientation`` (VideoInfo.orientation, from the
    display matrix: rotation and mirroring, as FFmpeg's autorotation shows it)."""
    if orientation == "id":
        return rgb
    out = {
        "fx": lambda a: a[:, ::-1], "fy": lambda a: a[::-1], "r90": lambda a: np.rot90(a, 1),
        "r180": lambda a: np.rot90(a, 2), "r270": lambda a: np.rot90(a, 3), "T": lambda a: a.transpose(1, 0, 2),
        "aT": lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    }[orientation](rgb)
    return np.ascontiguousarray(out)


class Decoder:
    """Decodes the video stream of ``info`` into upright RGB :class:`Frame`s, from ``start`` for
    ``duration`` seconds (both optional), with timestamps relative to the start of the cut.

    Damaged packets are skipped as FFmpeg skips them (``bad_packets``); when the file breaks off after
    at least one frame the iteration ends with ``broken`` set. ``error`` says what happened in either
    case; the caller decides whether that is a warning (truncated file) or a failure.
    """

    def __init__(self, info: VideoInfo, start: float | None = None, duration: float | None = None) -> None:
        self.info = info
        self.container = open_input(info.path)
        self.stream = self.container.streams[info.video_index]
        self.stream.thread_type = "AUTO"
        self.tb = self.stream.time_base or Fraction(1, 90000)
        origin = Fraction(self.container.start_time or 0, 1_000_000)
        self.cut_start = origin + Fraction(start or 0).limit_denominator(1_000_000)
        self.cut_end = self.cut_start + Fraction(duration).limit_denominator(1_000_000) \
            if duration is not None else None
        self.error: str = ""
        self.decoded = 0
        self.first_time: Fraction | None = None  # the kept frames' first and last times (stream time)
        self.last_time: Fraction | None = None
        self.longest_gap = Fraction(0)  # the longest time between two kept frames (a pause, or a hole?)
        self.gap_at: Fraction | None = None  # where it starts (stream time)
        self.bad_packets = 0
        self.broken = False  # the file broke off (a demuxer error) after some frames
        self.cut_reached = False  # a frame at or after the cut's end was decoded: the video goes on past it
        self._lock = threading.Lock()
        if start:
            self._seek_before(self.cut_start)

    def _seek_before(self, cut: Fraction) -> None:
        """Seek so that decoding starts at or before ``cut``. A seek "backward" lands on a key frame
        before the time where the container has an index (MP4, MKV); in an MPEG-TS it can land after it
        (the packet found is not a key frame, and the decoder drops everything up to the next one), so
        the first frame is checked and the seek is made from further back (5 s, 30 s, then the start)."""
        for back in (0, 5, 30):
            at = max(Fraction(0), cut - back)
            try:
                self.container.seek(int(at / self.tb), stream=self.stream, backward=True)
                first = next(iter(self._decoded()), None)
            except Exception:  # noqa: BLE001 - a file without an index, or broken there: try further back
                first = None
            t = Fraction(first.pts) * (first.time_base or self.tb) if first is not None and first.pts is not None \
                else None
            if t is not None and t <= cut + self.tb / 2:
                with contextlib.suppress(Exception):
                    self.container.seek(int(at / self.tb), stream=self.stream, backward=True)
                    return
            if at == 0:
                break
        # from the start: reopened, so that no half-flushed decoder state of the tries is left
        self.container.close()
        self.container = open_input(self.info.path)
        self.stream = self.container.streams[self.info.video_index]
        self.stream.thread_type = "AUTO"

    def frames(self, stop: threading.Event | None = None, skip: int = 0) -> Iterator[Frame]:
        """The frames in order; the first ``skip`` kept frames are counted but not converted to RGB.
        With a cut, the frame on screen at its start (the last one before it, when the next one comes
        later: a slide, a paused screen recording, a GIF's long frame) is the first, at time 0."""
        av = av_module()
        fallback = Fraction(1) / Fraction(self.info.fps).limit_denominator(1001000) if self.info.fps > 0 \
            else Fraction(1, 25)
        last: Fraction | None = None
        last_pts = -1
        n = 0
        held: tuple[Any, Fraction] | None = None  # the last frame before the cut, and its time left at the cut

        def keep(frame: Any, t: Fraction, d: Fraction) -> Frame:
            nonlocal last, last_pts, n
            if last is not None and t <= last:
                t = last + tb  # repeated or backwards timestamps (broken files): keep order, one tick apart
            last = t
            if self.first_time is None:
                self.first_time = t
            elif self.last_time is not None and t - self.last_time > self.longest_gap:
                self.longest_gap, self.gap_at = t - self.last_time, self.last_time
            self.last_time = t + d
            rel = max(Fraction(0), t - self.cut_start)
            if n < skip:
                rgb = np.zeros((0, 0, 3), np.uint8)
            else:
                rgb = upright(frame.to_ndarray(format="rgb24"), self.info.orientation)
                if rgb.shape[:2] != (self.info.height, self.info.width):
                    rgb = _resize(rgb, self.info.width, self.info.height)  # the stream changed size midway
            # In the output's time base, strictly increasing: rounding a cut between two frames could
            # give two frames one time (25 fps, a cut at 1.5 s: 0, 0, 2, 2, ...), which encoders refuse.
            last_pts = max(round(rel / self.info.tb), last_pts + 1)
            n += 1
            return Frame(n - 1, rgb, rel, d, pts=last_pts)

        it = self._decoded()
        tb = self.tb
        while stop is None or not stop.is_set():
            try:
                with self._lock:
                    frame = next(it)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                if n == 0 and self.decoded == 0:
                    raise VideoError(f"{self.info.path}: FFmpeg could not decode the video ({_reason(exc)}); "
                                     "the file may be damaged") from exc
                self.error = _reason(exc)
                self.broken = True
                break
            self.decoded += 1
            tb = frame.time_base or self.tb
            t = Fraction(frame.pts) * tb if frame.pts is not None else None
            d = Fraction(frame.duration or 0) * tb
            if t is None:
                t = (last + (d or fallback)) if last is not None else self.cut_start
            if t < self.cut_start - tb / 2:
                held = (frame, max(Fraction(0), t + d - self.cut_start))  # before the cut (we seek to the key
                continue  # frame before it)
            if held is not None:
                if t > self.cut_start + fallback:  # the held frame is on screen at the cut, for more than a
                    until = min(t, self.cut_end) if self.cut_end is not None else t  # frame (between two: not)
                    yield from self._held(keep, held, until, fallback)
                held = None
            if self.cut_end is not None and t >= self.cut_end:
                self.cut_reached = True
                break
            yield keep(frame, t, d)
        if held is not None and held[1] > 0 and n == 0 and not self.broken:  # the last frame, still on screen
            end = self.cut_end if self.cut_end is not None else self.cut_start + held[1]
            yield from self._held(keep, held, end, fallback)

    # Copies of a held frame at the start of a cut, a frame apart: an encoder with B-frames delays its
    # decode times by the span of its first few frames, and a first frame seconds before the second
    # made that delay seconds long (a 2.5 s cut of a slide recording: a 4.03 s MP4 in players' eyes).
    _HELD_COPIES = 3

    def _held(self, keep: Callable[[Any, Fraction, Fraction], Frame], held: tuple[Any, Fraction],
              until: Fraction, step: Fraction) -> Iterator[Frame]:
        """The frame on screen at the cut, from the cut on, until the next frame at ``until``."""
        frame = held[0]
        times = [self.cut_start + k * step for k in range(1 + self._HELD_COPIES)]
        times = [t for t in times if t == self.cut_start or t + step / 2 < until]
        for i, t in enumerate(times):
            # the last copy lasts until the next frame (or the cut's end): its own packet duration is
            # one frame's, which made a cut inside the held frame a much shorter video
            yield keep(frame, t, (times[i + 1] if i + 1 < len(times) else until) - t)

    def _decoded(self) -> Iterator[Any]:
        """Frames in order; a packet the decoder rejects is skipped (and counted in ``bad_packets``) as
        FFmpeg does, a demuxer error (the file breaks off) ends the iteration by raising."""
        av = av_module()
        for packet in self.container.demux(self.stream):
            if packet.size == 0 and packet.pts is not None:
                continue  # an empty packet (Theora's "repeat the last frame"): nothing to decode
            try:
                frames = packet.decode()
            except (av.error.InvalidDataError, av.error.PatchWelcomeError) as exc:
                self.bad_packets += 1
                self.error = f"{self.bad_packets} damaged packet(s) skipped: {_reason(exc)}"
                continue
            yield from frames

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self.container.close()


def _resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
