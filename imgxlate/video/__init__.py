"""Video: translate video files frame by frame (PyAV decode -> generator -> flow stabiliser -> PyAV
encode in resumable segments -> join + mux with the source's audio and subtitles).

Modules, lowest first: :mod:`.media` (PyAV: open, decode), :mod:`.encoder` (encode segments),
:mod:`.mux` (the final file), :mod:`.probe` (what a file holds, its frames), :mod:`.stabilize`
(flow-guided temporal blend, flicker and ghosting measures), :mod:`.segments` (the resumable parts folder), :mod:`.convert` (the driver,
:func:`convert_video`). The names below are the public API; submodules never import this package's
``__init__``.
"""

from __future__ import annotations

from imgxlate.inputs import VIDEO_SUFFIXES
from imgxlate.video.convert import (
    DEFAULT_TEMPORAL,
    VideoResult,
    convert_video,
    default_output,
    is_temp_name,
)
from imgxlate.video.encoder import output_size
from imgxlate.video.media import OUTPUT_SUFFIXES, Frame
from imgxlate.video.probe import StreamInfo, VideoInfo, parse_time, probe_video, read_frames
from imgxlate.video.stabilize import (
    TEMPORAL_MODES,
    FlowStabilizer,
    TemporalSettings,
    flicker_ratio,
    measure_stability,
    moving_psnr,
    static_flicker,
    warp_error,
)

__all__ = [
    "DEFAULT_TEMPORAL",
    "OUTPUT_SUFFIXES",
    "TEMPORAL_MODES",
    "VIDEO_SUFFIXES",
    "FlowStabilizer",
    "Frame",
    "StreamInfo",
    "TemporalSettings",
    "VideoInfo",
    "VideoResult",
    "convert_video",
    "default_output",
    "flicker_ratio",
    "is_temp_name",
    "measure_stability",
    "moving_psnr",
    "output_size",
    "parse_time",
    "probe_video",
    "read_frames",
    "static_flicker",
    "warp_error",
]
