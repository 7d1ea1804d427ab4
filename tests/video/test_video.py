"""imgxlate.video / `imgxlate video`: clips made here with the bundled FFmpeg, a tiny random model."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from imgxlate import video
from imgxlate.errors import UsageError, VideoError
from imgxlate.video.ffmpeg import _pad_even
from imgxlate.video.stabilize import _mean_abs_diff

FPS = 12


def ffmpeg(*args: str) -> None:
    subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


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
        [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
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
    text = subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
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


def test_convert_keeps_length_rate_size_audio(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    seen: list[tuple[int, int | None]] = []
    r = video.convert_video(clip, dst, translator, stabilize=False, batch_size=3, frames_dir=tmp_path / "f",
                            progress=lambda d, t: seen.append((d, t)))
    assert r.status == "converted" and r.frames == 2 * FPS and r.audio == "copied"
    info = video.probe_video(dst)
    # Odd sizes are padded by one repeated pixel (yuv420p needs even sizes).
    assert (info.width, info.height) == (98, 62)
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


def test_stabilized_conversion_is_faithful_and_calmer(clip: Path, translator, tmp_path: Path) -> None:
    r = video.convert_video(clip, tmp_path / "s.mp4", translator, stabilize=True, frames_dir=tmp_path / "f",
                            frames_only=True)
    assert r.stabilized and r.frames == 2 * FPS
    frames_in = [f.rgb for f in video.read_frames(clip)]
    stable = [read_png(p) for p in sorted((tmp_path / "f").glob("frame_*.png"))]
    plain = list(translator.translate_batch(np.stack(frames_in)))
    assert len(stable) == len(plain) == 2 * FPS
    # Faithful: smoothing the statistics changes the picture only a little.
    assert _mean_abs_diff(stable, plain) < 8
    assert video.flicker_ratio(frames_in, stable) <= video.flicker_ratio(frames_in, plain) * 1.05


def test_vfr_timestamps_kept(translator, tmp_path: Path) -> None:
    src = tmp_path / "vfr.mkv"
    # Irregular frame times: every odd frame 40% of a frame late.
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=64x48:r={FPS}:d=2", "-vf", f"settb=1/1000,setpts=(N+0.4*mod(N\\,2))/{FPS}/TB",
           "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-c:v", "libx264", str(src))
    dst = tmp_path / "vfr.out.mp4"
    r = video.convert_video(src, dst, translator, stabilize=False)
    assert r.audio == "none"
    t_in, t_out = frame_times(src), frame_times(dst)
    assert len(t_out) == len(t_in) == 2 * FPS
    assert np.diff(t_in).std() > 0.01  # really variable
    assert t_out == pytest.approx(t_in, abs=1.5e-3)  # Matroska source: millisecond timestamps


def test_start_and_duration_cut_video_and_audio(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "part.mp4"
    r = video.convert_video(clip, dst, translator, start="0.5", duration=1, stabilize=False)
    assert abs(r.frames - FPS) <= 1
    info = video.probe_video(dst)
    assert abs(info.frames - FPS) <= 1 and info.has_audio
    assert info.duration == pytest.approx(1.0, abs=2 / FPS)
    times = frame_times(dst)
    assert times[0] == pytest.approx(0.0, abs=1 / FPS)


def test_frames_dir_and_frames_only(clip: Path, translator, tmp_path: Path) -> None:
    fdir = tmp_path / "frames"
    r = video.convert_video(clip, tmp_path / "v.mp4", translator, stabilize=False, frames_dir=fdir)
    assert r.status == "converted" and (tmp_path / "v.mp4").exists()
    pngs = sorted(fdir.glob("frame_*.png"))
    assert len(pngs) == 2 * FPS and pngs[0].name == "frame_000001.png"
    from PIL import Image

    assert Image.open(pngs[0]).size == (97, 61)  # frames keep the exact size (no even padding)
    only = tmp_path / "only"
    r = video.convert_video(clip, None, translator, stabilize=False, frames_dir=only, frames_only=True)
    assert r.dst is None and len(list(only.glob("*.png"))) == 2 * FPS
    assert video.convert_video(clip, None, translator, frames_dir=only, frames_only=True).status == "skipped"
    with pytest.raises(UsageError):
        video.convert_video(clip, None, translator, frames_only=True)


def test_existing_output_skipped_unless_overwrite(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "exists.mp4"
    dst.write_bytes(b"keep me")
    r = video.convert_video(clip, dst, translator, stabilize=False, duration=0.5)
    assert r.status == "skipped" and dst.read_bytes() == b"keep me"
    r = video.convert_video(clip, dst, translator, stabilize=False, duration=0.5, overwrite=True)
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
        video.convert_video(src, dst, translator, stabilize=False)
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
    r = video.convert_video(cut, tmp_path / "cut.out.mp4", translator, stabilize=False)
    assert 0 < r.frames < 2 * FPS
    assert any("truncated" in w for w in r.warnings)


def test_interrupt_leaves_nothing(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "int.mp4"

    def stop(done: int, total: int | None) -> None:
        if done >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, stabilize=False, batch_size=1, progress=stop)
    assert not dst.exists() and leftovers(tmp_path) == []


def test_rotated_input_is_written_upright_once(clip: Path, translator, tmp_path: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated))
    dst = tmp_path / "rot.out.mp4"
    video.convert_video(rotated, dst, translator, stabilize=False, duration=0.5)
    info = video.probe_video(dst)
    assert info.rotation == 0 and (info.width, info.height) == (62, 98)


def test_mkv_output_keeps_subtitles(clip: Path, translator, tmp_path: Path) -> None:
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n")
    with_subs = tmp_path / "subs.mkv"
    ffmpeg("-i", str(clip), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", str(with_subs))
    for name in ("subs.out.mkv", "subs.out.mp4"):
        dst = tmp_path / name
        video.convert_video(with_subs, dst, translator, stabilize=False, duration=0.5)
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


def test_stats_smoother_ema_and_cuts() -> None:
    s = video.StatsSmoother(momentum=0.5, cut_threshold=1.0)
    one, two = np.ones(3), np.full(3, 2.0)
    m, v = s(0, one, one)
    assert np.allclose(m, 1) and np.allclose(v, 1)
    s(1, one * 10, one)
    # Next frame, a small change at layer 0: averaged, not reset.
    m, v = s(0, one * 1.4, two)
    assert np.allclose(m, 1.2) and np.allclose(v, 1.5) and s.cuts == 0
    m, _ = s(1, one * 20, one)
    assert np.allclose(m, 15.0)
    # A jump of many running standard deviations at layer 0 is a scene cut: everything restarts.
    m, v = s(0, one * 9, one)
    assert np.allclose(m, 9) and s.cuts == 1
    m, _ = s(1, one * 3, one)
    assert np.allclose(m, 3)


def test_pad_even_repeats_edges() -> None:
    a = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    p = _pad_even(a)
    assert p.shape == (4, 6, 3)
    assert np.array_equal(p[:3, :5], a) and np.array_equal(p[3, :5], a[2]) and np.array_equal(p[:3, 5], a[:, 4])
    assert _pad_even(p) is p


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
            "--no-stabilize", "--out", str(tmp_path / "out")]
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
    r = video.convert_video(src, dst, translator, start=1.0, duration=1.0, stabilize=False)
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
