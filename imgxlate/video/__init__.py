"""Video: translate video files frame by frame (FFmpeg decode -> generator -> FFmpeg encode + mux).

Modules, lowest first: :mod:`.ffmpeg` (FFmpeg processes), :mod:`.probe` (what a file holds, its
frames), :mod:`.stabilize` (temporally smoothed InstanceNorm statistics, flicker measures),
:mod:`.convert` (the driver, :func:`convert_video`). The names below are the public API; submodules
never import this package's ``__init__``.
"""

from __future__ import annotations

from imgxlate.video.convert import (
    DEFAULT_BATCH_SIZE,
    VideoResult,
    convert_video,
    default_output,
    is_temp_name,
)
from imgxlate.video.ffmpeg import OUTPUT_SUFFIXES, Frame, ffmpeg_exe
from imgxlate.video.probe import VIDEO_SUFFIXES, StreamInfo, VideoInfo, parse_time, probe_video, read_frames
from imgxlate.video.stabilize import (
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_MOMENTUM,
    StatsSmoother,
    flicker_ratio,
    measure_stability,
    static_flicker,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CUT_THRESHOLD",
    "DEFAULT_MOMENTUM",
    "OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "StatsSmoother",
    "StreamInfo",
    "VideoInfo",
    "VideoResult",
    "convert_video",
    "default_output",
    "ffmpeg_exe",
    "flicker_ratio",
    "is_temp_name",
    "measure_stability",
    "parse_time",
    "probe_video",
    "read_frames",
    "static_flicker",
]
