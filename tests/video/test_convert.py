"""Converting videos (imgxlate.video.convert and .media): length, rate, size, audio, colours, cuts, containers, frames.

Clips made here with the FFmpeg binary of imageio-ffmpeg (an independent reference: imgxlate
itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from video_helpers import (
    FFMPEG,
    FPS,
    ffmpeg,
    frame_times,
    leftovers,
    read_png,
    stream_codecs,
)

from imgxlate import video
from imgxlate.errors import UsageError, VideoError


def test_frames_over_the_memory_budget_run_in_exact_tiles(clip: Path, tiny_pair: Path, tmp_path: Path) -> None:
    """Video frames get the memory an image of their size gets: a batch that does not fit the budget
    runs frame by frame, a frame that does not fit runs in exact tiles (a 4K frame needs ~8.5 GB whole
    with the bundled model). The frames are the batched whole run's (exact tiling: within one level)."""
    from imgxlate.options import ModelSpec
    from imgxlate.tiling.auto import TilingChoice, whole_need

    frames = np.stack([np.asarray(Image.fromarray(
        np.random.default_rng(i).integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((300, 260))) for i in range(3)])
    spec = ModelSpec(model=str(tiny_pair / "a2b.onnx"), device="cpu", threads=1, max_memory=64 << 30)
    batched = spec.load().translate_batch(frames)

    # a budget one frame fits and three do not: three whole runs of one frame, the same bytes
    ngf = 8  # the tiny pair's width (tests/tiny_generator.py)
    one, three = whole_need(260, 300, ngf), whole_need(260, 300, ngf, count=3)
    t = ModelSpec(model=spec.model, device="cpu", threads=1, max_memory=(one + three) // 2).load()
    runs: list[int] = []
    run_whole = t._run_whole
    t._run_whole = lambda x: (runs.append(len(x)), run_whole(x))[1]
    assert np.array_equal(t.translate_batch(frames), batched) and runs == [1, 1, 1]

    # a frame over the budget: exact tiles (128 px, maps kept in float32)
    t = spec.load()
    t.tiling_choice = lambda h, w, count=1: TilingChoice(128, "float32", 0, 0)
    tiles: list[tuple[int, int]] = []
    t.tile_progress = lambda done, total: tiles.append((done, total))
    tiled = t.translate_batch(frames)
    assert tiled.dtype == np.uint8 and int(np.abs(tiled.astype(int) - batched.astype(int)).max()) <= 1
    assert tiles and tiles[-1][0] == tiles[-1][1] > 1  # the exact tiler ran, in several tiles

    # the command takes the same budget (and backend) as convert, checked the same way
    def cli(memory: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgxlate", "video", str(clip), "--model",
                               str(tiny_pair / "a2b.onnx"), "--device", "cpu", "--backend", "onnxruntime",
                               "--max-memory", memory, "--temporal", "off", "--out", str(tmp_path / "t.mp4"), "-q"],
                              capture_output=True, text=True, timeout=300, check=False)

    r = cli("1M")
    assert r.returncode == 2 and "--max-memory" in r.stderr and not (tmp_path / "t.mp4").exists()
    r = cli("512M")
    assert r.returncode == 0, r.stderr
    assert video.probe_video(tmp_path / "t.mp4").frames == 2 * FPS


def test_convert_keeps_length_rate_size_audio(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    seen: list[tuple[int, int | None]] = []
    r = video.convert_video(clip, dst, translator, temporal="off", batch_size=3, frames_dir=tmp_path / "f",
                            progress=lambda d, t: seen.append((d, t)))
    assert r.status == "converted" and r.frames == 2 * FPS and r.audio == "copied"
    info = video.probe_video(dst)
    # yuv420p needs even sizes: the odd row and column are dropped, and a warning says so.
    assert (info.width, info.height) == (96, 60) == (r.width, r.height)
    assert any("yuv444p" in w and "97x61" in w for w in r.warnings), r.warnings
    assert info.frames == 2 * FPS
    assert info.fps == pytest.approx(FPS)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.has_audio
    assert info.duration == pytest.approx(2.0, abs=1 / FPS)
    assert frame_times(dst) == pytest.approx(frame_times(clip), abs=1e-3)
    assert seen[-1][0] == 2 * FPS
    assert leftovers(tmp_path) == []
    # The frames are the translator's output (batched as convert does it) ...
    frames_in = np.stack([f.rgb for f in video.read_frames(clip)])
    expect = translator.translate_batch(frames_in)
    pngs = np.stack([read_png(p) for p in sorted((tmp_path / "f").glob("frame_*.png"))])
    assert np.array_equal(pngs, expect)
    assert np.abs(pngs.astype(int) - frames_in).mean() > 10
    # ... and the video holds them, in order: the random model's output is pixel noise that 4:2:0 chroma
    # cannot hold, so compare luma (full resolution in 4:2:0), blurred over 4x4 blocks.
    frames_out = np.stack([f.rgb for f in video.read_frames(dst)])[:, :60, :96]

    def luma_blocks(x: np.ndarray) -> np.ndarray:
        y = x[..., :60, :96, :].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return y.reshape(len(x), 15, 4, 24, 4).mean(axis=(2, 4))

    assert np.abs(luma_blocks(frames_out) - luma_blocks(expect)).mean() < 4


def test_odd_size_kept_with_yuv444p(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "odd.mp4"
    r = video.convert_video(clip, dst, translator, temporal="off", duration=0.5, pix_fmt="yuv444p")
    info = video.probe_video(dst)
    assert (info.width, info.height, info.pix_fmt) == (97, 61, "yuv444p") and not r.warnings


def test_vfr_timestamps_kept(translator, tmp_path: Path) -> None:
    src = tmp_path / "vfr.mkv"
    # Irregular frame times: every odd frame 40% of a frame late.
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=64x48:r={FPS}:d=2", "-vf", f"settb=1/1000,setpts=(N+0.4*mod(N\\,2))/{FPS}/TB",
           "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-c:v", "libx264", str(src))
    dst = tmp_path / "vfr.out.mp4"
    r = video.convert_video(src, dst, translator, temporal="off")
    assert r.audio == "none"
    t_in, t_out = frame_times(src), frame_times(dst)
    assert len(t_out) == len(t_in) == 2 * FPS
    assert np.diff(t_in).std() > 0.01  # really variable
    assert t_out == pytest.approx(t_in, abs=1.5e-3)  # Matroska source: millisecond timestamps


def test_start_and_duration_cut_video_and_audio(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "part.mp4"
    r = video.convert_video(clip, dst, translator, start="0.5", duration=1, temporal="off")
    assert abs(r.frames - FPS) <= 1
    info = video.probe_video(dst)
    assert abs(info.frames - FPS) <= 1 and info.has_audio
    assert info.duration == pytest.approx(1.0, abs=2 / FPS)
    times = frame_times(dst)
    assert times[0] == pytest.approx(0.0, abs=1 / FPS)


def test_frames_dir_and_frames_only(clip: Path, translator, tmp_path: Path) -> None:
    fdir = tmp_path / "frames"
    r = video.convert_video(clip, tmp_path / "v.mp4", translator, temporal="off", frames_dir=fdir)
    assert r.status == "converted" and (tmp_path / "v.mp4").exists()
    pngs = sorted(fdir.glob("frame_*.png"))
    assert len(pngs) == 2 * FPS and pngs[0].name == "frame_000001.png"
    from PIL import Image

    assert Image.open(pngs[0]).size == (97, 61)  # frames keep the exact size (no even padding)
    only = tmp_path / "only"
    r = video.convert_video(clip, None, translator, temporal="off", frames_dir=only, frames_only=True)
    assert r.dst is None and len(list(only.glob("*.png"))) == 2 * FPS
    assert video.convert_video(clip, None, translator, frames_dir=only, frames_only=True).status == "skipped"
    with pytest.raises(UsageError):
        video.convert_video(clip, None, translator, frames_only=True)


def test_existing_output_skipped_unless_overwrite(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "exists.mp4"
    dst.write_bytes(b"keep me")
    r = video.convert_video(clip, dst, translator, temporal="off", duration=0.5)
    assert r.status == "skipped" and dst.read_bytes() == b"keep me"
    r = video.convert_video(clip, dst, translator, temporal="off", duration=0.5, overwrite=True)
    assert r.status == "converted" and video.probe_video(dst).frames == FPS // 2


def test_output_is_never_the_input(clip: Path, translator) -> None:
    with pytest.raises(UsageError):
        video.convert_video(clip, clip, translator, overwrite=True)


def test_rotated_input_is_written_upright_once(clip: Path, translator, tmp_path: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated))
    dst = tmp_path / "rot.out.mp4"
    video.convert_video(rotated, dst, translator, temporal="off", duration=0.5)
    info = video.probe_video(dst)
    assert info.rotation == 0 and (info.width, info.height) == (60, 96)
    # upright the same way FFmpeg's autorotation turns it (reference: the FFmpeg binary)
    ref = subprocess.run([FFMPEG, "-v", "error", "-i", str(rotated), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True).stdout
    first = next(iter(video.read_frames(rotated))).rgb
    assert first.shape == (97, 61, 3)
    assert np.abs(first.astype(int) - np.frombuffer(ref, np.uint8).reshape(97, 61, 3)).mean() < 2


def test_mkv_output_keeps_subtitles(clip: Path, translator, tmp_path: Path) -> None:
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n")
    with_subs = tmp_path / "subs.mkv"
    ffmpeg("-i", str(clip), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", str(with_subs))
    for name in ("subs.out.mkv", "subs.out.mp4"):
        dst = tmp_path / name
        video.convert_video(with_subs, dst, translator, temporal="off", duration=0.5)
        kinds = stream_codecs(dst)
        assert any(k.startswith("Audio") for k in kinds) and any(k.startswith("Subtitle") for k in kinds), kinds


def test_webm_needs_a_webm_codec(clip: Path, translator, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="libvpx-vp9"):
        video.convert_video(clip, tmp_path / "x.webm", translator)


def test_default_output_names(tmp_path: Path) -> None:
    src = tmp_path / "my clip.mov"
    assert video.default_output(src, "vangogh") == tmp_path / "my clip.vangogh.mp4"
    assert video.default_output(src, "van gogh/x", tmp_path / "o") == tmp_path / "o" / "my clip.van_gogh_x.mp4"
    assert video.default_output(src, "vangogh", tmp_path / "x.mkv") == tmp_path / "x.mkv"


def test_missing_encoder_refused_before_any_work(clip: Path, tmp_path: Path) -> None:
    class Boom:
        default_batch_size = 1

        def translate_batch(self, x):  # the model must never run
            raise AssertionError("translated before refusing the encoder")

    for codec in ("h264_nosuch", "aac"):
        with pytest.raises(UsageError, match="encoder"):
            video.convert_video(clip, tmp_path / "x.mp4", Boom(), codec=codec)
    with pytest.raises(UsageError, match="libvpx-vp9"):
        video.convert_video(clip, tmp_path / "x.webm", Boom())
    assert list(tmp_path.iterdir()) == []


class _Identity:
    default_batch_size = 1

    def translate_batch(self, x: np.ndarray) -> np.ndarray:
        return x


@pytest.mark.parametrize("tag", ["bt709", "untagged"])
def test_colours_survive_the_round_trip(tag: str, tmp_path: Path) -> None:
    """An identity 'model': what comes out looks like what went in, read back by the FFmpeg binary."""
    src = tmp_path / f"{tag}.mp4"
    extra = ["-colorspace", "bt709", "-vf", "scale=out_color_matrix=bt709"] if tag == "bt709" else []
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=128x96:r=12:d=0.5", *extra, "-c:v", "libx264", "-crf", "10", str(src))
    dst = tmp_path / "out.mp4"
    video.convert_video(src, dst, _Identity(), temporal="off", crf=10)

    def rgb(p: Path) -> np.ndarray:
        raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(p), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.uint8).reshape(-1, 96, 128, 3).astype(int)

    a, b = rgb(src), rgb(dst)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 2.6  # FFmpeg's own yuv -> rgb -> yuv round trip: 2.0 on this pattern
    assert np.abs((a - b).mean(axis=(0, 1, 2))).max() < 1.0  # no colour cast (a wrong matrix gives several)
    assert video.probe_video(dst).color_codes[1] == video.probe_video(src).color_codes[1]


def test_webm_output_reencodes_aac_as_opus(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "w.webm"
    r = video.convert_video(clip, dst, translator, codec="libvpx-vp9", temporal="off", duration=0.5)
    info = video.probe_video(dst)
    assert info.codec == "vp9" and [a.codec for a in info.audio] == ["opus"]
    assert r.audio == "re-encoded (libopus)" and any("re-encoded" in w for w in r.warnings)
    assert info.frames == FPS // 2 or len(frame_times(dst)) == FPS // 2


def test_frames_per_model_run_follow_the_device(clip: Path, translator, tmp_path: Path, monkeypatch) -> None:
    """Without a batch size, frames go one at a time on the CPU (batches are slower per frame there)
    and up to 4 at a time on CUDA: Translator.default_batch_size, the rule `imgxlate convert` uses too."""
    sizes: list[int] = []
    run = translator.translate_batch
    monkeypatch.setattr(translator, "translate_batch", lambda frames: (sizes.append(len(frames)), run(frames))[1])
    assert translator.default_batch_size == 1
    r = video.convert_video(clip, tmp_path / "cpu.mp4", translator, temporal="off", duration=0.4)
    assert r.status == "converted" and sizes and set(sizes) == {1}
    monkeypatch.setattr(type(translator.engine), "on_cuda", property(lambda self: True))
    assert translator.default_batch_size == 4  # (how many a run gets also depends on the reader's pace)


def test_a_frames_dir_holding_other_frames_is_not_overwritten(clip: Path, translator, tmp_path: Path) -> None:
    """--frames-dir with another conversion's frames: refused; with overwrite, emptied of them first,
    so a shorter video does not leave the old frames after its own."""
    fdir = tmp_path / "frames"
    first = video.convert_video(clip, tmp_path / "a.mp4", translator, temporal="off", duration=0.5, frames_dir=fdir)
    assert first.frames == len(list(fdir.iterdir())) > 3
    kept = (fdir / "frame_000001.png").read_bytes()
    with pytest.raises(VideoError, match="already holds frames"):
        video.convert_video(clip, tmp_path / "b.mp4", translator, temporal="off", duration=0.2, frames_dir=fdir)
    assert (fdir / "frame_000001.png").read_bytes() == kept and not (tmp_path / "b.mp4").exists()
    short = video.convert_video(clip, tmp_path / "b.mp4", translator, temporal="off", duration=0.2, frames_dir=fdir,
                                overwrite=True)
    assert sorted(p.name for p in fdir.iterdir()) == [f"frame_{i + 1:06d}.png" for i in range(short.frames)]
    # the same with --frames-only
    video.convert_video(clip, None, translator, temporal="off", duration=0.5, frames_dir=fdir, frames_only=True,
                        overwrite=True)
    shorter = video.convert_video(clip, None, translator, temporal="off", duration=0.1, frames_dir=fdir,
                                  frames_only=True, overwrite=True)
    frames = sorted(p.name for p in fdir.iterdir() if p.name != video.convert.FRAMES_MARK)  # the resume mark
    assert frames == [f"frame_{i + 1:06d}.png" for i in range(shorter.frames)]
