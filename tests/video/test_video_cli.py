"""`imgxlate video` from outside: exit codes, refusals before the model loads, --json, FIFOs in folders.

Clips made here with the FFmpeg binary of imageio-ffmpeg (an independent reference: imgxlate
itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from video_helpers import (
    FPS,
)

from imgxlate import video
from imgxlate.errors import UsageError


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

    Image.new("RGB", (8, 8)).save(png)
    res = runner.invoke(_app(), ["video", str(png), "--model", no_model])
    assert res.exit_code == 1 and "not a video" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "img.png"]


def test_cli_out_file_json_quiet(clip: Path, tiny_pair: Path, tmp_path: Path) -> None:

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


def test_encoder_settings_and_output_names_are_checked_before_any_work(clip: Path, tiny_pair: Path,
                                                                        tmp_path: Path) -> None:
    """A preset x264 does not have, a --crf past x264's 0-51, an output named as a video the tool cannot
    write (.avi used to become a folder) and an output that is the input (used to be "skipped: output
    exists") are usage errors, exit 2, before the model loads; nothing is written."""
    from imgxlate.video.encoder import check_encoder

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


def test_no_child_process_is_started(clip: Path, translator, tmp_path: Path, monkeypatch) -> None:
    import subprocess as sp

    def refuse(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args[:1]}")

    monkeypatch.setattr(sp, "Popen", refuse)
    r = video.convert_video(clip, tmp_path / "np.mkv", translator, duration=0.5)
    assert r.status == "converted"


def test_encoders_that_open_but_cannot_make_the_video_are_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VP8 in PyAV's FFmpeg opened and then failed on the first frame ("Not yet implemented"); SVT-AV1
    encoded, but that FFmpeg has no AV1 decoder for the join. Both failed after every frame was
    translated. The check now makes a tiny video the way a conversion does."""
    import av

    from imgxlate.video import encoder as media

    media.check_encoder("libvpx-vp9", ".webm", "yuv420p", 23, "medium")  # encoders that work pass
    media.check_encoder("libx264", ".mkv", "yuv420p", 23, "ultrafast")

    def fails(*args: object) -> None:
        raise av.error.PatchWelcomeError(-1163346256, "Not yet implemented in FFmpeg, patches welcome")

    monkeypatch.setattr(media, "_trial_video", fails)
    with pytest.raises(UsageError, match=r"the encoder libx264 cannot make a \.mp4 video here \(Not yet"):
        media.check_encoder("libx264", ".mp4", "yuv420p", 23, "ultrafast")


def test_folders_nothing_can_be_written_into_are_refused_before_the_model(clip: Path, tmp_path: Path,
                                                                          tiny_pair: Path) -> None:
    """A read-only folder: --out and --frames-dir are usage errors (exit 2), a video beside which
    nothing can be written fails with what to do (exit 1); all before the model loads (the model given
    does not exist), and no more `PermissionError '...lock'` after it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fault_fs import without_dac_override

    prefix = without_dac_override()
    locked = tmp_path / "locked"
    (locked / "open").mkdir(parents=True)
    (locked / "c.mp4").write_bytes(clip.read_bytes())
    (locked / "open" / "d.mp4").write_bytes(clip.read_bytes())  # a writable folder inside a locked one
    locked.chmod(0o555)
    no_model = str(tmp_path / "no-such-model.onnx")
    cmd = [*prefix, sys.executable, "-m", "imgxlate", "video", "--model", no_model, "--json"]
    real = [*prefix, sys.executable, "-m", "imgxlate", "video", "--model", str(tiny_pair / "a2b.onnx"), "--json",
            "--duration", "0.3", "--temporal", "off"]
    try:
        # a pattern, found after the model loaded: said for that video, the one in open/ is written
        found = subprocess.run([*real, str(locked / "**" / "*.mp4")], capture_output=True, text=True, timeout=300,
                               check=False)
        runs = {
            "out": subprocess.run([*cmd, str(clip), "--out", str(locked / "x.mp4")], capture_output=True, text=True,
                                  timeout=120, check=False),
            "frames": subprocess.run([*cmd, str(clip), "--out", str(tmp_path / "v"), "--frames-dir",
                                      str(locked / "fr")], capture_output=True, text=True, timeout=120, check=False),
            "beside": subprocess.run([*cmd, str(locked / "c.mp4")], capture_output=True, text=True, timeout=120,
                                     check=False),
        }
    finally:
        locked.chmod(0o755)
    for key, option in (("out", "--out"), ("frames", "--frames-dir")):
        r = runs[key]
        assert r.returncode == 2, r.stderr
        assert json.loads(r.stdout)["error"]["message"].startswith(f"{option}: cannot write into ")
        assert "check that the output folder is writable" in r.stderr
    r = runs["beside"]
    assert r.returncode == 1, r.stderr
    (failure,) = json.loads(r.stdout)["results"]
    assert failure["status"] == "failed"
    assert "the video would be written beside it" in failure["reason"] and "pass --out" in failure["reason"]
    assert "PermissionError" not in r.stderr and "Traceback" not in r.stderr
    assert found.returncode == 1, found.stderr
    by_name = {Path(x["src"]).name: x for x in json.loads(found.stdout)["results"]}
    assert by_name["d.mp4"]["status"] == "converted"
    assert by_name["c.mp4"]["status"] == "failed" and "pass --out" in by_name["c.mp4"]["reason"]
    assert "PermissionError" not in found.stderr and ".lock" not in found.stderr
    assert sorted(p.name for p in locked.iterdir()) == ["c.mp4", "open"]
    assert (locked / "open" / "d.zebra.mp4").is_file()


def test_options_that_contradict_each_other_are_refused_before_the_model(clip: Path, tmp_path: Path) -> None:
    """The deprecated --stabilize used to win over an explicit --temporal, and --out was ignored with
    --frames-only, both without a word."""
    from typer.testing import CliRunner

    no_model = str(tmp_path / "no-such-model.onnx")
    runner = CliRunner()
    res = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--stabilize", "--temporal", "off"])
    assert res.exit_code == 2 and "--stabilize means --temporal flow, but --temporal off is given" in res.output
    res = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--frames-only", "--frames-dir",
                                 str(tmp_path / "f"), "--out", str(tmp_path / "v.mp4")])
    assert res.exit_code == 2 and "leave out --out" in res.output
    assert not (tmp_path / "f").exists() and not (tmp_path / "v.mp4").exists()


def test_quiet_hides_the_deprecation_warning_too(clip: Path, tmp_path: Path) -> None:
    """-q is errors only; the --stabilize deprecation line was printed anyway."""
    from typer.testing import CliRunner

    no_model = str(tmp_path / "no-such-model.onnx")
    runner = CliRunner()
    loud = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--stabilize"])
    quiet = runner.invoke(_app(), ["video", str(clip), "--model", no_model, "--stabilize", "-q"])
    assert loud.exit_code == quiet.exit_code == 2
    assert "deprecated" in loud.output and "deprecated" not in quiet.output
    assert "no-such-model.onnx" in quiet.output  # the error still is said


def test_two_videos_for_one_output_name_fail_the_second_not_overwrite_it(clip: Path, tiny_pair: Path,
                                                                          tmp_path: Path) -> None:
    """clip.mov and clip.mp4 in one folder both map to clip.zebra.mp4: the second was "skipped: output
    exists" (the first's, from this run), or with --overwrite written over it, both counted converted."""
    from typer.testing import CliRunner

    folder = tmp_path / "phone"
    folder.mkdir()
    for name in ("clip.mov", "clip.mp4"):
        (folder / name).write_bytes(clip.read_bytes())
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(_app(), ["video", str(folder), "--model", str(tiny_pair / "a2b.onnx"), "--device",
                                          "cpu", "--duration", "0.3", "--temporal", "off", "--json", *extra])
        assert res.exit_code == 1, res.output
        report = json.loads(res.stdout)
        assert report["totals"]["converted"] == 1 and report["totals"]["failed"] == 1, report["totals"]
        failed = [r for r in report["results"] if r["status"] == "failed"] or report.get("failures", [])
        assert any("would both be written to the output" in r["reason"] for r in failed), report
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mov", "clip.mp4", "clip.zebra.mp4"]
