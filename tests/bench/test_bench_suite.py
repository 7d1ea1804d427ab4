"""The benchmark runner end to end at the tiniest settings, and the pure helpers it relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import _util as U
from bench.__main__ import main as bench_main
from bench.train_speed import steady_images_per_s


def test_conv_macs_counts_conv_and_transpose(tiny_pair: Path) -> None:
    # tiny_pair: ngf 8, 2 residual blocks, transpose upsampling; at 32x32 the maps are 32, 16 and 8 px.
    ngf, n = 8, 32
    expected = (
        ngf * n * n * 3 * 49  # stem 7x7, 3 -> 8 channels, output 32x32
        + 2 * ngf * (n // 2) ** 2 * ngf * 9  # down 3x3 s2, 8 -> 16, output 16x16
        + 4 * ngf * (n // 4) ** 2 * 2 * ngf * 9  # down 3x3 s2, 16 -> 32, output 8x8
        + 2 * 2 * (4 * ngf * (n // 4) ** 2 * 4 * ngf * 9)  # 2 blocks x 2 convs, 32 -> 32 at 8x8
        + 4 * ngf * (n // 4) ** 2 * 2 * ngf * 9  # transpose 32 -> 16: every 8x8 input pixel x 3x3 x 16
        + 2 * ngf * (n // 2) ** 2 * ngf * 9  # transpose 16 -> 8 from 16x16
        + 3 * n * n * ngf * 49  # head 7x7, 8 -> 3, output 32x32
    )
    assert U.conv_macs(tiny_pair / "a2b.onnx", n, n) == expected
    assert U.conv_macs(tiny_pair / "a2b.onnx", 2 * n, 2 * n) == 4 * expected  # linear in pixels


def test_steady_rate_skips_warmup(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    # step 1 takes 10 s (warm-up), then 0.5 s per step at batch 4 -> 8 img/s
    recs = [{"step": 1, "time": 10.0}] + [{"step": s, "time": 10.0 + 0.5 * (s - 1)} for s in range(2, 11)]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    res = steady_images_per_s(log, batch=4, warmup=3)
    assert res["img_per_s"] == pytest.approx(8.0)
    assert res["steps_timed"] == 7


@pytest.mark.bench
def test_runner_collects_parts_and_reports_failures(tiny_pair: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    rc = bench_main([
        "--only", "convert_speed,train_speed", "--capture", "--json", str(out), "--timeout", "600",
        "--part-args", (f"convert_speed:--model '{tiny_pair / 'a2b.onnx'}' --sizes 32 --count 1 --rounds 1 "
                        "--threads 1 --contenders imgxlate,torch_eager,opencv_dnn"),
        "--part-args", "train_speed:--no-such-flag",  # a part that fails: reported, the rest still run
    ])
    assert rc == 1
    results = json.loads(out.read_text())
    conv = results["parts"]["convert_speed"]
    assert conv["status"] == "ok", conv.get("stderr_tail")
    row = conv["result"]["sizes"][0]
    assert row["size"] == 32 and row["images"] == 1
    assert row["imgxlate_img_per_s"] > 0 and row["torch_eager_img_per_s"] > 0
    assert row["ratio_vs_torch_eager"] == pytest.approx(row["imgxlate_img_per_s"] / row["torch_eager_img_per_s"])
    # same weights in every contender: the PNGs agree to rounding
    assert row["contenders"]["imgxlate"]["max_diff_vs_torch_8bit"] <= 2
    cv = row["contenders"]["opencv_dnn"]
    assert cv["error"] or cv["max_diff_vs_torch_8bit"] <= 2
    assert results["parts"]["train_speed"]["status"] == "failed"
    assert results["parts"]["train_speed"]["stderr_tail"]
    assert any("32 px" in g["goal"] for g in results["goals"])
    text = capsys.readouterr().out
    assert "[FAILED] train_speed" in text and "[OK] convert_speed" in text


@pytest.mark.bench
def test_every_parts_goals_reach_the_summary_and_a_timeout_leaves_nothing_running(
    tiny_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """video_speed and scale_out wrote their goals in other shapes and the summary crashed after the
    whole suite had run, losing every result; a part stopped by --timeout left its measured command
    running."""
    import subprocess

    out = tmp_path / "results.json"
    rc = bench_main([
        "--only", "video_speed,large_photos", "--capture", "--json", str(out), "--timeout", "30",
        "--part-args", (f"video_speed:--model '{tiny_pair / 'a2b.onnx'}' --seconds 0.3 --only procedural_640x480 "
                        "--threads 1"),
        "--part-args", "large_photos:--sizes 12 --contenders exact_ort --no-torch --threads 1",  # minutes: stopped
    ])
    results = json.loads(out.read_text())
    assert rc == 1 and results["parts"]["large_photos"]["status"] == "timeout"
    assert results["parts"]["video_speed"]["status"] == "ok", results["parts"]["video_speed"].get("stderr_tail")
    assert any("flicker ratio" in g["goal"] for g in results["goals"])
    assert "goals:" in capsys.readouterr().out
    left = subprocess.run(["pgrep", "-f", "imgxlate convert .*large_photos"], check=False, capture_output=True,
                          text=True).stdout
    assert left.strip() == ""


def test_goals_of_another_shape_fail_their_part_instead_of_the_summary() -> None:
    from bench.__main__ import collect_goals

    parts = {"a": {"status": "ok", "result": {"goals": [U.goal("x >= 1", 1.2, True)]}},
             "b": {"status": "ok", "result": {"goals": {"flicker_ratio_max": 1.15}}},
             "c": {"status": "ok", "result": {"goals": [{"name": "y", "value": 1, "met": None}]}}}
    assert collect_goals(parts) == [{"goal": "x >= 1", "value": 1.2, "met": True}]
    assert parts["b"]["status"] == parts["c"]["status"] == "failed" and "goal records" in parts["c"]["reason"]
