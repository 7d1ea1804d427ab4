"""imgxlate.video / `imgxlate video`: clips made here with the FFmpeg binary of imageio-ffmpeg (an
independent reference: imgxlate itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgxlate import video
from imgxlate.errors import UsageError, VideoError

FPS = 12
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the tests' reference FFmpeg comes from imageio-ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *extra: str, size: str = "97x61", seconds: float = 2.0, audio: bool = True) -> Path:
    """testsrc2 pattern (+ sine tone), odd size, H.264 4:4:4 (4:2:0 cannot hold odd sizes)."""
    w, h = size.split("x")
    args = ["-f", "lavfi", "-i", f"testsrc2=s=128x96:r={FPS}:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}"]
    args += ["-vf", f"format=yuv444p,crop={w}:{h}:0:0", "-c:v", "libx264", "-pix_fmt", "yuv444p"]
    if audio:
        args += ["-c:a", "aac"]
    ffmpeg(*args, *extra, str(path))
    return path


def frame_times(path: Path) -> list[float]:
    """Presentation times of the video frames, read with FFmpeg's framecrc (independent of imgxlate)."""
    out = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-f", "framecrc", "-"], capture_output=True, check=True, text=True,
    ).stdout
    tb = Fraction(1)
    times = []
    for line in out.splitlines():
        m = re.match(r"#tb 0: (\d+)/(\d+)", line)
        if m:
            tb = Fraction(int(m.group(1)), int(m.group(2)))
        elif line and not line.startswith("#"):
            pts = int(line.split(",")[2])
            times.append(float(pts * tb))
    return sorted(times)


def stream_codecs(path: Path) -> list[str]:
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, check=False).stderr
    return re.findall(r"Stream #0:\d+.*?: (\w+: \w+)", text)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".imgxlate-tmp"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "test clip.mp4")


@pytest.fixture(scope="module")
def translator(tiny_pair: Path):
    from imgxlate.translator import load_model

    return load_model(str(tiny_pair / "a2b.onnx"), device="cpu", threads=1)


# ------------------------------------------------------------------------------------------ probing


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
    for bad in ("abc", "-1", "1:", "1:75:00"):
        with pytest.raises(UsageError):
            video.parse_time(bad)


# ------------------------------------------------------------------------------------------ conversion


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


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_flow_conversion_is_the_stabiliser_applied_to_the_per_frame_output(clip: Path, translator,
                                                                          tmp_path: Path) -> None:
    r = video.convert_video(clip, None, translator, temporal="flow", frames_dir=tmp_path / "f", frames_only=True)
    assert r.temporal == "flow" and r.frames == 2 * FPS
    frames_in = [f.rgb for f in video.read_frames(clip)]
    stable = [read_png(p) for p in sorted((tmp_path / "f").glob("frame_*.png"))]
    plain = list(translator.translate_batch(np.stack(frames_in)))
    stab = video.FlowStabilizer()
    expect = [stab(x, y) for x, y in zip(frames_in, plain)]
    assert len(stable) == 2 * FPS
    assert all(np.array_equal(a, b) for a, b in zip(stable, expect))
    assert video.flicker_ratio(frames_in, stable) < video.flicker_ratio(frames_in, plain)


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


def test_interrupt_leaves_nothing(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "int.mp4"

    def stop(done: int, total: int | None) -> None:
        if done >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, temporal="off", batch_size=1, progress=stop)
    assert not dst.exists() and leftovers(tmp_path) == []


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


# ------------------------------------------------------------------------------------------ stability


def test_flicker_ratio() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (4, 5, 3)).astype(np.uint8) for _ in range(5)]
    assert video.flicker_ratio(frames, frames) == pytest.approx(1.0)
    const = [np.full((4, 5, 3), 7, np.uint8)] * 5
    assert video.flicker_ratio(frames, const) == 0.0
    doubled = [f.astype(np.float64) * 2 for f in frames]
    assert video.flicker_ratio(frames, doubled) == pytest.approx(2.0)
    with pytest.raises(UsageError):
        video.flicker_ratio(frames[:1], frames[:1])


def test_static_flicker_counts_only_unchanged_pixels() -> None:
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 100  # one pixel of the input changes
    out_a = np.zeros((2, 2, 3), np.uint8)
    out_b = np.full((2, 2, 3), 4, np.uint8)  # the whole output moves by 4
    out_b[0, 0] = 200
    assert video.static_flicker([a, b], [out_a, out_b]) == pytest.approx(4.0)
    assert video.static_flicker([a, a], [out_a, out_a]) == 0.0


def test_default_output_names(tmp_path: Path) -> None:
    src = tmp_path / "my clip.mov"
    assert video.default_output(src, "vangogh") == tmp_path / "my clip.vangogh.mp4"
    assert video.default_output(src, "van gogh/x", tmp_path / "o") == tmp_path / "o" / "my clip.van_gogh_x.mp4"
    assert video.default_output(src, "vangogh", tmp_path / "x.mkv") == tmp_path / "x.mkv"


# ------------------------------------------------------------------------------------------ CLI


def _app():
    from imgxlate.cli.app import app

    return app


def test_cli_batch_exit_codes(clip: Path, tiny_pair: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    folder = tmp_path / "in"
    folder.mkdir()
    good = folder / "good.mp4"
    good.write_bytes(clip.read_bytes())
    (folder / "broken.mov").write_text("nope")
    runner = CliRunner()
    args = ["video", str(folder), "--model", str(tiny_pair / "a2b.onnx"), "--device", "cpu", "--duration", "0.5",
            "--temporal", "off", "--out", str(tmp_path / "out")]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 1, res.output
    assert (tmp_path / "out" / "good.zebra.mp4").exists()
    assert "broken.mov" in res.output
    (folder / "broken.mov").unlink()
    res = runner.invoke(_app(), args)  # rerun: the existing output is skipped, nothing failed
    assert res.exit_code == 0, res.output and "skipped" in res.output
    res = runner.invoke(_app(), ["video", str(good), "--model", str(tiny_pair / "a2b.onnx"), "--frames-only"])
    assert res.exit_code == 2
    res = runner.invoke(_app(), ["video", str(tmp_path / "nope.mp4"), "--model", str(tiny_pair / "a2b.onnx")])
    assert res.exit_code == 2 and "does not exist" in res.output


# ------------------------------------------------------------------------------------------ real clip


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


# ------------------------------------------------------------------------------------------ flow stabiliser


def _scene(i: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A textured background panning 2 px per frame with a bright square moving 3 px per frame."""
    rng = np.random.default_rng(seed)
    import cv2

    world = cv2.resize(rng.integers(0, 255, (h // 4, (w + 200) // 4, 3)).astype(np.uint8), (w + 200, h),
                       interpolation=cv2.INTER_CUBIC)
    f = world[:, 2 * i:2 * i + w].copy()
    x = 5 + 3 * i
    f[15:30, x:x + 15] = (250, 240, 30)
    return f


def test_flow_stabiliser_removes_flicker_without_ghosting() -> None:
    rng = np.random.default_rng(1)
    inputs = [_scene(i) for i in range(12)]
    clean = [255 - x for x in inputs]  # a translation that is consistent over time ...
    noisy = [np.clip(c.astype(int) + rng.integers(-20, 21, c.shape), 0, 255).astype(np.uint8) for c in clean]
    stab = video.FlowStabilizer()
    stable = [stab(x, y) for x, y in zip(inputs, noisy)]  # ... plus per-frame noise (the flicker)
    assert np.array_equal(stable[0], noisy[0])
    assert video.flicker_ratio(inputs, stable) < video.flicker_ratio(inputs, noisy)
    # The per-frame noise is averaged away along the motion: the stable frames are nearer the clean ones.
    err = [np.abs(a.astype(int) - c).mean() for a, c in zip(stable[4:], clean[4:])]
    err_noisy = [np.abs(a.astype(int) - c).mean() for a, c in zip(noisy[4:], clean[4:])]
    assert np.mean(err) < 0.75 * np.mean(err_noisy)
    # No ghosting: the moving square and the panning background stay where the input has them.
    assert video.moving_psnr(inputs, stable, clean) > video.moving_psnr(inputs, noisy, clean) - 1
    assert video.moving_psnr(inputs, stable, clean) > 25
    assert stab.cuts == 0
    assert video.warp_error(inputs, stable) < 0.75 * video.warp_error(inputs, noisy)


def test_warp_error_ignores_motion_and_sees_flicker() -> None:
    inputs = [_scene(i) for i in range(6)]
    consistent = [255 - x for x in inputs]  # moves with the content: no flicker
    rng = np.random.default_rng(3)
    flickering = [np.clip(c.astype(int) + rng.integers(-15, 16, c.shape), 0, 255).astype(np.uint8) for c in consistent]
    assert video.warp_error(inputs, consistent) < 3
    assert video.warp_error(inputs, flickering) > 3 * video.warp_error(inputs, consistent)


def test_flow_stabiliser_restarts_at_a_scene_cut() -> None:
    a = [_scene(i, seed=0) for i in range(4)]
    b = [_scene(i, seed=7)[::-1] for i in range(3)]
    stab = video.FlowStabilizer()
    outs = [stab(x, 255 - x) for x in a + b]
    assert stab.cuts == 1
    assert np.array_equal(outs[4], 255 - b[0])  # nothing of the old scene is blended into the new one
    state = stab.get_state()
    again = video.FlowStabilizer()
    again.set_state(state)
    nxt = _scene(3, seed=7)[::-1]
    assert np.array_equal(again(nxt, 255 - nxt), stab(nxt, 255 - nxt))


def test_moving_psnr_only_counts_moving_pixels() -> None:
    still = np.zeros((4, 4, 3), np.uint8)
    moved = still.copy()
    moved[0, 0] = 200
    a = [still, moved]
    out_a = [still, moved]
    out_b = [still, moved.copy()]
    out_b[1][3, 3] = 90  # differs where the input did not move: not counted
    assert video.moving_psnr(a, out_a, out_b) == float("inf")
    out_b[1][0, 0] = 190
    assert video.moving_psnr(a, out_a, out_b) == pytest.approx(10 * np.log10(255**2 / 100))
    assert np.isnan(video.moving_psnr([still, still], [still, still], [still, still]))


# ------------------------------------------------------------------------------------------ resume, refusals


def _pngs(folder: Path) -> list[np.ndarray]:
    return [read_png(p) for p in sorted(folder.glob("frame_*.png"))]


def test_interrupted_video_resumes_where_it_stopped(clip: Path, translator, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    video.convert_video(clip, tmp_path / "whole.mp4", translator, frames_dir=whole, segment_seconds=0.25)
    dst = tmp_path / "res.mp4"
    part = tmp_path / "part"

    def stop(done: int, total: int | None) -> None:
        if done >= 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, batch_size=1, progress=stop, frames_dir=part, segment_seconds=0.25)
    parts = tmp_path / ".imgxlate-parts-res.mp4"
    assert not dst.exists() and parts.is_dir() and leftovers(tmp_path) == []
    kept = sum(s["frames"] for s in __import__("json").loads((parts / "manifest.json").read_text())["segments"])
    assert kept >= 9  # Ctrl-C closed the segment being written: the translated frames are kept
    r = video.convert_video(clip, dst, translator, frames_dir=part, segment_seconds=0.25)
    assert r.status == "converted" and r.resumed_frames == kept and r.frames == 2 * FPS
    assert not parts.exists() and leftovers(tmp_path) == []
    assert frame_times(dst) == pytest.approx(frame_times(clip), abs=1e-3)
    assert video.probe_video(dst).has_audio
    # The stabiliser's state was saved with the segments: the resumed frames are the uninterrupted ones.
    got, expect = _pngs(part), _pngs(whole)
    assert len(got) == len(expect) == 2 * FPS
    assert all(np.array_equal(a, b) for a, b in zip(got, expect))


def test_parts_of_other_settings_are_discarded(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "d.mp4"

    def stop(done: int, total: int | None) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, batch_size=1, progress=stop, segment_seconds=0.25)
    r = video.convert_video(clip, dst, translator, crf=30, segment_seconds=0.25)
    assert r.resumed_frames == 0 and any("discarded" in w for w in r.warnings)
    assert video.probe_video(dst).frames == 2 * FPS


def test_still_image_is_not_a_video(translator, tmp_path: Path) -> None:
    from PIL import Image

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


def test_no_child_process_is_started(clip: Path, translator, tmp_path: Path, monkeypatch) -> None:
    import subprocess as sp

    def refuse(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args[:1]}")

    monkeypatch.setattr(sp, "Popen", refuse)
    r = video.convert_video(clip, tmp_path / "np.mkv", translator, duration=0.5)
    assert r.status == "converted"


def test_cli_refusals_come_before_the_model(clip: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    no_model = str(tmp_path / "no-such-model.onnx")  # loading it would fail: these must fail first
    res = runner.invoke(_app(), ["video", str(tmp_path / "nosuch.mp4"), "--model", no_model])
    assert res.exit_code == 2 and "does not exist" in res.output and "model" not in res.output.lower()
    res = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--codec", "h264_nvenc_nosuch"])
    assert res.exit_code == 2 and "encoder" in res.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--out", str(afile / "o.mp4")])
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output
    png = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(png)
    res = runner.invoke(_app(), ["video", str(png), "--model", no_model])
    assert res.exit_code == 1 and "not a video" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "img.png"]


def test_cli_out_file_json_quiet(clip: Path, tiny_pair: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    out = tmp_path / "chosen name.mkv"
    res = CliRunner().invoke(_app(), ["video", str(clip), "--model", str(tiny_pair / "a2b.onnx"), "--device", "cpu",
                                      "--duration", "0.5", "--out", str(out), "--json", "-q",
                                      "--temporal", "flow"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{"):])
    assert data["totals"]["converted"] == 1 and data["results"][0]["dst"] == str(out)
    assert data["results"][0]["temporal"] == "flow" and data["results"][0]["frames"] == FPS // 2
    assert out.exists() and video.probe_video(out).frames == FPS // 2


def test_cli_fifo_in_a_folder_is_skipped_with_its_reason_and_does_not_hang(
    clip: Path, tiny_pair: Path, tmp_path: Path
) -> None:
    """As in convert: the walk never opens a FIFO; it is reported as skipped, the others convert."""
    import os
    import sys

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(clip.read_bytes())
    os.mkfifo(folder / "pipe.mp4")
    proc = subprocess.run([sys.executable, "-m", "imgxlate", "video", str(folder), "--model", str(tiny_pair / "a2b.onnx"),
                           "--device", "cpu", "--duration", "0.5", "--temporal", "off", "--out", str(tmp_path / "out")],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stderr and "pipe.mp4" in proc.stderr and "named pipe" in proc.stderr
    assert (tmp_path / "out" / "good.zebra.mp4").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.zebra.mp4"]


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


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_cli_stop_signal_keeps_segments_and_the_rerun_continues(tiny_pair: Path, tmp_path: Path, sig: str) -> None:
    """A real SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler) to the real command: exit 128 + the
    signal, nothing at the target, the rerun resumes."""
    import json
    import signal
    import sys
    import time

    src = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=160x120:r={FPS}:d=30", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src))
    dst = tmp_path / "long.out.mp4"
    parts = tmp_path / ".imgxlate-parts-long.out.mp4"
    cmd = [sys.executable, "-m", "imgxlate", "video", str(src), "--model", str(tiny_pair / "a2b.onnx"), "--device",
           "cpu", "--threads", "1", "--batch-size", "1", "--out", str(dst)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (parts / "manifest.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the conversion finished before it could be interrupted")
    signum = getattr(signal, sig)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "run the same command again" in err
    assert not dst.exists() and leftovers(tmp_path) == []
    kept = sum(s["frames"] for s in json.loads((parts / "manifest.json").read_text())["segments"])
    assert kept >= 4 * FPS  # at least the first 4 s segment
    rerun = subprocess.run(cmd + ["--json", "-q"], capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr
    r = json.loads(rerun.stdout)["results"][0]
    assert r["resumed_frames"] == kept and r["frames"] == 30 * FPS
    assert len(frame_times(dst)) == 30 * FPS and not parts.exists()


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


def test_a_second_conversion_to_the_same_target_is_refused_while_the_first_runs(clip: Path, translator,
                                                                                  tmp_path: Path) -> None:
    """Two runs on one output (a script started twice) used to delete each other's parts and both crash;
    the second is now refused at once and the first's parts are left alone."""
    from imgxlate.video.segments import parts_dir, target_lock

    dst = tmp_path / "same.mp4"
    parts = parts_dir(dst)
    parts.mkdir()
    (parts / "seg_000000.seg").write_bytes(b"the first run's segment")
    with target_lock(dst):  # the first run, holding the target
        with pytest.raises(VideoError, match="another imgxlate is writing"):
            video.convert_video(clip, dst, translator, temporal="off", duration=0.5)
        assert (parts / "seg_000000.seg").read_bytes() == b"the first run's segment"
    r = video.convert_video(clip, dst, translator, temporal="off", duration=0.5)  # free again
    assert r.status == "converted" and dst.is_file() and leftovers(tmp_path) == []


def test_a_file_in_the_way_of_the_parts_folder_fails_that_video_with_a_message(clip: Path, tiny_pair: Path,
                                                                                 tmp_path: Path) -> None:
    """An OSError no code expected (a file where the parts folder goes) is that video's failure, with
    the path and the reason, in the JSON summary too; before, a traceback and an empty stdout."""
    import json

    dst = tmp_path / "pf.mp4"
    (tmp_path / ".imgxlate-parts-pf.mp4").write_text("in the way")
    proc = subprocess.run([sys.executable, "-m", "imgxlate", "video", str(clip), "--model", str(tiny_pair / "a2b.onnx"),
                           "--device", "cpu", "--threads", "1", "--duration", "0.3", "--out", str(dst), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["totals"]["failed"] == 1 and ".imgxlate-parts-pf.mp4" in summary["results"][0]["reason"]
    assert not dst.exists()


def test_encoder_settings_and_output_names_are_checked_before_any_work(clip: Path, tiny_pair: Path,
                                                                        tmp_path: Path) -> None:
    """A preset x264 does not have, a --crf past x264's 0-51, an output named as a video the tool cannot
    write (.avi used to become a folder) and an output that is the input (used to be "skipped: output
    exists") are usage errors, exit 2, before the model loads; nothing is written."""
    from imgxlate.video.media import check_encoder

    with pytest.raises(UsageError, match="--preset 'fastest'"):
        check_encoder("libx264", ".mp4", "yuv420p", 23, "fastest")
    with pytest.raises(UsageError, match="0 to 51"):
        check_encoder("libx265", ".mp4", "yuv420p", 55, "medium")
    check_encoder("libx264", ".mp4", "yuv420p", 51, "veryslow")  # the limits themselves are fine
    base = [sys.executable, "-m", "imgxlate", "video", "--model", str(tiny_pair / "a2b.onnx"), "--device", "cpu"]
    for extra, says in ((["--out", str(tmp_path / "c.mp4"), "--preset", "fastest"], "--preset"),
                        (["--out", str(tmp_path / "c.mp4"), "--crf", "60"], "--crf 60"),
                        (["--out", str(tmp_path / "res.avi")], "not .avi"),
                        (["--out", str(clip)], "is the input itself")):
        proc = subprocess.run([*base, str(clip), *extra], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2 and says in proc.stderr, (extra, proc.returncode, proc.stderr)
    assert list(tmp_path.iterdir()) == []


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
    assert sorted(p.name for p in fdir.iterdir()) == [f"frame_{i + 1:06d}.png" for i in range(shorter.frames)]


def test_a_full_disk_keeps_the_finished_segments_and_the_rerun_continues(clip: Path, translator,
                                                                          tmp_path: Path) -> None:
    """The disk fills up while the last segment is written (on a real small tmpfs): the error says the
    disk is full and to run the command again, the finished segments stay (they were deleted, so
    "run again to continue" was not true), and once there is room the rerun continues from them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fault_fs import fill, small_tmpfs

    from imgxlate._atomic import is_disk_full
    from imgxlate.video.segments import parts_dir

    with small_tmpfs(tmp_path / "small", 4096) as small:
        dst = small / "full.mp4"

        def fill_at_the_end(done: int, total: int | None) -> None:
            if total and done == total and not (small / "filler").exists():
                fill(small, 0)

        with pytest.raises((VideoError, OSError)) as info:
            video.convert_video(clip, dst, translator, temporal="off", segment_seconds=0.5, progress=fill_at_the_end)
        assert is_disk_full(info.value) and "disk" in str(info.value) and "again" in str(info.value)
        kept = json.loads((parts_dir(dst) / "manifest.json").read_text())["segments"]
        assert kept and not dst.exists()
        (small / "filler").unlink()
        r = video.convert_video(clip, dst, translator, temporal="off", segment_seconds=0.5)
        assert r.status == "converted" and r.resumed_frames == sum(s["frames"] for s in kept) > 0
        assert len(frame_times(dst)) == r.frames and not parts_dir(dst).exists()
