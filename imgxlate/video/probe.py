"""What a video file holds (:func:`probe_video` -> :class:`VideoInfo`) and its frames in order
(:func:`read_frames`), plus :func:`parse_time` for ``--start`` / ``--duration`` values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate.errors import UsageError, VideoError
from imgxlate.video.media import Decoder, Frame, av_module, open_input


@dataclass(frozen=True)
class StreamInfo:
    index: int  # stream index in the file
    kind: str  # "video" | "audio" | "subtitle" | "data" | "attachment"
    codec: str
    language: str = ""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a file.

    ``width``/``height`` are the size as displayed, i.e. after the display-matrix rotation (the size of
    the decoded, upright frames). ``rotation`` is the display matrix angle in degrees (0..359,
    counter-clockwise). ``fps`` is the average frame rate (0 when unknown), ``rate`` the same as an
    exact fraction; ``frames`` the number of frames the container declares (MP4/MOV), else
    ``duration * fps`` (``frames_exact`` says which). ``time_base`` is the video stream's; frame times
    are exact multiples of it. ``color_codes``: (range, matrix, primaries, transfer) as FFmpeg numbers
    them (0/2 = unspecified), read from the first frame.
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
    color_codes: tuple[int, int, int, int] = (0, 2, 2, 2)
    audio: tuple[StreamInfo, ...] = ()
    subtitles: tuple[StreamInfo, ...] = ()
    frames_exact: bool = True
    frames_reliable: bool = True  # the count, exact or estimated, can tell a file that breaks off
    span: float = 0.0  # the video stream's own duration in seconds (0.0: unknown)
    # how a decoded frame is turned upright (ORIENTATIONS): the display matrix's rotation and mirroring
    orientation: str = "id"
    rate: Fraction | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = ""

    @property
    def tb(self) -> Fraction:
        return self.time_base or Fraction(1, 90000)


_IMAGE_FORMATS = ("image2", "image2pipe")
_IMAGE_CODECS = ("png", "mjpeg", "jpegls", "webp", "bmp", "tiff", "jpeg2000", "qoi", "ppm", "pgm", "pam", "dpx", "exr",
                 "hdr", "sgi", "targa", "xbm", "xpm", "pcx", "sunrast", "heif", "jpegxl", "avif")


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's size, frame rate, frame count, duration, streams and rotation (PyAV, in-process).

    Raises :class:`VideoError` when the file does not exist, is not a regular file, is not a media
    file FFmpeg can read, is a still image, has no video stream, or has no video frames. Nothing is
    decoded except the first frame (for its rotation and colour tags).
    """
    path = Path(path)
    container = open_input(path)
    try:
        return _probe(path, container)
    finally:
        container.close()


def _probe(path: Path, c: Any) -> VideoInfo:
    av = av_module()
    streams = [StreamInfo(s.index, s.type, (s.codec_context.name if s.codec_context else "") or "",
                          str(s.metadata.get("language", ""))) for s in c.streams]
    video = next((s for s in c.streams.video
                  if not int(s.disposition) & int(av.stream.Disposition.attached_pic)), None)
    if video is None:  # a cover picture is not a video: "only audio", not "only audio, video"
        kinds = ", ".join(sorted({s.kind for s in streams if s.kind != "video"}))
        kinds = kinds or ("a cover picture" if c.streams.video else "no streams")
        raise VideoError(f"{path} has no video stream (only {kinds}); give a video file")
    fmt = c.format.name or ""
    vcodec = video.codec_context.name or ""
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe") or (vcodec in _IMAGE_CODECS and video.frames <= 1
                                                          and not c.streams.audio):
        raise VideoError(f"{path} is a still image ({vcodec or fmt}), not a video; use `imgxlate convert` for "
                         "images")
    # The first frame: rotation (display matrix) and colour tags as the decoder reports them.
    first = None
    try:
        for first in c.decode(video):
            break
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: FFmpeg could not decode the video ({exc}); the file is damaged or "
                         "truncated") from exc
    if first is None:
        raise VideoError(f"{path} has a video stream but no video frames; the file is empty or truncated")
    rotation = round(float(first.rotation or 0)) % 360
    orientation = orientation_of(first, rotation)
    w, h = first.width, first.height
    if orientation in TRANSPOSING:
        w, h = h, w
    tb = video.time_base or Fraction(1, 90000)
    rate = video.average_rate or video.guessed_rate or video.base_rate
    fps = float(rate) if rate else 0.0
    if c.duration:
        duration = c.duration / 1_000_000
    elif video.duration:
        duration = float(video.duration * tb)
    else:
        duration = 0.0
    # The frame count a container does not store is estimated from the video's own span (not the
    # container's: its audio may run longer) and its average rate; from a guessed rate (the highest,
    # for variable-rate files) it is only an upper bound.
    span = _video_span(video, tb) or duration
    frames = int(video.frames or 0) or (round(span * fps) if span and fps else 0)
    reliable = bool(video.frames) or video.average_rate is not None
    sar = video.sample_aspect_ratio
    if sar and sar.numerator > 0 and orientation in TRANSPOSING:
        sar = 1 / sar  # a pixel 4:3 wide, turned a quarter, is 3:4 wide (as FFmpeg's transpose makes it)
    color = (int(first.color_range or 0), int(first.colorspace or 2), int(first.color_primaries or 2),
             int(first.color_trc or 2))
    return VideoInfo(
        path=path,
        width=w,
        height=h,
        fps=fps,
        frames=frames,
        duration=duration,
        has_audio=any(s.kind == "audio" for s in streams),
        rotation=rotation,
        codec=vcodec,
        video_index=video.index,
        time_base=tb,
        sar=(sar.numerator, sar.denominator) if sar and sar.numerator > 0 else (1, 1),
        pix_fmt=video.codec_context.pix_fmt or "",
        color_codes=color,
        audio=tuple(s for s in streams if s.kind == "audio"),
        subtitles=tuple(s for s in streams if s.kind == "subtitle"),
        frames_exact=bool(video.frames),
        frames_reliable=reliable,
        span=span,
        orientation=orientation,
        rate=Fraction(rate) if rate else None,
        metadata=dict(c.metadata),
        format=fmt,
    )


# The display matrix's 2x2 part, by sign (m[0], m[1], m[3], m[4] of FFmpeg's 3x3 int32 matrix), as the
# array operation that shows the frame as FFmpeg's autorotation does (checked against the ffmpeg binary
# for rotations 0/90/180/270, each also mirrored horizontally and vertically): id, fx/fy = mirror
# left-right / top-bottom, r90/r180/r270 = np.rot90 k times, T = transpose, aT = the anti-transpose.
_MATRIX_SIGNS = {(1, 0, 0, 1): "id", (-1, 0, 0, 1): "fx", (1, 0, 0, -1): "fy", (-1, 0, 0, -1): "r180",
                 (0, -1, 1, 0): "r90", (0, 1, -1, 0): "r270", (0, -1, -1, 0): "aT", (0, 1, 1, 0): "T"}
ORIENTATIONS = tuple(_MATRIX_SIGNS.values())
TRANSPOSING = ("r90", "r270", "T", "aT")  # the orientations that swap width and height


def orientation_of(frame: Any, rotation: int) -> str:
    """How ``frame`` is to be shown: from its display matrix (rotation and mirroring), or for a matrix
    that is not a quarter turn (an odd angle), the nearest quarter turn of ``rotation``."""
    for side in frame.side_data:
        if str(side.type).endswith("DISPLAYMATRIX"):
            m = np.frombuffer(bytes(side), dtype=np.int32)
            key = tuple(int(np.sign(m[i])) for i in (0, 1, 3, 4))
            if key in _MATRIX_SIGNS:
                return _MATRIX_SIGNS[key]
    return ("id", "r90", "r180", "r270")[round(rotation / 90) % 4]


def _video_span(video: Any, tb: Fraction) -> float:
    """The video stream's own duration in seconds: its ``duration``, or the ``DURATION`` tag Matroska
    writers put on each stream ("00:00:01.000000000"); 0.0 when neither says."""
    if video.duration:
        return float(video.duration * tb)
    tag = str((video.metadata or {}).get("DURATION", "") or "")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return 0.0


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
            if any(not 0 <= float(p) < 60 for p in parts[1:]):  # 1:99 is a typo, not 2:39; 1:-5 not 55 s
                raise ValueError(text)
            if len(parts) > 1 and parts[0].strip().startswith("-"):  # -0:30 is not 30 s
                raise ValueError(text)
        except ValueError:
            raise UsageError(f"{what} {value!r} is not a time; give seconds (12.5) or HH:MM:SS(.ms)") from None
    if not np.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{what} must be a positive time, not {value!r}")
    return seconds


def read_frames(
    path: str | os.PathLike[str], *, start: float | str | None = None, duration: float | str | None = None
) -> Iterator[Frame]:
    """Decode a video (or a part of it) into upright RGB frames with their timestamps (relative to the
    start of the part). Raises VideoError when the file breaks off."""
    info = probe_video(path)
    dec = Decoder(info, parse_time(start, "start"), parse_time(duration, "duration"))
    try:
        yield from dec.frames()
        if dec.broken:
            raise VideoError(f"{path}: FFmpeg could not decode the video ({dec.error})")
    finally:
        dec.close()
