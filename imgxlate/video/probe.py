"""What a video file holds (:func:`probe_video` -> :class:`VideoInfo`) and its frames in order
(:func:`read_frames`), plus :func:`parse_time` for ``--start`` / ``--duration`` values.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from imgxlate.errors import UsageError, VideoError
from imgxlate.video.ffmpeg import Frame, _Decoder, _ffmpeg_reason, _popen_kwargs, ffmpeg_exe

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")


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
