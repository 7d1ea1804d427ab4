"""`imgxlate convert` from the outside: exit codes, files on disk, sizes, modes, alpha, resume."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgxlate
from imgxlate import engine
from imgxlate.cli.app import app

TEMP_PREFIX = ".imgxlate-tmp-"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL", raising=False)


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def rng_img(h: int, w: int, c: int = 3, seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    hi = 65536 if dtype == np.uint16 else 256
    arr = np.random.default_rng(seed).integers(0, hi, (h, w, c) if c > 1 else (h, w), dtype=np.int64)
    return arr.astype(dtype)


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def make_tree(root: Path) -> dict[str, tuple[int, int]]:
    """A nested tree of the image kinds users have; returns rel path -> expected output (w, h)."""
    import cv2

    expect: dict[str, tuple[int, int]] = {}
    (root / "sub" / "deep").mkdir(parents=True)
    Image.fromarray(rng_img(17, 33)).save(root / "rgb odd size.jpg", quality=90)
    expect["rgb odd size.jpg"] = (33, 17)
    Image.fromarray(rng_img(20, 12, seed=1)).convert("CMYK").save(root / "sub" / "cmyk.jpg")
    expect["sub/cmyk.jpg"] = (12, 20)
    # Stored 24 wide x 10 high, EXIF orientation 6 (rotate 90): the upright image is 10 x 24.
    Image.fromarray(rng_img(10, 24, seed=2)).save(root / "sub" / "exif6.jpg", exif=exif_bytes(6))
    expect["sub/exif6.jpg"] = (10, 24)
    cv2.imwrite(str(root / "sub" / "deep" / "rgba16.png"), rng_img(15, 14, 4, seed=3, dtype=np.uint16))
    expect["sub/deep/rgba16.png"] = (14, 15)
    pal = Image.fromarray(rng_img(13, 11, seed=4)).quantize(8)  # colour palette, index 0 transparent
    pal.save(root / "sub" / "palette.png", transparency=0)
    expect["sub/palette.png"] = (11, 13)
    Image.fromarray(rng_img(1, 1, seed=5)).save(root / "one pixel.png")
    expect["one pixel.png"] = (1, 1)
    Image.fromarray(rng_img(9, 7, 4, seed=6), "RGBA").save(root / "sub" / "alpha ünï:c.png")
    expect["sub/alpha ünï:c.png"] = (7, 9)
    Image.fromarray(rng_img(18, 22, 1, seed=7), "L").save(root / "gray.png")
    expect["gray.png"] = (22, 18)
    # Broken inputs: reported, the batch goes on.
    buf = io.BytesIO()
    Image.fromarray(rng_img(40, 40, seed=8)).save(buf, "PNG")
    (root / "sub" / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    # Ignored: hidden files and unknown suffixes.
    Image.fromarray(rng_img(8, 8)).save(root / ".hidden.png")
    (root / "readme.txt").write_text("hi")
    return expect


def no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(TEMP_PREFIX) for p in folder.rglob("*"))


def test_nested_tree_end_to_end(tiny_pair: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    expect = make_tree(src)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--to", "zebra", "--json")
    assert res.exit_code == 1, res.output  # two broken files
    assert re.search(r"running on (CPUExecutionProvider|OpenVINO \S+ \(CPU\))", res.stderr)  # --backend auto
    summary = json.loads(res.stdout)
    assert summary["totals"]["converted"] == len(expect)
    assert summary["totals"]["failed"] == 2 and summary["totals"]["skipped"] == 0
    failed = {Path(r["src"]).name: r["reason"] for r in summary["results"] if r["status"] == "failed"}
    assert set(failed) == {"truncated.png", "notes.jpg"} and all(failed.values())
    assert summary["provider"] == "CPUExecutionProvider"

    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(expect)  # mirrored tree, names kept exactly, nothing else
    for rel, size in expect.items():
        assert Image.open(out / rel).size == size, rel
    assert no_temp_files(out)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # inputs untouched

    # Modes and alpha.
    alpha_in = np.asarray(Image.open(src / "sub" / "alpha ünï:c.png"))[..., 3]
    alpha_out = Image.open(out / "sub" / "alpha ünï:c.png")
    assert alpha_out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(alpha_out)[..., 3], alpha_in)
    assert Image.open(out / "gray.png").mode == "L"
    assert Image.open(out / "sub" / "palette.png").mode == "RGBA"
    import cv2

    rgba16 = cv2.imread(str(out / "sub" / "deep" / "rgba16.png"), cv2.IMREAD_UNCHANGED)
    src16 = cv2.imread(str(src / "sub" / "deep" / "rgba16.png"), cv2.IMREAD_UNCHANGED)
    assert rgba16.dtype == np.uint16 and rgba16.shape == (15, 14, 4)
    np.testing.assert_array_equal(rgba16[..., 3], src16[..., 3])

    # Rerun resumes: everything converted before is skipped.
    res2 = invoke("convert", src, "--out", out, "--model", tiny_pair, "--to", "zebra")
    assert res2.exit_code == 1
    assert f"converted 0, skipped {len(expect)}, failed 2" in res2.stderr
    # --overwrite redoes them.
    res3 = invoke("convert", src, "--out", out, "--model", tiny_pair, "--to", "zebra", "--overwrite", "-q")
    assert res3.exit_code == 1 and "converted" not in res3.stderr  # quiet: no summary
    assert "failed:" in res3.stderr  # but failures are still shown


def test_interrupted_run_leaves_complete_files_and_resumes(
    tiny_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgxlate import translator

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(6):
        Image.fromarray(rng_img(12, 16, seed=i)).save(src / f"img{i}.png")
    real = translator.Translator.translate_rgb
    calls = {"n": 0}

    def interrupting(self: object, rgb: np.ndarray, **kw: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real(self, rgb, **kw)

    monkeypatch.setattr(translator.Translator, "translate_rgb", interrupting)
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--to", "zebra")
    assert res.exit_code == 130, res.output
    assert "interrupted" in res.stderr
    done = sorted(p.name for p in out.iterdir())
    assert done == ["img0.png", "img1.png", "img2.png"]
    for name in done:
        assert Image.open(out / name).size == (16, 12)  # complete, decodable files
    assert no_temp_files(out)

    monkeypatch.setattr(translator.Translator, "translate_rgb", real)
    res2 = invoke("convert", src, "--out", out, "--model", tiny_pair, "--to", "zebra")
    assert res2.exit_code == 0
    assert "converted 3, skipped 3, failed 0" in res2.stderr


def test_out_inside_input_is_safe(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    Image.fromarray(rng_img(8, 8)).save(src / "a" / "x.png")
    out = src / "translated"
    first = invoke("convert", src, "--out", out, "--model", tiny_pair)
    assert first.exit_code == 0, first.output
    # The default note says which way it translated and how to get the other.
    assert "use --to horse" in first.stderr
    again = invoke("convert", src, "--out", out, "--model", tiny_pair)
    assert again.exit_code == 0, again.output
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png")) == ["a/x.png", "translated/a/x.png"]
    # every output there: skipped without loading the model (no provider line), options still checked
    assert "running on" not in again.stderr and "nothing to convert, no model loaded" in again.stderr
    bad = invoke("convert", src, "--out", out, "--model", tiny_pair, "--tile", "33")
    assert bad.exit_code == 2 and "--tile 33" in bad.output


def test_format_collision_include_exclude(tiny_pair: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(rng_img(8, 8)).save(src / "a.png")
    Image.fromarray(rng_img(8, 8, seed=1)).save(src / "a.jpg")
    Image.fromarray(rng_img(8, 8, seed=2)).save(src / "b.jpg")
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--format", "png", "--json")
    assert res.exit_code == 1
    results = json.loads(res.stdout)["results"]
    assert [(Path(r["src"]).name, r["status"]) for r in results] == [
        ("a.jpg", "converted"), ("a.png", "failed"), ("b.jpg", "converted")
    ]
    assert "would both be written to" in results[1]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert Image.open(out / "b.png").format == "PNG"
    out2 = tmp_path / "out2"
    res = invoke("convert", src, "--out", out2, "--model", tiny_pair, "--include", "*.jpg", "--exclude", "b*")
    assert res.exit_code == 0 and sorted(p.name for p in out2.iterdir()) == ["a.jpg"]
    res = invoke("convert", src, "--out", out2, "--model", tiny_pair, "--format", "bmp")
    # A fixed choice: refused while parsing, before the model loads.
    assert res.exit_code == 2 and "unknown output format 'bmp'" in res.stderr and "running on" not in res.stderr
    # the spellings people type are taken (they were refused): jpeg, TIF, .png
    for given, written in (("jpeg", "a.jpg"), ("TIF", "a.tif"), (".png", "a.png")):
        res = invoke("convert", src / "a.jpg", "--out", tmp_path / given, "--model", tiny_pair, "--format", given, "-q")
        assert res.exit_code == 0 and [p.name for p in (tmp_path / given).iterdir()] == [written], res.output


def test_typo_in_to_suggests_and_exits_2(tiny_pair: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(rng_img(8, 8)).save(tmp_path / "in" / "a.png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "--to", "zebar")
    assert res.exit_code == 2
    assert "no model translates to 'zebar'; did you mean 'zebra'?" in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_more_threads_than_cpus_says_so_and_converts(tiny_pair: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(rng_img(8, 8)).save(tmp_path / "in" / "a.png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "--direction", "a2b",
                 "--threads", "100000")
    cpus = engine.usable_cpus()
    assert res.exit_code == 0, res.output
    said = f"100000 threads were asked for, more than the {cpus} CPUs this process may use: it runs on {cpus}"
    assert f"warning: {said}" in res.stderr
    assert (tmp_path / "out" / "a.png").is_file()
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out2", "--model", tiny_pair, "--direction", "a2b",
                 "--threads", "1")
    assert res.exit_code == 0 and "warning" not in res.stderr
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out3", "--model", tiny_pair, "--direction", "a2b",
                 "--threads", "100000", "-q")  # errors only
    assert res.exit_code == 0 and res.stderr == ""


def test_quality_for_a_lossless_format_says_it_is_not_used(tiny_pair: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(rng_img(8, 8)).save(tmp_path / "in" / "a.jpg")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "--direction", "a2b",
                 "--format", "png", "--quality", "50")
    assert res.exit_code == 0, res.output
    assert "warning: --quality is for JPEG and WebP; PNG files are written losslessly" in res.stderr
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out2", "--model", tiny_pair, "--direction", "a2b",
                 "--format", "jpg", "--quality", "50")
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_usage_errors(tiny_pair: Path, tmp_path: Path) -> None:
    res = invoke("convert", tmp_path / "missing", "--out", tmp_path / "out", "--model", tiny_pair)
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = invoke("convert", "--out", tmp_path / "out")
    assert res.exit_code == 2  # Typer: missing argument
    (tmp_path / "in").mkdir()
    Image.fromarray(rng_img(8, 8)).save(tmp_path / "in" / "a.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGXLATE_DEFAULT_MODEL", "nosuchpair")
        res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "IMGXLATE_DEFAULT_MODEL names the model 'nosuchpair', which is not installed" in res.stderr
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o", "--model", tiny_pair, "--tiling", "x")
    assert res.exit_code == 2 and "'x' is not one of" in res.stderr and "running on" not in res.stderr


def test_cuda_requested_but_unavailable(tiny_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_probe_result", None)
    monkeypatch.setattr(engine, "available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(engine, "_driver_present", lambda: True)  # an NVIDIA GPU with the CPU build installed
    (tmp_path / "in").mkdir()
    Image.fromarray(rng_img(8, 8)).save(tmp_path / "in" / "a.png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "--device", "cuda")
    assert res.exit_code == 2
    assert "--device cuda was asked for but CUDA cannot be used" in res.stderr
    assert "onnxruntime-gpu" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_tiled_and_untiled_agree(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng_img(44, 50, seed=9)).save(src / "x.png")
    for name, extra in (("whole", ["--tile", "0"]), ("tiled", ["--tile", "16", "--tiling", "exact"])):
        res = invoke("convert", src, "--out", tmp_path / name, "--model", tiny_pair, *extra)
        assert res.exit_code == 0, res.output
    whole = np.asarray(Image.open(tmp_path / "whole" / "x.png")).astype(int)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "x.png")).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def test_corpus(tiny_pair: Path, corpus_dir: Path, tmp_path: Path) -> None:
    """The real-world corpus (skipped when ../shared is absent): every file converts, sizes kept."""
    out = tmp_path / "out"
    res = invoke("convert", corpus_dir / "mixed", corpus_dir / "photos", "--out", out, "--model", tiny_pair,
                 "--json", "--include", "*.png", "--include", "*.jpg")
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert results and all(r["status"] == "converted" for r in results)
    for r in results:
        src_img = Image.open(r["src"])
        from PIL import ImageOps

        assert Image.open(r["dst"]).size == ImageOps.exif_transpose(src_img).size, r["src"]
    alpha_src = np.asarray(Image.open(corpus_dir / "mixed" / "children-alpha.png").convert("RGBA"))[..., 3]
    alpha_out = np.asarray(Image.open(out / "children-alpha.png").convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(alpha_out, alpha_src)
    assert Image.open(out / "00017_gray.png").mode == "L"
    assert any(" " in Path(r["dst"]).name and ":" in Path(r["dst"]).name for r in results)
    assert no_temp_files(out)


def test_real_subprocess(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng_img(12, 12)).save(src / "a b.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMGXLATE_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "imgxlate", "convert", str(src), "--out", str(tmp_path / "out"),
           "--model", str(tiny_pair), "--device", "cpu", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["converted"] == 1  # stdout is pure JSON
    assert re.search(r"running on (CPUExecutionProvider|OpenVINO \S+ \(CPU\))", proc.stderr)  # --backend auto
    assert (tmp_path / "out" / "a b.png").is_file()
    version = subprocess.run([sys.executable, "-m", "imgxlate", "--version"], capture_output=True, text=True,
                             env=env, timeout=120, check=False)
    assert version.returncode == 0 and version.stdout.startswith("imgxlate ")


def test_bundled_default_model_converts_the_bundled_samples(tmp_path: Path) -> None:
    """The README's first command: the bundled pair, the bundled samples, --to vangogh."""
    samples = Path(imgxlate.__file__).parent / "samples"
    names = sorted(p.name for p in samples.glob("*.jpg"))
    assert names
    res = invoke("convert", samples, "--to", "vangogh", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    for name in names:
        with Image.open(samples / name) as a, Image.open(tmp_path / "out" / name) as b:
            assert a.size == b.size and b.mode == "RGB"
            diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()
            assert diff > 5  # really translated, not copied


def test_what_the_decoder_handled_is_said_per_file_in_the_summary_and_the_json(tmp_path: Path,
                                                                                 tiny_pair: Path) -> None:
    """Three photos with a broken ICC profile: each file's result carries an ``image`` note and the
    summary names each file (a Python warning used to be printed once for the whole run, naming
    batch.py instead of the photo, under -q too); -q prints none of it."""
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 32), (200, 50, 50)).save(src / f"b{i}.jpg", icc_profile=b"garbage" * 20)
    base = [sys.executable, "-m", "imgxlate", "convert", str(src), "--model", str(tiny_pair / "a2b.onnx"),
            "--device", "cpu", "--threads", "1"]
    proc = subprocess.run([*base, "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    for i in range(3):
        assert re.search(rf"warning:.*b{i}\.jpg.*broken ICC profile", proc.stderr.replace("\n", " ")), proc.stderr
    assert "UserWarning" not in proc.stderr and "batch.py" not in proc.stderr
    quiet = subprocess.run([*base, "--out", str(tmp_path / "q"), "-q"], capture_output=True, text=True, timeout=300,
                           check=False)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    js = subprocess.run([*base, "--out", str(tmp_path / "j"), "--json"], capture_output=True, text=True, timeout=300,
                        check=False)
    results = json.loads(js.stdout)["results"]
    assert len(results) == 3
    assert all([n["kind"] for n in r["notes"]] == ["image"] and "ICC" in r["notes"][0]["text"] for r in results)


def test_a_bad_option_value_names_the_environment_variable_only_when_it_came_from_there(tmp_path: Path) -> None:
    """Click named IMGXLATE_DEVICE in every error about --device, also for a typed value with the
    variable unset: the user was sent looking for a variable they never set."""
    import os

    base = [sys.executable, "-m", "imgxlate", "convert", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]
    env = {k: v for k, v in os.environ.items() if k != "IMGXLATE_DEVICE"}
    typed = subprocess.run([*base, "--device", "cdua"], capture_output=True, text=True, env=env, timeout=120,
                           check=False)
    assert typed.returncode == 2 and "'--device'" in typed.stderr and "IMGXLATE_DEVICE" not in typed.stderr
    from_env = subprocess.run(base, capture_output=True, text=True, env={**env, "IMGXLATE_DEVICE": "cdua"},
                              timeout=120, check=False)
    assert from_env.returncode == 2 and "IMGXLATE_DEVICE" in from_env.stderr.replace("\n", " ").replace("│", "")


def test_a_lossless_webp_is_written_lossless_unless_a_quality_is_given(tiny_pair: Path, tmp_path: Path) -> None:
    from imgxlate.imaging.formats import webp_is_lossless

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng_img(16, 16)).save(src / "art.webp", lossless=True)
    Image.fromarray(rng_img(16, 16, seed=1)).save(src / "photo.webp", quality=80)
    res = invoke("convert", src, "--out", tmp_path / "out", "--model", tiny_pair, "-q")
    assert res.exit_code == 0, res.output
    assert webp_is_lossless((tmp_path / "out" / "art.webp").read_bytes())
    assert not webp_is_lossless((tmp_path / "out" / "photo.webp").read_bytes())
    res = invoke("convert", src / "art.webp", "--out", tmp_path / "q90", "--model", tiny_pair, "--quality", "90", "-q")
    assert res.exit_code == 0 and not webp_is_lossless((tmp_path / "q90" / "art.webp").read_bytes())
    res = invoke("convert", src / "art.webp", "--out", tmp_path / "q0", "--model", tiny_pair, "--quality", "0")
    assert res.exit_code == 2 and "--quality" in res.stderr


def test_a_log_shows_the_progress_as_lines(tiny_pair: Path, tmp_path: Path) -> None:
    """stderr to a file (nohup, a scheduler's log): plain progress lines, no bar drawing characters."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(rng_img(8, 8, seed=i)).save(src / f"{i}.png")
    res = subprocess.run([sys.executable, "-m", "imgxlate", "convert", str(src), "--out", str(tmp_path / "out"),
                          "--model", str(tiny_pair), "--device", "cpu"], capture_output=True, text=True,
                         env={**os.environ, "IMGXLATE_HOME": str(tmp_path / "home")}, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^converting 3/3 \(100%\) [\d.]+ img/s$", res.stderr, re.MULTILINE), res.stderr
    assert "━" not in res.stderr


def test_a_newline_in_a_name_cannot_fake_a_line(tiny_pair: Path, tmp_path: Path) -> None:
    """A file named "evil\\nfailed: other.jpg: fake.jpg" (legal on Linux) is one line in --dry-run and in
    the failure report, its newline shown as \\n; --json keeps the real name."""
    src = tmp_path / "in"
    src.mkdir()
    evil = "evil\nfailed: other.jpg: fake.jpg"
    (src / evil).write_bytes(b"not an image")
    Image.fromarray(rng_img(8, 8)).save(src / "ok.png")
    res = invoke("convert", src, "--out", tmp_path / "out", "--model", tiny_pair, "--dry-run", "--include", "*.jpg*",
                 "--include", "*.png")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and any("evil\\nfailed: other.jpg" in line for line in lines), lines
    res = invoke("convert", src, "--out", tmp_path / "out", "--model", tiny_pair, "--include", "*.jpg*",
                 "--include", "*.png", "--json")
    assert res.exit_code == 1
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "evil\\nfailed: other.jpg" in failed[0], res.stderr
    assert [r["src"] for r in json.loads(res.stdout)["results"] if r["status"] == "failed"] == [str(src / evil)]
