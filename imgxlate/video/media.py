"""Media I/O in-process with PyAV (FFmpeg's libraries): open and decode the input, encode video
segments, and mux the final file (video segments + the source's audio and subtitles).

Nothing here starts a process. Timestamps stay exact integers in the source's time base from the
decoder to the muxer, so constant and variable frame rates are kept frame for frame.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import UsageError, VideoError

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
        self.longest_gap = Fraction(0)  # the longest time between two kept frames (a hole in the file?)
        self.bad_packets = 0
        self.broken = False  # the file broke off (a demuxer error) after some frames
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
        """The frames in order; the first ``skip`` kept frames are counted but not converted to RGB."""
        av = av_module()
        fallback = Fraction(1) / Fraction(self.info.fps).limit_denominator(1001000) if self.info.fps > 0 \
            else Fraction(1, 25)
        last: Fraction | None = None
        last_pts = -1
        n = 0
        it = self._decoded()
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
                continue  # before the cut (we seek to the key frame before it)
            if self.cut_end is not None and t >= self.cut_end:
                break
            if last is not None and t <= last:
                t = last + tb  # repeated or backwards timestamps (broken files): keep order, one tick apart
            last = t
            if self.first_time is None:
                self.first_time = t
            elif self.last_time is not None:
                self.longest_gap = max(self.longest_gap, t - self.last_time)
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
            yield Frame(n, rgb, rel, d, pts=last_pts)
            n += 1

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


# --------------------------------------------------------------------------------------------------
# encoding: one segment of video frames
# --------------------------------------------------------------------------------------------------


# The quality scales of the encoders that take --crf (x264 and x265: 0-51; VP9 and AV1: 0-63).
_CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51}
# x264's and x265's speed presets.
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def check_encoder(codec: str, suffix: str, pix_fmt: str, crf: int = 23, preset: str = "ultrafast") -> None:
    """Refuse an encoder FFmpeg does not have (or one that cannot open here, e.g. NVENC without its
    GPU driver), one the container cannot hold, or settings it does not take (``crf``, ``preset``),
    before any work is done: it is opened once with them."""
    av = av_module()
    if codec in _CRF_MAX and not 0 <= crf <= _CRF_MAX[codec]:
        raise UsageError(f"--crf {crf}: {codec} takes 0 to {_CRF_MAX[codec]} (lower is better; 18 looks transparent)")
    if codec in ("libx264", "libx264rgb", "libx265") and preset not in X26X_PRESETS:
        raise UsageError(f"--preset {preset!r} is not one of {codec}'s: {', '.join(X26X_PRESETS)}")
    if suffix == ".webm" and codec not in _WEBM_VIDEO:
        raise UsageError(f"WebM holds VP8/VP9/AV1 video only, not {codec}; use --codec libvpx-vp9 or a .mp4 name")
    try:
        c = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError, KeyError) as exc:
        raise UsageError(f"FFmpeg (PyAV) has no encoder {codec!r}; use --codec libx264 (H.264), libx265 (HEVC) "
                         "or libvpx-vp9 (VP9)") from exc
    if c.type != "video":
        raise UsageError(f"{codec} is a {c.type} encoder; give a video encoder such as libx264")
    formats = {f.name for f in (c.video_formats or ())}
    if formats and pix_fmt not in formats:
        raise UsageError(f"encoder {codec} cannot write pixel format {pix_fmt}; it takes "
                         f"{', '.join(sorted(formats)[:8])}")
    # Make a tiny video with it, the way a conversion does (a segment, then joined into the target
    # container): hardware encoders fail here when the device or driver is missing, and encoders
    # that open but do not encode (VP8 here: "Not yet implemented") or whose stream the join cannot
    # take (AV1 without an AV1 decoder in this FFmpeg) fail here instead of after every frame.
    import tempfile

    try:
        tmp = tempfile.TemporaryDirectory(prefix="imgxlate-codec-")
    except OSError:  # no room for a trial (a full temp folder): the run itself says what is wrong
        return
    try:
        with tmp:
            _trial_video(av, codec, suffix, pix_fmt, crf, preset, Path(tmp.name))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise UsageError(f"the encoder {codec} cannot make a {suffix} video here ({_reason(exc)}); use --codec "
                         "libx264 (or libvpx-vp9 for .webm)") from exc


def _trial_video(av: Any, codec: str, suffix: str, pix_fmt: str, crf: int, preset: str, tmp: Path) -> None:
    """Three 64x64 frames encoded into a segment and joined into a ``suffix`` file, in folder ``tmp``."""
    seg_path, out_path = tmp / "trial.seg", tmp / f"trial{suffix}"
    seg = _open_segment(av, seg_path, av.codec.Codec(codec, "w").canonical_name)
    try:
        st = seg.add_stream(codec, rate=25)
        st.width, st.height, st.pix_fmt = 64, 64, pix_fmt
        st.options = _codec_options(codec, crf, preset)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 60 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            seg.mux(st.encode(frame))
        seg.mux(st.encode(None))
    finally:
        seg.close()
    src = av.open(str(seg_path))
    out = av.open(str(out_path), "w", format=OUTPUT_FORMATS.get(suffix, "mp4"))
    try:
        vout = out.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is None:
                continue
            pkt.stream = vout
            out.mux(pkt)
    finally:
        out.close()
        src.close()


def output_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The encoded size: the input size, less one row/column where the pixel format subsamples
    chroma on an odd axis (yuv420p cannot hold odd sizes)."""
    sx, sy = _SUBSAMPLED.get(pix_fmt, (False, False))
    return width - (width % 2 if sx else 0), height - (height % 2 if sy else 0)


def _codec_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    if codec in ("libx264", "libx264rgb"):
        return {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
    if codec in ("libvpx-vp9", "libvpx", "libaom-av1"):
        return {"crf": str(crf), "b": "0"}
    if codec == "libsvtav1":
        return {"crf": str(crf)}
    return {}


# (matrix, primaries, transfer) codes as FFmpeg numbers them (AVColorSpace etc.); 2 = unspecified.
_YUV_MATRIX = {1: "ITU709", 5: "ITU601", 6: "SMPTE170M", 9: "BT2020"}


def _open_segment(av: Any, path: Path, codec_name: str) -> Any:
    for fmt in SEGMENT_FORMATS:
        out = av.open(str(path), "w", format=fmt)
        if codec_name in out.supported_codecs and not (fmt == "mov" and codec_name in ("vp9", "av1")):
            return out
        out.close()
    return av.open(str(path), "w", format=SEGMENT_FORMATS[-1])


def _write_reason(exc: BaseException) -> str:
    import errno

    if getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full; free some space and run the same command again to continue"
    return _reason(exc)


class SegmentWriter:
    """Encodes RGB frames into one video-only segment file (NUT: exact timestamps); the first frame
    is a key frame, so segments join without re-encoding."""

    def __init__(self, path: Path, info: VideoInfo, codec: str, crf: int, preset: str, pix_fmt: str) -> None:
        av = av_module()
        self.path = path
        self.width, self.height = output_size(info.width, info.height, pix_fmt)
        self.pix_fmt = pix_fmt
        self.tb = info.tb
        self.container: Any = None
        try:
            self.container = _open_segment(av, path, av.codec.Codec(codec, "w").canonical_name)
            st = self.container.add_stream(codec, rate=info.rate)
            st.width, st.height, st.pix_fmt = self.width, self.height, pix_fmt
            st.time_base = self.tb
            st.codec_context.time_base = self.tb
            if info.sar != (1, 1):
                st.codec_context.sample_aspect_ratio = Fraction(*info.sar)
            _rng, matrix, prim, trc = info.color_codes
            self._matrix = _YUV_MATRIX.get(matrix) if pix_fmt.startswith("yuv") else None
            if self._matrix is not None:
                st.codec_context.colorspace = matrix
                st.codec_context.color_range = 1  # tv
                if prim:
                    st.codec_context.color_primaries = prim
                if trc:
                    st.codec_context.color_trc = trc
            st.options = _codec_options(codec, crf, preset)
            self.stream = st
        except (av.error.FFmpegError, ValueError) as exc:
            self._abandon()
            raise VideoError(f"the video encoder {codec} did not start ({_reason(exc)})") from exc
        self.frames = 0
        self.end = Fraction(0)

    def write(self, rgb: np.ndarray, pts: int, duration: Fraction) -> None:
        av = av_module()
        rgb = rgb[: self.height, : self.width]  # odd axis of a subsampled format: drop the last row/column
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self.pix_fmt.startswith("yuv"):
            # Bicubic chroma filter, as FFmpeg's scale filter uses (the default bilinear loses ~1 level more).
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self._matrix, dst_color_range="MPEG",
                                   interpolation="BICUBIC")
        frame.pts = pts
        frame.time_base = self.tb
        try:
            for pkt in self.stream.encode(frame):
                self.container.mux(pkt)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"the video encoder failed ({_write_reason(exc)})") from exc
        self.frames += 1
        self.end = pts * self.tb + duration

    def close(self) -> None:
        av = av_module()
        try:
            for pkt in self.stream.encode(None):
                self.container.mux(pkt)
            self.container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self._abandon()
            raise VideoError(f"the video encoder failed at the end ({_write_reason(exc)})") from exc

    def _abandon(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()


# --------------------------------------------------------------------------------------------------
# the final file: segments + the source's audio and subtitles
# --------------------------------------------------------------------------------------------------


def _packets(container: Any, streams: Sequence[Any]) -> Iterator[Any]:
    for pkt in container.demux(*streams):
        if pkt.size == 0 and pkt.pts is None and pkt.dts is None:
            continue  # the flush packet the demuxer yields at the end
        yield pkt


def _sub_to_mov_text(text: str) -> bytes:
    """A text subtitle packet (SubRip text, or an ASS event line) as a mov_text (3GPP timed text) sample."""
    if text.count(",") >= 8 and not text.startswith("Dialogue"):
        text = text.split(",", 8)[8]  # an ASS event in Matroska: ReadOrder,Layer,Style,...,Text
    text = re.sub(r"\{[^}]*\}", "", text).replace("\\N", "\n").replace("\\n", "\n")
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)  # SubRip's <i>, <b>, <font ...>
    data = text.strip("\r\n").encode("utf-8")[:65535]
    return len(data).to_bytes(2, "big") + data




@dataclass
class MuxReport:
    audio: str = "none"  # "copied" | "re-encoded (aac)" | "none"
    warnings: tuple[str, ...] = ()


def mux_final(segments: Sequence[Path], info: VideoInfo, start: float | None, duration: float | None,
              dst: Path, suffix: str, final: Path | None = None) -> MuxReport:
    """Join the video ``segments`` (packet copy, no re-encoding) with the source's audio and subtitles
    cut to ``start``/``duration`` into ``dst`` (a temp path; the container is chosen by ``suffix``;
    ``final``: the target it becomes, named in errors). A full disk is :class:`DiskFullError`.

    Audio is copied when the container takes its codec, else re-encoded (AAC; Opus for WebM) with a
    warning; text subtitles become mov_text in MP4/MOV and are copied into MKV; bitmap subtitles are kept
    in MKV only.
    """
    warnings: list[str] = []
    subs: list[tuple[int, str]] = []  # (stream index, "copy" | "mov_text")
    for s in info.subtitles:
        if suffix in _MP4_LIKE:
            if s.codec in _TEXT_SUBS:
                subs.append((s.index, "mov_text"))
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}, a bitmap format) cannot go into {suffix}; "
                                "write .mkv to keep it")
        elif suffix == ".webm":
            if s.codec == "webvtt":
                subs.append((s.index, "copy"))
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}) cannot go into WebM; write .mkv to keep it")
        else:
            subs.append((s.index, "copy"))
    audio_encoder = "libopus" if suffix == ".webm" else "aac"
    attempts: list[tuple[bool, bool]] = [(False, True), (True, True), (True, False)]  # (transcode audio, subs)
    if not info.audio:
        attempts = [(False, True), (False, False)]
    if not subs:
        attempts = [a for a in attempts if a[1]]
    last: BaseException | None = None
    for transcode, with_subs in attempts:
        try:
            _mux_once(segments, info, start, duration, dst, suffix, transcode, audio_encoder,
                      subs if with_subs else [])
        except (VideoError, OSError, ValueError) as exc:  # ValueError: a stream the container cannot take
            last = exc
            continue
        if subs and not with_subs:
            warnings.append("the subtitle streams could not be written into this container and were left out")
        if not info.audio:
            return MuxReport("none", tuple(warnings))
        if transcode:
            codecs = ", ".join(a.codec for a in info.audio)
            warnings.append(f"audio ({codecs}) cannot be copied into {suffix}; re-encoded as {audio_encoder}")
            return MuxReport(f"re-encoded ({audio_encoder})", tuple(warnings))
        return MuxReport("copied", tuple(warnings))
    from imgxlate._atomic import disk_full_error, is_disk_full

    target = final or dst
    if last is not None and is_disk_full(last):
        raise disk_full_error(target, "joining the finished segments into the video") from last
    if isinstance(last, OSError):
        raise VideoError(f"cannot write {target} ({last.strerror or last}); check the folder") from last
    raise VideoError(f"FFmpeg could not write {target} ({last})") from last


def _named_layout(av: Any, ctx: Any, encoder: str = "aac") -> Any:
    """The input's channel layout, or for one that names no speaker positions (PCM from a camera's AVI,
    WMA: "1 channels") FFmpeg's default layout for that many channels: encoders such as AAC refuse an
    unnamed one ("Unsupported channel layout")."""
    layout = ctx.layout
    count = int(getattr(ctx, "channels", 0) or len(getattr(layout, "channels", ())) or 2)
    if layout is not None and not str(layout.name).endswith("channels") and (
            encoder != "libopus" or str(layout.name) in _DEFAULT_LAYOUTS.values()):
        return layout
    return av.AudioLayout(_DEFAULT_LAYOUTS[count]) if count in _DEFAULT_LAYOUTS else layout


# A layout for a number of channels that both audio encoders used here take (AAC, and Opus for WebM,
# which refuses FFmpeg's defaults 2.1, 4.0, 5.0(side) and 5.1(side)).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _mux_once(segments: Sequence[Path], info: VideoInfo, start: float | None, duration: float | None, dst: Path,
              suffix: str, transcode: bool, audio_encoder: str, subs: list[tuple[int, str]]) -> None:
    av = av_module()
    fmt = OUTPUT_FORMATS[suffix]
    opened: list[Any] = []
    out = None
    try:
        out = av.open(str(dst), "w", format=fmt,
                      options={"movflags": "+faststart"} if suffix in _MP4_LIKE else {})
        seg0 = av.open(str(segments[0]))
        opened.append(seg0)
        vin = seg0.streams.video[0]
        vout = out.add_stream_from_template(vin)
        vout.time_base = vin.time_base
        if vin.codec_context.name == "hevc" and suffix in _MP4_LIKE:
            vout.codec_tag = "hvc1"  # what Apple's players take (FFmpeg writes hev1 unless told)
        if info.rate:
            vout.codec_context.framerate = info.rate  # the frame rate players see (Matroska DefaultDuration)
        _copy_metadata(info, out)
        src = open_input(info.path)
        opened.append(src)
        origin = Fraction(src.start_time or 0, 1_000_000)
        cut0 = origin + Fraction(start or 0).limit_denominator(1_000_000)
        cut1 = cut0 + Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
        a_in = [src.streams[a.index] for a in info.audio]
        s_in = [src.streams[i] for i, _ in subs]
        a_out: dict[int, Any] = {}
        transcoders: dict[int, Any] = {}
        for st in a_in:
            if transcode or st.codec_context.name not in out.supported_codecs:
                if not transcode:
                    raise VideoError(f"audio {st.codec_context.name} does not fit {suffix}")
                rate = st.codec_context.sample_rate or 48000
                if audio_encoder == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                    rate = 48000
                o = out.add_stream(audio_encoder, rate=rate)
                if audio_encoder == "aac":
                    o.bit_rate = 192_000
                o.layout = _named_layout(av, st.codec_context, audio_encoder)
                transcoders[st.index] = o
                a_out[st.index] = o
            else:
                a_out[st.index] = out.add_stream_from_template(st)
        s_out: dict[int, Any] = {}
        for (i, how), st in zip(subs, s_in, strict=True):
            if how == "mov_text" and st.codec_context.name != "mov_text":
                o = out.add_mux_stream("mov_text")
                o.time_base = st.time_base
                s_out[i] = (o, True)
            else:
                s_out[i] = (out.add_stream_from_template(st), False)
            with contextlib.suppress(Exception):
                s_out[i][0].metadata.update(dict(st.metadata))
        for st in a_in:
            with contextlib.suppress(Exception):
                a_out[st.index].metadata.update(dict(st.metadata))
        # which audio and subtitle track is the default (or forced): as in the input, not the muxer's guess
        for st in (*a_in, *s_in):
            o = a_out[st.index] if st.index in a_out else s_out[st.index][0]
            o.disposition = st.disposition

        def video_packets() -> Iterator[tuple[float, int, Any]]:
            last_dts: int | None = None
            seq = itertools.count()
            for k, seg_path in enumerate(segments):
                seg = seg0 if k == 0 else av.open(str(seg_path))
                if k:
                    opened.append(seg)
                    if bytes(seg.streams.video[0].codec_context.extradata or b"") != \
                            bytes(vin.codec_context.extradata or b""):
                        raise VideoError(f"segment {seg_path.name} was encoded with other settings; delete the "
                                         "parts folder and convert again")
                for pkt in _packets(seg, [seg.streams.video[0]]):
                    if pkt.dts is not None and last_dts is not None and pkt.dts <= last_dts:
                        if pkt.pts is not None and last_dts + 1 > pkt.pts:
                            raise VideoError("the video segments do not join (timestamps overlap); delete the "
                                             "parts folder and convert again")
                        pkt.dts = last_dts + 1
                    if pkt.dts is not None:
                        last_dts = pkt.dts
                    pkt.stream = vout
                    t = float((pkt.dts if pkt.dts is not None else pkt.pts or 0) * pkt.time_base)
                    yield (t, next(seq), pkt)
                if k:
                    seg.close()
                    opened.remove(seg)

        def side_packets() -> Iterator[tuple[float, int, Any]]:
            if not a_in and not s_in:
                return
            seq = itertools.count()
            if start:
                with contextlib.suppress(Exception):
                    src.seek(int(cut0 * 1_000_000), backward=True)
            for pkt in _packets(src, a_in + s_in):
                tb = pkt.time_base
                if pkt.pts is None:
                    continue
                t = Fraction(pkt.pts) * tb
                end = t + Fraction(pkt.duration or 0) * tb
                if start and end <= cut0:
                    continue
                if cut1 is not None and t >= cut1:
                    continue
                shift = round(cut0 / tb)
                idx = pkt.stream.index
                if idx in transcoders:
                    for fr in pkt.decode():
                        if fr.pts is not None:
                            fr.pts -= shift
                        for o in transcoders[idx].encode(fr):
                            yield (float(Fraction(o.pts or 0) * o.time_base), next(seq), o)
                    continue
                if idx in s_out and pkt.pts < shift:
                    # a cue on screen at the cut: from the cut, for what is left of it (a negative
                    # time made muxers show it late, even after the video's end)
                    pkt.duration = max(1, int((pkt.duration or 0) - (shift - pkt.pts)))
                    pkt.pts = shift
                    if pkt.dts is not None:
                        pkt.dts = shift
                pkt.pts -= shift
                if pkt.dts is not None:
                    pkt.dts -= shift
                if idx in s_out:
                    o, convert = s_out[idx]
                    if convert:
                        new = av.Packet(_sub_to_mov_text(bytes(pkt).decode("utf-8", "replace")))
                        new.pts, new.dts, new.duration, new.time_base = pkt.pts, pkt.pts, pkt.duration, tb
                        pkt = new
                    pkt.stream = o
                else:
                    pkt.stream = a_out[idx]
                yield (float(Fraction(pkt.pts) * tb), next(seq), pkt)
            for idx, o in transcoders.items():
                for p in o.encode(None):
                    yield (float(Fraction(p.pts or 0) * p.time_base), next(seq), p)

        for _, _, pkt in heapq.merge(video_packets(), side_packets(), key=lambda x: (x[0], x[1])):
            out.mux(pkt)
        out.close()
        out = None
    except av.error.FFmpegError as exc:
        raise VideoError(_reason(exc)) from exc
    finally:
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        for c in opened:
            with contextlib.suppress(Exception):
                c.close()


def _copy_metadata(info: VideoInfo, out: Any) -> None:
    for k, v in info.metadata.items():
        if k.lower() in ("encoder", "major_brand", "minor_version", "compatible_brands", "creation_time"):
            continue
        with contextlib.suppress(Exception):
            out.metadata[k] = v
