"""FFmpeg processes: the bundled binary, the raw-RGB decoder, the encoder fed through a minimal
Matroska stream (exact per-frame timestamps), and the final mux with the source's audio/subtitles.
"""

from __future__ import annotations

import collections
import contextlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import UsageError, VideoError

if TYPE_CHECKING:  # pragma: no cover - types only; probe imports this module
    from imgxlate.video.probe import StreamInfo, VideoInfo


# Containers we write; the codec must fit the container (WebM takes VP8/VP9/AV1 only).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
_MP4_LIKE = (".mp4", ".m4v", ".mov")
_WEBM_VIDEO = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e")
_TEXT_SUBS = ("subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text")


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


def _ffmpeg_reason(text: str) -> str:
    """The most telling line of an FFmpeg error log."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if any(w in low for w in ("invalid data", "no such file", "permission denied", "moov atom not found",
                                  "error", "unknown", "not recognized", "invalid", "could not")):
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return lines[-1] if lines else "FFmpeg gave no reason"


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
