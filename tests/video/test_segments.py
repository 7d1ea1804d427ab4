"""Resumable output (imgxlate.video.segments): stops, resumes, discarded parts, one conversion per target, a full disk.

Clips made here with the FFmpeg binary of imageio-ffmpeg (an independent reference: imgxlate
itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from video_helpers import (
    FPS,
    _pngs,
    ffmpeg,
    frame_times,
    leftovers,
    stop_at,
)

from imgxlate import video
from imgxlate.errors import VideoError


def test_interrupt_leaves_nothing(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "int.mp4"

    stop = stop_at(5)
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, temporal="off", batch_size=1, progress=stop)
    assert not dst.exists() and leftovers(tmp_path) == []


def test_interrupted_video_resumes_where_it_stopped(clip: Path, translator, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    video.convert_video(clip, tmp_path / "whole.mp4", translator, frames_dir=whole, segment_seconds=0.25)
    dst = tmp_path / "res.mp4"
    part = tmp_path / "part"

    stop = stop_at(9)
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, batch_size=1, progress=stop, frames_dir=part, segment_seconds=0.25)
    parts = tmp_path / ".imgxlate-parts-res.mp4"
    assert not dst.exists() and parts.is_dir() and leftovers(tmp_path) == []
    kept = sum(s["frames"] for s in __import__("json").loads((parts / "manifest.json").read_text())["segments"])
    assert kept >= 9  # Ctrl-C closed the segment being written: the translated frames are kept
    r = video.convert_video(clip, dst, translator, frames_dir=part, segment_seconds=0.25)
    assert r.status == "converted" and r.resumed_frames == kept and r.frames == 2 * FPS
    # the rate is this run's own: the frames it translated (it once counted the resumed ones too)
    assert r.frames_per_second == pytest.approx((r.frames - kept) / r.seconds)
    assert not parts.exists() and leftovers(tmp_path) == []
    assert frame_times(dst) == pytest.approx(frame_times(clip), abs=1e-3)
    assert video.probe_video(dst).has_audio
    # The stabiliser's state was saved with the segments: the resumed frames are the uninterrupted ones.
    got, expect = _pngs(part), _pngs(whole)
    assert len(got) == len(expect) == 2 * FPS
    assert all(np.array_equal(a, b) for a, b in zip(got, expect))


def test_a_run_killed_before_its_first_segment_is_not_called_other_settings(clip: Path, translator,
                                                                           tmp_path: Path) -> None:
    """A parts folder with only a half-written segment (no manifest yet): the rerun with the same
    command warned "an earlier, interrupted run with other settings was discarded"."""
    dst = tmp_path / "k.mp4"
    parts = tmp_path / ".imgxlate-parts-k.mp4"
    parts.mkdir()
    (parts / ".imgxlate-tmp-12345678.seg").write_bytes(b"half a segment")
    r = video.convert_video(clip, dst, translator, temporal="off")
    assert r.status == "converted" and r.resumed_frames == 0 and not any("discarded" in w for w in r.warnings)
    assert not parts.exists()


def test_parts_of_other_settings_are_discarded(clip: Path, translator, tmp_path: Path) -> None:
    dst = tmp_path / "d.mp4"

    stop = stop_at(6)
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, dst, translator, batch_size=1, progress=stop, segment_seconds=0.25)
    r = video.convert_video(clip, dst, translator, crf=30, segment_seconds=0.25)
    assert r.resumed_frames == 0 and any("discarded" in w for w in r.warnings)
    assert video.probe_video(dst).frames == 2 * FPS


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
    proc = subprocess.Popen(cmd + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (parts / "manifest.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the conversion finished before it could be interrupted")
    signum = getattr(signal, sig)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "run the same command again" in err
    # --json names the video that was stopped and where its frames are (it listed no result at all)
    report = json.loads(out)
    assert report["totals"]["interrupted"] and report["totals"]["failed"] == 0
    assert [(r["src"], r["status"], r["parts"]) for r in report["results"]] == [(str(src), "interrupted", str(parts))]
    assert not dst.exists() and leftovers(tmp_path) == []
    kept = sum(s["frames"] for s in json.loads((parts / "manifest.json").read_text())["segments"])
    assert kept >= 4 * FPS  # at least the first 4 s segment
    rerun = subprocess.run(cmd + ["--json", "-q"], capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr
    r = json.loads(rerun.stdout)["results"][0]
    assert r["resumed_frames"] == kept and r["frames"] == 30 * FPS
    assert len(frame_times(dst)) == 30 * FPS and not parts.exists()


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


def test_an_interrupted_frames_only_run_goes_on_where_it_stopped(clip: Path, translator, tmp_path: Path) -> None:
    """It said "run the same command again to continue", and the rerun skipped: "already has frames",
    with half the frames written."""
    whole = tmp_path / "whole"
    video.convert_video(clip, None, translator, temporal="off", frames_dir=whole, frames_only=True)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, None, translator, temporal="off", frames_dir=part, frames_only=True,
                            batch_size=1, progress=stop_at(7))
    kept = len(list(part.glob("frame_*.png")))
    assert 7 <= kept < 2 * FPS
    r = video.convert_video(clip, None, translator, temporal="off", frames_dir=part, frames_only=True)
    assert r.status == "converted" and r.resumed_frames == kept and r.frames == 2 * FPS
    names = sorted(p.name for p in whole.glob("frame_*.png"))
    assert sorted(p.name for p in part.glob("frame_*.png")) == names
    assert all((whole / n).read_bytes() == (part / n).read_bytes() for n in names)  # the same frames
    again = video.convert_video(clip, None, translator, temporal="off", frames_dir=part, frames_only=True)
    assert again.status == "skipped"  # finished: left alone
    other = video.convert_video(clip, None, translator, temporal="off", frames_dir=part, frames_only=True,
                                start=0.5)
    assert other.status == "skipped"  # another job's frames are not continued


def test_frames_only_resume_never_takes_another_runs_frames(clip: Path, translator, tmp_path: Path) -> None:
    """Another run emptied the folder with --overwrite and wrote its own frames, but the mark of the
    interrupted frames-only run stayed: the rerun "resumed" all of them. --restart was ignored."""
    fdir = tmp_path / "frames"
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, None, translator, temporal="off", frames_dir=fdir, frames_only=True, batch_size=1,
                            progress=stop_at(5))
    video.convert_video(clip, tmp_path / "b.mp4", translator, temporal="off", duration=0.5, frames_dir=fdir,
                        overwrite=True)
    assert not (fdir / video.convert.FRAMES_MARK).exists()
    again = video.convert_video(clip, None, translator, temporal="off", frames_dir=fdir, frames_only=True)
    assert again.status == "skipped"  # another run's frames
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        video.convert_video(clip, None, translator, temporal="off", frames_dir=other, frames_only=True, batch_size=1,
                            progress=stop_at(5))
    fresh = video.convert_video(clip, None, translator, temporal="off", frames_dir=other, frames_only=True,
                                resume=False)
    assert fresh.status == "converted" and fresh.resumed_frames == 0 and fresh.frames == 2 * FPS


def test_a_join_that_cannot_write_keeps_the_segments(clip: Path, translator, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An OS error at the join (a network drive's hiccup) deleted every translated segment."""
    from imgxlate.video import convert as convert_mod

    def eio(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(convert_mod, "mux_final", eio)
    with pytest.raises(VideoError, match="run the same command again"):
        video.convert_video(clip, tmp_path / "o.mp4", translator, temporal="off", duration=0.5)
    assert (tmp_path / ".imgxlate-parts-o.mp4").is_dir()
    monkeypatch.undo()
    r = video.convert_video(clip, tmp_path / "o.mp4", translator, temporal="off", duration=0.5)
    assert r.status == "converted" and r.resumed_frames == r.frames
