"""Videos of the kinds people own, made with the FFmpeg binary: a camera's MJPEG + PCM AVI, WMV,
MPEG-TS cut with --start, an MKV whose audio runs longer, variable frame rate in MKV, folders of
camcorder files. Each case failed (or was misreported) before."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from video_helpers import FFMPEG, ffmpeg, frame_times, stream_codecs

from imgxlate import video


def _src(path: Path, seconds: float = 1.0, fps: int = 12, size: str = "64x48") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}", "-f", "lavfi", "-i",
           f"sine=f=440:d={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


def test_a_camera_avi_with_pcm_audio_and_a_wmv_convert_with_their_sound(translator, tmp_path: Path) -> None:
    """PCM from a camera, WMA: a channel layout without speaker names, which AAC refused ("FFmpeg could
    not write ... (Invalid argument)") after every frame was translated; the parts were left behind."""
    base = _src(tmp_path / "base.mp4")
    ffmpeg("-i", str(base), "-c:v", "mjpeg", "-c:a", "pcm_u8", "-ac", "1", str(tmp_path / "CAM.AVI"))
    ffmpeg("-i", str(base), "-c:v", "wmv2", "-c:a", "wmav2", str(tmp_path / "clip.wmv"))
    for name in ("CAM.AVI", "clip.wmv"):
        dst = tmp_path / f"{name}.mp4"
        r = video.convert_video(tmp_path / name, dst, translator, temporal="off")
        assert r.status == "converted" and not r.partial, r.warnings
        codecs = stream_codecs(dst)
        assert any(c.startswith("Video: h264") for c in codecs) and any(c.startswith("Audio: aac") for c in codecs)
        assert not any(p.name.startswith(".imgxlate-parts") for p in tmp_path.iterdir())


def test_start_in_an_mpeg_ts_keeps_every_frame_of_the_cut(translator, tmp_path: Path) -> None:
    """The seek in a TS landed on a packet after the cut; the decoder dropped frames up to the next key
    frame: 7 frames of 25."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3", "-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264",
           "-g", "25", "-c:a", "aac", "-f", "mpegts", str(tmp_path / "g.ts"))
    r = video.convert_video(tmp_path / "g.ts", tmp_path / "g.mp4", translator, start=1.3, duration=1, temporal="off")
    assert r.frames == 25
    times = frame_times(tmp_path / "g.mp4")
    assert len(times) == 25 and times[0] < 0.02


def test_start_between_two_frames_of_an_avi(translator, tmp_path: Path) -> None:
    """25 fps, a cut at 1.5 s: frame times rounded to the output's 1/25 s gave two frames each time
    (0, 0, 2, 2, ...), and the encoder failed at the end."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", "-c:v", "mjpeg", str(tmp_path / "s.avi"))
    r = video.convert_video(tmp_path / "s.avi", tmp_path / "s.mp4", translator, start=1.5, temporal="off")
    times = frame_times(tmp_path / "s.mp4")
    assert r.frames == len(times) >= 12 and len(set(times)) == len(times)


def test_complete_mkv_files_are_not_called_truncated(translator, tmp_path: Path) -> None:
    """The frame count was estimated from the container's duration (its audio ran longer) or from the
    average rate of a variable-rate file: "only 12 of about 24 frames could be decoded"."""
    base = _src(tmp_path / "base.mp4")
    ffmpeg("-i", str(base), "-f", "lavfi", "-t", "2", "-i", "sine", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "libopus", str(tmp_path / "long_audio.mkv"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-vf",
           "setpts='if(lt(N,10),N/25,0.4+(N-10)/10)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
           str(tmp_path / "vfr.mkv"))
    for name in ("long_audio.mkv", "vfr.mkv"):
        r = video.convert_video(tmp_path / name, tmp_path / f"{name}.mkv", translator, temporal="off")
        assert not r.partial and not any("could be decoded" in w for w in r.warnings), (name, r.warnings)


def test_a_truncated_file_is_still_partial(translator, tmp_path: Path) -> None:
    base = _src(tmp_path / "base.mp4", seconds=2.0)
    ffmpeg("-i", str(base), "-c", "copy", "-movflags", "+faststart", str(tmp_path / "fast.mp4"))
    data = (tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    r = video.convert_video(tmp_path / "cut.mp4", tmp_path / "cut_out.mp4", translator, temporal="off")
    assert r.partial


def test_a_folder_of_camcorder_and_phone_files_is_walked(tiny_pair: Path, tmp_path: Path) -> None:
    """.MTS (AVCHD camcorders) and .3gp (phones) were not video suffixes: "no videos found"."""
    base = _src(tmp_path / "base.mp4", seconds=0.5)
    (tmp_path / "in").mkdir()
    ffmpeg("-i", str(base), "-c", "copy", "-f", "mpegts", str(tmp_path / "in" / "00001.MTS"))
    ffmpeg("-i", str(base), "-c:v", "copy", "-an", "-f", "3gp", str(tmp_path / "in" / "clip.3gp"))
    proc = subprocess.run([sys.executable, "-m", "imgxlate", "video", str(tmp_path / "in"), "--out",
                           str(tmp_path / "out"), "--model", str(tiny_pair / "a2b.onnx"), "--device", "cpu",
                           "--threads", "1", "--json"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = {Path(r["src"]).name for r in json.loads(proc.stdout)["results"] if r["status"] == "converted"}
    assert done == {"00001.MTS", "clip.3gp"}
    assert FFMPEG  # the reference binary made the inputs


def test_subtitles_on_screen_at_the_cut_start_at_the_cut(translator, tmp_path: Path) -> None:
    """A cue showing at --start went to a negative time; muxers then showed the next cue late (MP4:
    0.70-1.25 s for one at 0.30-0.65 s), or past the end of the video."""
    (tmp_path / "s.srt").write_text("1\n00:00:00,100 --> 00:00:00,600\nfirst\n\n2\n00:00:00,600 --> 00:00:00,950\n"
                                    "second\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-i", str(tmp_path / "s.srt"), "-c:v", "libx264",
           "-c:s", "srt", str(tmp_path / "subs.mkv"))
    for suffix in (".mp4", ".mkv"):
        dst = tmp_path / f"cut{suffix}"
        video.convert_video(tmp_path / "subs.mkv", dst, translator, start=0.3, temporal="off")
        srt = subprocess.run([FFMPEG, "-v", "error", "-i", str(dst), "-map", "0:s", "-f", "srt", "-"],
                             capture_output=True, text=True, check=True).stdout
        assert "00:00:00,000 --> 00:00:00,300\nfirst" in srt and "00:00:00,300 --> 00:00:00,650\nsecond" in srt, srt


def test_the_default_audio_track_stays_the_default(translator, tmp_path: Path) -> None:
    """An MKV whose French track is the default came out with no default track (MKV) or with English
    as the default (MP4)."""
    import av

    base = _src(tmp_path / "base.mp4", seconds=0.5)
    ffmpeg("-i", str(base), "-f", "lavfi", "-t", "0.5", "-i", "sine=f=220", "-map", "0:v", "-map", "0:a", "-map",
           "1:a", "-c:v", "copy", "-c:a", "aac", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1",
           "language=fra", "-disposition:a:0", "0", "-disposition:a:1", "default", str(tmp_path / "two.mkv"))
    for suffix in (".mkv", ".mp4"):
        dst = tmp_path / f"out{suffix}"
        video.convert_video(tmp_path / "two.mkv", dst, translator, temporal="off")
        with av.open(str(dst)) as c:
            tracks = [(s.metadata.get("language"), bool(s.disposition & av.stream.Disposition.default))
                      for s in c.streams.audio]
        assert tracks == [("eng", False), ("fra", True)], (suffix, tracks)


def test_hevc_in_mp4_is_tagged_for_apple_players(translator, tmp_path: Path) -> None:
    """FFmpeg tags HEVC in MP4 as hev1 unless told; QuickTime and iOS play hvc1 only."""
    import av

    if "libx265" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libx265")
    base = _src(tmp_path / "base.mp4", seconds=0.3)
    video.convert_video(base, tmp_path / "h.mp4", translator, temporal="off", codec="libx265")
    with av.open(str(tmp_path / "h.mp4")) as c:
        assert c.streams.video[0].codec_tag == "hvc1"


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("mirror", ["", "-display_hflip", "-display_vflip"])
def test_frames_are_shown_as_ffmpeg_shows_them(tmp_path: Path, rotation: int, mirror: str) -> None:
    """A phone's display matrix rotates and may mirror (front cameras): only the rotation was read, so
    a mirrored video came out mirrored (or upside down). Compared with the ffmpeg binary's autorotated
    first frame: it must be the nearest of the eight turns and mirrorings of the stored frame."""
    import numpy as np

    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=0.4", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0",
           str(tmp_path / "raw.mp4"))
    ffmpeg("-display_rotation", str(rotation), *([mirror] if mirror else []), "-i", str(tmp_path / "raw.mp4"),
           "-c", "copy", str(tmp_path / "shown.mp4"))
    ours = next(iter(video.read_frames(tmp_path / "shown.mp4"))).rgb.astype(np.int16)
    ref = subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "shown.mp4"), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    h, w = ours.shape[:2]
    assert len(ref) == h * w * 3, "not the size FFmpeg shows"
    ref_img = np.frombuffer(ref, np.uint8).reshape(h, w, 3).astype(np.int16)
    stored = next(iter(video.read_frames(tmp_path / "raw.mp4"))).rgb.astype(np.int16)
    candidates = [np.rot90(stored, k) for k in range(4)] + [np.rot90(stored[:, ::-1], k) for k in range(4)]
    errors = [np.abs(c - ref_img).mean() if c.shape == ref_img.shape else 1e9 for c in candidates]
    assert np.abs(ours - ref_img).mean() == pytest.approx(min(errors), abs=0.5) and min(errors) < 3


def test_quiet_is_errors_only_and_warnings_stay_in_the_json(tiny_pair: Path, tmp_path: Path) -> None:
    base = _src(tmp_path / "base.mp4", seconds=0.3)
    cmd = [sys.executable, "-m", "imgxlate", "video", str(base), "--model", str(tiny_pair / "a2b.onnx"), "--device",
           "cpu", "--threads", "1", "--codec", "libvpx-vp9"]
    loud = subprocess.run([*cmd, "--out", str(tmp_path / "a.webm")], check=False, capture_output=True, text=True)
    assert loud.returncode == 0 and "re-encoded as libopus" in loud.stderr, loud.stderr[-1000:]
    quiet = subprocess.run([*cmd, "--out", str(tmp_path / "b.webm"), "-q", "--json"], check=False,
                           capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr[-1000:]
    assert any("re-encoded as libopus" in w for w in json.loads(quiet.stdout)["results"][0]["warnings"])


def test_theora_ogv_with_empty_repeat_packets_converts(translator, tmp_path: Path) -> None:
    """Theora writes empty packets for repeated frames; sending one to the decoder raised."""
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=1", "-c:v", "libtheora", str(tmp_path / "a.ogv"))
    r = video.convert_video(tmp_path / "a.ogv", tmp_path / "a.mp4", translator, temporal="off")
    assert r.status == "converted" and r.frames >= 1


def test_a_stretch_without_frames_is_said_not_called_damaged(translator, tmp_path: Path) -> None:
    """Frames from 1 s to 2.5 s gone, the rest with their times: they reach the end of the video but
    leave a hole. It once passed without a word; then a complete screen recording with a pause (no
    frames while nothing moved) was called "truncated or damaged" with partial true. The two look the
    same in the file and nothing failed to decode: the stretch is said, the output keeps it."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=4", "-vf", "select='not(between(t,1,2.5))'",
           "-fps_mode", "passthrough", "-c:v", "libx264", str(tmp_path / "holed.mkv"))
    r = video.convert_video(tmp_path / "holed.mkv", tmp_path / "out.mkv", translator, temporal="off")
    assert 55 <= r.frames <= 70
    assert not r.partial and not any("could be decoded" in w for w in r.warnings), r.warnings
    assert any(w.startswith("no frames for 1.5 s from 1.0 s") for w in r.warnings), r.warnings
    times = frame_times(tmp_path / "out.mkv")
    assert max(b - a for a, b in itertools.pairwise(times)) > 1.4  # the pause is kept, not closed up


def test_multichannel_pcm_goes_into_webm_and_mp4(translator, tmp_path: Path) -> None:
    """Opus refused FFmpeg's default layouts for 3 to 6 channels (2.1, 4.0, 5.0(side), 5.1(side))."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-f", "lavfi", "-i", "sine=d=0.5", "-filter_complex",
           "[1:a]pan=6c|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0[a]", "-map", "0:v", "-map", "[a]", "-c:v", "libx264",
           "-c:a", "pcm_s16le", str(tmp_path / "six.mkv"))
    for suffix, codec in ((".webm", "libvpx-vp9"), (".mp4", "libx264")):
        dst = tmp_path / f"six{suffix}"
        r = video.convert_video(tmp_path / "six.mkv", dst, translator, temporal="off", codec=codec)
        assert r.status == "converted" and any(c.startswith("Audio:") for c in stream_codecs(dst)), suffix


def test_mp4_subtitles_go_into_mkv_as_subrip(translator, tmp_path: Path) -> None:
    """mov_text cannot go into Matroska: the join raised ValueError (a traceback) after every frame,
    then the subtitles were left out, and their failed copy re-encoded the AAC track too."""
    (tmp_path / "s.srt").write_text("1\n00:00:00,100 --> 00:00:00,400\nhello\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-f", "lavfi", "-i", "sine=d=0.5", "-i",
           str(tmp_path / "s.srt"), "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-c:a", "aac",
           "-c:s", "mov_text", str(tmp_path / "subs.mp4"))
    r = video.convert_video(tmp_path / "subs.mp4", tmp_path / "subs.mkv", translator, temporal="off")
    assert r.status == "converted" and r.audio == "copied" and not r.warnings, r.warnings
    codecs = stream_codecs(tmp_path / "subs.mkv")
    assert any(c.startswith("Subtitle: subrip") for c in codecs), codecs
    srt = subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "subs.mkv"), "-map", "0:s:0", "-f", "srt", "-"],
                         capture_output=True, text=True, check=True).stdout
    # the cue keeps its place against the video (which starts where the source's first frame was)
    import re

    cue = re.search(r"00:00:00,(\d{3}) --> 00:00:00,(\d{3})\nhello", srt)
    first = frame_times(tmp_path / "subs.mkv")[0]
    assert cue and abs(int(cue[1]) / 1000 - first - 0.1) < 0.002 and int(cue[2]) - int(cue[1]) == 300, (srt, first)


def test_one_track_that_cannot_be_copied_leaves_the_others_copied(translator, tmp_path: Path) -> None:
    """AAC + PCM into MP4 re-encoded both tracks ("audio (aac, pcm_s16le) cannot be copied"); PCM from a
    camera's MOV went into MP4 as ipcm, which players do not take, reported "audio copied"."""
    import av

    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-f", "lavfi", "-i", "sine=d=0.5", "-map", "0",
           "-map", "1", "-map", "1", "-c:v", "libx264", "-c:a:0", "aac", "-c:a:1", "pcm_s16le",
           "-metadata", "creation_time=2023-07-14T18:30:00Z", str(tmp_path / "two.mov"))
    r = video.convert_video(tmp_path / "two.mov", tmp_path / "two.mp4", translator, temporal="off")
    assert r.audio == "copied, re-encoded (aac)" and any("(pcm_s16le) cannot be copied" in w for w in r.warnings)
    with av.open(str(tmp_path / "two.mov")) as src, av.open(str(tmp_path / "two.mp4")) as out:
        kept = [bytes(p) for p in src.demux(src.streams.audio[0]) if p.size]
        copied = [bytes(p) for p in out.demux(out.streams.audio[0]) if p.size]
        assert copied == kept  # the AAC track, packet for packet
        assert [s.codec_context.name for s in out.streams.audio] == ["aac", "aac"]
        assert out.metadata.get("creation_time", "").startswith("2023-07-14T18:30:00")  # galleries sort by it


def test_a_video_that_starts_after_its_audio_is_complete(translator, tmp_path: Path) -> None:
    """Its frames start 1.5 s into the file and reach its end: it was called truncated (63 of 101)."""
    ffmpeg("-f", "lavfi", "-i", "sine=d=4", "-itsoffset", "1.5", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2.5",
           "-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-c:a", "libopus", str(tmp_path / "late.mkv"))
    r = video.convert_video(tmp_path / "late.mkv", tmp_path / "out.mkv", translator, temporal="off")
    assert r.frames >= 60 and not r.partial, r.warnings


def test_a_cut_inside_a_held_frame_starts_with_that_frame(translator, tmp_path: Path) -> None:
    """A slide (or a paused screen recording) on screen from 0.96 s to 3 s, cut at 2 s: the frame on
    screen at the cut was dropped, so the output had sound and no picture for its first second. It is
    the first frame now, at 0, with a few copies a frame apart so that the encoder's B-frame delay does
    not stretch the file (a 2.5 s cut read as 4.03 s)."""
    import av

    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", "-vf", "setpts='if(lt(N,25),N/25,3+(N-25)/25)/TB'",
           "-fps_mode", "vfr", "-c:v", "libx264", str(tmp_path / "slides.mkv"))
    r = video.convert_video(tmp_path / "slides.mkv", tmp_path / "cut.mp4", translator, start=2, duration=1.5,
                            temporal="off")
    times = frame_times(tmp_path / "cut.mp4")
    assert times[0] < 0.01 and 0.99 < times[4] < 1.01 and r.frames == len(times) == 4 + 13, times
    with av.open(str(tmp_path / "cut.mp4")) as c:
        assert abs(c.duration / 1e6 - 1.5) < 0.1
    # a cut shorter than the copies: the frame alone (its copies ran past the cut's end)
    short = video.convert_video(tmp_path / "slides.mkv", tmp_path / "short.mp4", translator, start=2,
                                duration=0.05, temporal="off")
    assert short.frames == 1 and len(frame_times(tmp_path / "short.mp4")) == 1


def test_a_damaged_audio_packet_in_a_ts_leaves_a_gap_not_a_failure(translator, tmp_path: Path) -> None:
    """A broadcast recording with a few bad bytes in one AAC frame: the MP4 muxer refused the packet and
    the whole video failed after every frame was translated, "FFmpeg could not write <output>"."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=12:d=3", "-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264",
           "-c:a", "aac", "-f", "mpegts", str(tmp_path / "tv.ts"))
    data = bytearray((tmp_path / "tv.ts").read_bytes())
    i = data.index(b"\xff\xf1", len(data) // 2)  # an ADTS (AAC) frame header in the middle of the file
    data[i:i + 8] = b"\xb0" * 8
    (tmp_path / "bad.ts").write_bytes(bytes(data))
    for dst in (tmp_path / "out.mp4", tmp_path / "out.mkv"):
        r = video.convert_video(tmp_path / "bad.ts", dst, translator, temporal="off")
        assert r.status == "converted" and r.audio == "copied" and r.frames == 36, r.warnings
        assert any("damaged audio or subtitle packet" in w for w in r.warnings), r.warnings
        assert any(c.startswith("Audio: aac") for c in stream_codecs(dst))
