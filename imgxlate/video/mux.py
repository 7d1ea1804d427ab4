"""Muxing with PyAV: the final file, the translated video segments joined without re-encoding, with
the source's audio (copied, or re-encoded where the container needs it) and subtitles, cut to
--start/--duration."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgxlate.errors import VideoError
from imgxlate.video.media import _MP4_LIKE, _TEXT_SUBS, OUTPUT_FORMATS, _reason, av_module, open_input

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.video.probe import VideoInfo

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




def _mov_text_to_srt(sample: bytes) -> bytes:
    """A mov_text (3GPP timed text) sample as a SubRip packet: its text, without the length in front
    and the style boxes after it."""
    n = int.from_bytes(sample[:2], "big") if len(sample) >= 2 else 0
    return sample[2 : 2 + n]


@dataclass
class MuxReport:
    audio: str = "none"  # "copied" | "re-encoded (aac)" | "copied, re-encoded (aac)" | "none"
    warnings: tuple[str, ...] = ()


def _copyable(codec: str, suffix: str, supported: Any) -> bool:
    """Can an audio stream of ``codec`` be copied into a ``suffix`` file that players take? The muxer's
    own list, except PCM in MP4, which FFmpeg writes as ``ipcm`` / ``fpcm`` (ISO PCM) that browsers,
    phones and QuickTime do not play: camera PCM goes into .mp4 as AAC (into .mov, as it is)."""
    if suffix in (".mp4", ".m4v") and codec.startswith("pcm_"):
        return False
    return codec in supported


def mux_final(segments: Sequence[Path], info: VideoInfo, start: float | None, duration: float | None,
              dst: Path, suffix: str, final: Path | None = None) -> MuxReport:
    """Join the video ``segments`` (packet copy, no re-encoding) with the source's audio and subtitles
    cut to ``start``/``duration`` into ``dst`` (a temp path; the container is chosen by ``suffix``;
    ``final``: the target it becomes, named in errors). A full disk is :class:`DiskFullError`.

    Each audio track is copied when the container takes its codec (:func:`_copyable`), else re-encoded
    (AAC; Opus for WebM) with a warning naming it; text subtitles become mov_text in MP4/MOV and are
    copied into MKV; bitmap subtitles are kept in MKV only. Subtitles the container still refuses are
    left out before any audio is re-encoded for them.
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
        else:  # Matroska: text and bitmap subtitles as they are; MP4's mov_text as SubRip (it takes no mov_text)
            subs.append((s.index, "subrip" if s.codec == "mov_text" else "copy"))
    audio_encoder = "libopus" if suffix == ".webm" else "aac"
    # (re-encode every audio track, subtitles): each track as it fits first; all re-encoded only when
    # the muxer refused a copy it said it takes
    attempts: list[tuple[bool, bool]] = [(False, True), (False, False), (True, True), (True, False)]
    if not info.audio:
        attempts = [(False, True), (False, False)]
    if not subs:
        attempts = [a for a in attempts if a[1]]
    last: BaseException | None = None
    for transcode, with_subs in attempts:
        try:
            dropped, encoded = _mux_once(segments, info, start, duration, dst, suffix, transcode, audio_encoder,
                                         subs if with_subs else [])
        except (VideoError, OSError, ValueError) as exc:  # ValueError: a stream the container cannot take
            last = exc
            continue
        if dropped:
            warnings.append(f"{dropped} damaged audio or subtitle packet{'s were' if dropped != 1 else ' was'} of "
                            "the input left out (unreadable; a short gap in the sound there)")
        if subs and not with_subs:
            warnings.append("the subtitle streams could not be written into this container and were left out")
        if not info.audio:
            return MuxReport("none", tuple(warnings))
        if encoded:
            warnings.append(f"audio ({', '.join(encoded)}) cannot be copied into {suffix}; re-encoded as "
                            f"{audio_encoder}" + (" (the other tracks copied)" if len(encoded) < len(info.audio) else ""))
            how = f"re-encoded ({audio_encoder})"
            return MuxReport(how if len(encoded) == len(info.audio) else f"copied, {how}", tuple(warnings))
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
              suffix: str, transcode: bool, audio_encoder: str, subs: list[tuple[int, str]]) -> tuple[int, list[str]]:
    """One try at the final file (``transcode``: every audio track re-encoded, else those that cannot
    be copied). Returns how many of the input's audio and subtitle packets were damaged (not
    decodable, or refused by the muxer: an ADTS header hit by a broadcast error) and left out, and the
    codecs of the audio tracks re-encoded. A video packet the muxer refuses is an error: those are
    this run's own."""
    av = av_module()
    dropped = 0
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
        encoded: list[str] = []
        for st in a_in:
            if transcode or not _copyable(st.codec_context.name, suffix, out.supported_codecs):
                encoded.append(st.codec_context.name)
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
            if how in ("mov_text", "subrip") and st.codec_context.name != how:
                o = out.add_mux_stream(how)
                o.time_base = st.time_base
                s_out[i] = (o, how)
            else:
                s_out[i] = (out.add_stream_from_template(st), "")
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
            nonlocal dropped
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
                    try:
                        frames = pkt.decode()
                    except av.error.FFmpegError:  # damaged: the decoder resyncs at the next packet
                        dropped += 1
                        continue
                    for fr in frames:
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
                        data = _sub_to_mov_text(bytes(pkt).decode("utf-8", "replace")) if convert == "mov_text" \
                            else _mov_text_to_srt(bytes(pkt))
                        new = av.Packet(data)
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
            if pkt.stream is vout:
                out.mux(pkt)
                continue
            try:
                out.mux(pkt)
            except av.error.InvalidDataError:  # a damaged copied packet (the muxer checks its header)
                dropped += 1
        out.close()
        out = None
        return dropped, encoded
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
        # the recording date (creation_time) is kept: galleries sort phone and camera clips by it
        if k.lower() in ("encoder", "major_brand", "minor_version", "compatible_brands"):
            continue
        with contextlib.suppress(Exception):
            out.metadata[k] = v
