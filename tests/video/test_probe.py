"""Probing and refusing inputs: what a video is (size, rotation, times), what is not one (a still, a FIFO, damaged files).

Clips made here with the FFmpeg binary of imageio-ffmpeg (an independent reference: imgxlate
itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from video_helpers import (
    FPS,
    ffmpeg,
    frame_times,
    leftovers,
)

from imgxlate import video
from imgxlate.errors import UsageError, VideoError


def test_probe_clip(clip: Path) -> None:
    info = video.probe_video(clip)
    assert (info.width, info.height) == (97, 61)
    assert info.fps == pytest.approx(FPS)
    assert info.frames == 2 * FPS
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.has_audio and info.codec == "h264" and info.rotation == 0


def test_probe_rotation_swaps_size(clip: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated))
    info = video.probe_video(rotated)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (61, 97)


def test_parse_time() -> None:
    assert video.parse_time("90") == 90.0
    assert video.parse_time("1:30") == 90.0
    assert video.parse_time("00:01:30.5") == 90.5
    assert video.parse_time(2) == 2.0 and video.parse_time(None) is None
    for bad in ("abc", "-1", "1:", "1:75:00", "1:99", "0:00:60", "1:-5", "-0:30"):
        with pytest.raises(UsageError):
            video.parse_time(bad)


def test_still_image_is_not_a_video(translator, tmp_path: Path) -> None:

    png = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (10, 20, 30)).save(png)
    with pytest.raises(VideoError, match="still image"):
        video.convert_video(png, tmp_path / "photo.mp4", translator)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_fifo_is_refused_without_blocking(translator, tmp_path: Path) -> None:
    import os
    import threading

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            video.convert_video(fifo, tmp_path / "out.mp4", translator)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout=20)
    assert not th.is_alive(), "convert_video blocked on a FIFO"
    assert len(errors) == 1 and isinstance(errors[0], VideoError) and "FIFO" in str(errors[0])


def test_corpus_clip(corpus_dir: Path, translator, tmp_path: Path) -> None:
    src = corpus_dir / "video" / "onepiece_demo.mp4"
    if not src.exists():
        pytest.skip("corpus video missing")
    dst = tmp_path / "onepiece.mp4"
    # Per-frame path (the stabilised one is covered above on the small clip; it is slower on 640x480).
    r = video.convert_video(src, dst, translator, start=1.0, duration=1.0, temporal="off")
    assert r.audio == "copied"
    info = video.probe_video(dst)
    src_info = video.probe_video(src)
    assert (info.width, info.height) == (640, 480)
    assert info.fps == pytest.approx(src_info.fps, abs=0.01)
    assert abs(info.frames - 24) <= 1
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert [s.codec for s in info.audio] == ["aac"]
    # Frame spacing is the source's (24000/1001 fps), not a rounded rate.
    assert np.diff(frame_times(dst)) == pytest.approx(1001 / 24000, abs=1e-4)


@pytest.mark.parametrize("kind", ["text", "truncated", "audio_only", "missing"])
def test_bad_inputs_raise_and_leave_nothing(kind: str, clip: Path, translator, tmp_path: Path) -> None:
    src = tmp_path / f"bad_{kind}.mp4"
    if kind == "text":
        src.write_text("this is not a video\n")
    elif kind == "truncated":
        src.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    elif kind == "audio_only":
        src = tmp_path / "tone.m4a"
        ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(src))
    dst = tmp_path / "out.mp4"
    with pytest.raises(VideoError) as err:
        video.convert_video(src, dst, translator, temporal="off")
    msg = str(err.value)
    assert str(src.name) in msg
    assert {"text": "not a video", "truncated": "video", "audio_only": "no video stream",
            "missing": "does not exist"}[kind] in msg
    assert not dst.exists() and leftovers(tmp_path) == []


def test_truncated_faststart_file_converts_what_is_there_and_warns(clip: Path, translator, tmp_path: Path) -> None:
    whole = tmp_path / "fs.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(whole))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    r = video.convert_video(cut, tmp_path / "cut.out.mp4", translator, temporal="off")
    assert 0 < r.frames < 2 * FPS
    assert any("truncated" in w for w in r.warnings)
    assert r.partial and r.to_dict()["partial"] is True  # machine-readable, not only a sentence
    assert not video.convert_video(clip, tmp_path / "whole.out.mp4", translator, temporal="off").partial


def test_an_audio_file_with_cover_art_is_said_to_hold_no_video(tmp_path: Path) -> None:
    """Its cover picture is a video stream marked attached_pic: "has no video stream (only audio, video)"."""
    from video_helpers import ffmpeg

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "cover.png")
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", "-i", str(tmp_path / "cover.png"), "-map", "0", "-map", "1",
           "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(tmp_path / "song.m4a"))
    with pytest.raises(VideoError, match=r"has no video stream \(only audio\)"):
        video.probe_video(tmp_path / "song.m4a")


def test_a_quarter_turn_turns_the_pixel_aspect_ratio_too(tmp_path: Path) -> None:
    """120x120 pixels 4:3 wide, shown turned 90 degrees (a phone's display matrix): 120x160 on screen.
    The output is written upright, so its pixels are 3:4 wide; it kept 4:3 and came out 160x120."""
    import struct
    from fractions import Fraction

    import av

    path = tmp_path / "anamorphic.mp4"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = 120, 120, "yuv420p"
        v.codec_context.sample_aspect_ratio = Fraction(4, 3)
        for i in range(4):
            f = av.VideoFrame.from_ndarray(np.full((120, 120, 3), i * 10, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 12)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 4 + 4 + 20 + 8 + 8  # the track header's matrix: a 90 degree turn
    data[at:at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    info = video.probe_video(path)
    assert (info.width, info.height, info.sar) == (120, 120, (3, 4))
