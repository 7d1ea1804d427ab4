"""Encoding video with PyAV: the check that an encoder can make the video asked for (before any work),
and :class:`SegmentWriter`, which encodes translated frames into one segment file (its first frame a
key frame, so that segments join without re-encoding)."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.errors import UsageError, VideoError
from imgxlate.video.media import _SUBSAMPLED, _WEBM_VIDEO, OUTPUT_FORMATS, SEGMENT_FORMATS, _reason, av_module

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.video.probe import VideoInfo

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
        raise UsageError(f"{codec} encodes {c.type}, not video; give a video encoder such as libx264")
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
