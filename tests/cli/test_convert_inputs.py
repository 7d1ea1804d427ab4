"""`imgxlate convert` input choices from outside: one file to one named file, --dry-run, patterns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgxlate.cli.app import app


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL", raising=False)


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def noise(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_one_input_and_out_with_an_image_suffix_writes_that_file(tiny_pair: Path, tmp_path: Path) -> None:
    src = noise(tmp_path / "photo.png")
    out = tmp_path / "painting.jpg"
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "-q")
    assert res.exit_code == 0, res.output
    assert out.is_file() and Image.open(out).format == "JPEG" and Image.open(out).size == (16, 12)
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["totals"]["skipped"] == 1  # reruns skip it
    res = invoke("convert", src, "--out", tmp_path / "x.png", "--format", "webp", "--model", tiny_pair)
    assert res.exit_code == 2 and "contradicts" in res.stderr
    noise(tmp_path / "more" / "a.png")
    res = invoke("convert", tmp_path / "more", "--out", tmp_path / "y.png", "--model", tiny_pair)
    assert res.exit_code == 2 and "give a folder as --out" in res.stderr
    assert not (tmp_path / "y.png").exists()


def test_dry_run_lists_what_where_and_why_and_writes_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    noise(src / "IMG_0001.JPG")
    noise(src / "sub" / "b.png", seed=1)
    noise(src / "skip" / "c.png", seed=2)
    (src / "notes.txt").write_text("hi")
    (out / "sub").mkdir(parents=True)
    noise(out / "sub" / "b.png")
    res = invoke("convert", src, "--out", out, "--exclude", "skip", "--dry-run", "--json",
                 "--model", tmp_path / "no-model-is-loaded.onnx")
    assert res.exit_code == 0, res.output
    rows = {Path(r["src"]).relative_to(src).as_posix(): r for r in json.loads(res.stdout)}
    assert rows["IMG_0001.JPG"]["action"] == "convert" and rows["IMG_0001.JPG"]["dst"] == str(out / "IMG_0001.JPG")
    assert rows["sub/b.png"]["action"] == "skipped" and "output exists" in rows["sub/b.png"]["reason"]
    assert rows["skip"] == {"src": str(src / "skip"), "dst": None, "action": "ignored",
                            "reason": "folder excluded by --exclude"}
    assert rows["notes.txt"]["action"] == "ignored"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["sub/b.png"]
    text = invoke("convert", src, "--out", out, "--dry-run", "--include", "*.jpg")
    assert text.exit_code == 0
    assert f"convert\t{src / 'IMG_0001.JPG'}\t-> {out / 'IMG_0001.JPG'}" in text.stdout
    assert "would convert 1" in text.stderr


def test_an_empty_file_fails_while_planning_and_claims_no_output_name(tiny_pair: Path, tmp_path: Path) -> None:
    """A 0-byte file (a copy cut off) was listed as one to convert by --dry-run, and it claimed its output
    name: pic.png beside an empty pic.jpg failed as "would both be written to out/pic.png". Now it fails
    while planning, with the reason its read gives, and the good file of the same name converts."""
    src, out = tmp_path / "in", tmp_path / "out"
    (src).mkdir()
    (src / "pic.jpg").write_bytes(b"")
    noise(src / "pic.png")
    res = invoke("convert", src, "--out", out, "--dry-run", "--json", "--model", tiny_pair)
    assert res.exit_code == 1, res.output
    rows = {Path(r["src"]).name: r for r in json.loads(res.stdout)}
    assert rows["pic.jpg"]["action"] == "failed" and "the file is empty (0 bytes)" in rows["pic.jpg"]["reason"]
    assert rows["pic.png"]["action"] == "convert"
    res = invoke("convert", src, "--out", out, "--json", "--model", tiny_pair)
    assert res.exit_code == 1, res.output
    results = {Path(r["src"]).name: r for r in json.loads(res.stdout)["results"]}
    assert results["pic.jpg"]["status"] == "failed" and "empty (0 bytes)" in results["pic.jpg"]["reason"]
    assert results["pic.png"]["status"] == "converted"
    assert sorted(p.name for p in out.iterdir()) == ["pic.png"]


def test_include_is_case_insensitive_and_exclude_takes_folders(tiny_pair: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    noise(src / "IMG_0001.JPG")
    noise(src / "sub" / "IMG_0002.jpg", seed=1)
    noise(src / "sub" / "c.png", seed=2)
    res = invoke("convert", src, "--out", out, "--include", "*.jpg", "--exclude", "sub", "--model", tiny_pair)
    assert res.exit_code == 0, res.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["IMG_0001.JPG"]


def test_videos_in_an_image_folder_are_left_out_with_where_they_go(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "media"
    noise(src / "a.png")
    (src / "clip.MP4").write_bytes(b"not opened")
    (src / "notes.txt").write_text("not an image")
    res = invoke("convert", src, "--out", tmp_path / "out", "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["videos_left_out"] == [str(src / "clip.MP4")]
    assert "left out 1 video(s)" in res.stderr and "imgxlate video" in res.stderr
    res = invoke("convert", src, "--out", tmp_path / "dry", "--model", tiny_pair, "--dry-run", "--json")
    reasons = {Path(r["src"]).name: r["reason"] for r in json.loads(res.stdout) if r["action"] == "ignored"}
    assert reasons == {"clip.MP4": "a video: convert it with `imgxlate video`", "notes.txt": "not an image suffix"}


def test_a_multi_page_tiff_keeps_every_page(tiny_pair: Path, tmp_path: Path) -> None:
    """Every page of a multi-page TIFF is converted as its still would be and written back as a
    multi-page TIFF (pages of different sizes and kinds); a target that holds one picture gets the
    first page, with a ``partial`` note in --json and a warning naming the file and its page count."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    pages = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)),
             Image.fromarray(rng.integers(0, 256, (20, 8), dtype=np.uint8)),  # gray, another size
             Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))]
    pages[0].save(src / "scan.tif", save_all=True, append_images=pages[1:])
    for i, page in enumerate(pages):  # each page alone, for the reference
        page.save(tmp_path / f"page{i}.tif")
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)["results"]
    assert row["notes"] == []
    got = Image.open(out / "scan.tif")
    assert got.n_frames == 3
    for i in range(3):
        ref_out = tmp_path / f"ref{i}"
        assert invoke("convert", tmp_path / f"page{i}.tif", "--out", ref_out, "--model", tiny_pair, "-q").exit_code == 0
        got.seek(i)
        ref = Image.open(ref_out / f"page{i}.tif")
        assert got.size == ref.size and got.mode == ref.mode
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))

    res = invoke("convert", src, "--out", tmp_path / "png", "--format", "png", "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)["results"]
    assert [n["kind"] for n in row["notes"]] == ["partial"] and "3 pages" in row["notes"][0]["text"]
    assert "scan.tif" in res.stderr and "3 pages" in res.stderr and "warning" in res.stderr
    # said as it happens, like a failure: the summary line is the last (the warnings came after it)
    assert res.stderr.index("3 pages") < res.stderr.index("converted 1, skipped 0, failed 0")
    ref_png = tmp_path / "ref_png"
    assert invoke("convert", tmp_path / "page0.tif", "--out", ref_png, "--format", "png", "--model", tiny_pair,
                  "-q").exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "png" / "scan.png")),
                                  np.asarray(Image.open(ref_png / "page0.png")))


def test_a_16_bit_colour_multi_page_tiff_keeps_its_first_page_and_says_so(tiny_pair: Path, tmp_path: Path) -> None:
    import cv2

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(4)
    assert cv2.imwritemulti(str(src / "deep.tif"), [rng.integers(0, 65535, (10, 12, 3), dtype=np.uint16)
                                                    for _ in range(2)])
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)["results"]
    assert [n["kind"] for n in row["notes"]] == ["partial"] and "2 pages" in row["notes"][0]["text"]
    got = Image.open(out / "deep.tif")
    assert got.n_frames == 1
    assert cv2.imread(str(out / "deep.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # 16 bits kept


def test_a_16_bit_gray_multi_page_tiff_stays_16_bit_gray(tiny_pair: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(5)
    pages = [Image.fromarray(rng.integers(0, 65535, (6 + i, 7), dtype=np.uint16)) for i in range(2)]
    pages[0].save(src / "g.tif", save_all=True, append_images=pages[1:])
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "-q")
    assert res.exit_code == 0, res.output
    got = Image.open(out / "g.tif")
    assert got.n_frames == 2
    for i in range(2):
        got.seek(i)
        assert got.mode == "I;16" and got.size == (7, 6 + i)


def test_out_as_the_input_folder_is_refused_before_anything_is_written(
    tiny_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs in the input folder would be read as inputs by the next run ("output is an input")."""
    noise(tmp_path / "in" / "cat.jpg")
    for out in (tmp_path / "in", tmp_path / "in" / "."):
        res = invoke("convert", tmp_path / "in", "--out", out, "--model", tiny_pair, "--format", "png")
        assert res.exit_code == 2 and "--out is the input folder" in res.stderr
    monkeypatch.chdir(tmp_path / "in")
    res = invoke("convert", ".", "--out", tmp_path / "in", "--model", tiny_pair, "--format", "png")
    assert res.exit_code == 2 and "'./out'" in res.stderr  # the advice names a folder that works
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["cat.jpg"]
    res = invoke("convert", ".", "--out", "out", "--model", tiny_pair, "--format", "png", "-q")
    assert res.exit_code == 0 and (tmp_path / "in" / "out" / "cat.png").is_file()
    res = invoke("convert", ".", "--out", "out", "--model", tiny_pair, "--format", "png", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["totals"]["skipped"] == 1  # the rerun resumes


def test_a_link_to_a_file_already_found_is_reported_not_dropped(tiny_pair: Path, tmp_path: Path) -> None:
    noise(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").symlink_to("a.png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    files = {Path(f["src"]).name: f for f in json.loads(res.stdout)["results"]}
    assert files["a.png"]["status"] == "converted"
    assert files["b.png"]["status"] == "skipped" and "the same file as" in files["b.png"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    # the file's own name wins when the link sorts first (it named the output after the link)
    noise(tmp_path / "in2" / "plain.png")
    (tmp_path / "in2" / "link_to_plain.png").symlink_to("plain.png")
    res = invoke("convert", tmp_path / "in2", "--out", tmp_path / "out2", "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    files = {Path(f["src"]).name: f for f in json.loads(res.stdout)["results"]}
    assert files["plain.png"]["status"] == "converted"
    assert files["link_to_plain.png"]["status"] == "skipped"
    assert f"the same file as {str(tmp_path / 'in2' / 'plain.png')!r}" in files["link_to_plain.png"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["plain.png"]
    # a link named on the command line is the user's choice of name: it keeps it
    res = invoke("convert", tmp_path / "in2" / "link_to_plain.png", tmp_path / "in2", "--out", tmp_path / "out3",
                 "--model", tiny_pair, "--json")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out3").iterdir()) == ["link_to_plain.png"]


def test_overwrite_with_out_inside_the_input_keeps_the_users_own_picture(tiny_pair: Path, tmp_path: Path) -> None:
    """A review's case: --out names an existing sub-folder of the library that holds a photo of the same
    name as an input. --overwrite used to replace the photo with the painting of the other file."""
    lib = tmp_path / "L2"
    noise(lib / "x.png", seed=1)
    noise(lib / "y.png", seed=2)
    mine = noise(lib / "sub" / "x.png", seed=3).read_bytes()
    res = invoke("convert", lib, "--out", lib / "sub", "--model", tiny_pair, "--overwrite", "--json")
    assert res.exit_code == 1, res.output
    rows = {Path(r["src"]).name: r for r in json.loads(res.stdout)["results"]}
    assert rows["x.png"]["status"] == "failed" and "inside the input folder" in rows["x.png"]["reason"]
    assert rows["y.png"]["status"] == "converted"
    assert (lib / "sub" / "x.png").read_bytes() == mine


def test_a_quoted_tilde_in_out_is_the_home_folder(tiny_pair: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home-dir"))
    monkeypatch.chdir(tmp_path)
    src = noise(tmp_path / "a.png")
    res = invoke("convert", src, "--out", "~/painted", "--model", tiny_pair, "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home-dir" / "painted" / "a.png").is_file() and not (tmp_path / "~").exists()


def test_quality_with_only_lossless_outputs_says_it_is_not_used(tiny_pair: Path, tmp_path: Path) -> None:
    src = noise(tmp_path / "in" / "a.png")
    res = invoke("convert", src, "--out", tmp_path / "o1", "--model", tiny_pair, "--quality", "30")
    assert res.exit_code == 0 and "--quality is for JPEG and WebP" in res.stderr and "(.png)" in res.stderr
    noise(tmp_path / "in" / "b.jpg")  # one JPEG among them: it is used
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o2", "--model", tiny_pair, "--quality", "30")
    assert res.exit_code == 0 and "--quality is for" not in res.stderr


def test_a_models_fallback_note_is_a_warning_line_once_and_in_json_not_a_python_warning(tmp_path: Path) -> None:
    """A model with a fixed input size: the resize note came out as `translator.py:99: UserWarning: ...`,
    with -q too, and was not in --json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * 0.5, "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["output"])], "fixed",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    noise(tmp_path / "in" / "a.png")
    noise(tmp_path / "in" / "b.png", seed=1)
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o1", "--model", tmp_path / "fixed.onnx",
                 "--json")
    assert res.exit_code == 0, res.output
    assert "UserWarning" not in res.stderr and res.stderr.count("only accepts 16x16 inputs") == 1
    notes = json.loads(res.stdout)["notes"]
    assert any(n["kind"] == "fallback" and "only accepts 16x16" in n["text"] for n in notes)
    quiet = invoke("convert", tmp_path / "in", "--out", tmp_path / "o2", "--model", tmp_path / "fixed.onnx", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tiny_pair: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`convert "$SRC" --out o` with SRC unset walked the current folder; `--out "$DST"` wrote the
    results among the current folder's files; `--out 'album.jpg/'` wrote one file named album.jpg."""
    monkeypatch.chdir(tmp_path)
    noise(tmp_path / "x.png")
    noise(tmp_path / "sub" / "y.png")
    for args in (["convert", "", "--out", "o"], ["convert", "sub", "--out", ""], ["convert", "sub", "--out", " "],
                 ["video", "", "--to", "zebra"], ["video", "clip.mp4", "--out", ""]):
        res = invoke(*args, "--model", tiny_pair)
        assert res.exit_code == 2 and "is empty" in res.stderr, (args, res.output)
    res = invoke("convert", "x.png", "--out", "album.jpg/", "--model", tiny_pair)
    assert res.exit_code == 2 and "ends with '/'" in res.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["sub", "sub/y.png", "x.png"]
    (tmp_path / "album.jpg").mkdir()  # an existing folder of that name is a folder
    res = invoke("convert", "x.png", "--out", "album.jpg/", "--model", tiny_pair, "-q")
    assert res.exit_code == 0 and (tmp_path / "album.jpg" / "x.png").is_file()
