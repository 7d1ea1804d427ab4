"""`imgxlate convert` on animations from outside: every frame converted, each as its still would be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgxlate.cli.app import app

DURATIONS = [60, 90, 150, 240]


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def animated(path: Path, fmt: str, n: int = 4) -> list[np.ndarray]:
    """An animation of n frames with 24 colours in all (exact in a GIF); returns the frames."""
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (24, 3), dtype=np.uint8)
    arrays = [palette[rng.integers(0, 24, (18, 22))] for _ in range(n)]
    ims = [Image.fromarray(a) for a in arrays]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    ims[0].save(path, format=fmt, save_all=True, append_images=ims[1:], duration=DURATIONS[:n], loop=0, **extra)
    return arrays


def read_frames(path: Path) -> tuple[str, list[np.ndarray], list[int]]:
    with Image.open(path) as im:
        fmt, out, durations = im.format, [], []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
            durations.append(int(im.info.get("duration") or 0))
    return fmt, out, durations


def test_every_frame_is_converted_as_its_still_would_be(tiny_pair: Path, tmp_path: Path) -> None:
    src, out, stills = tmp_path / "in", tmp_path / "out", tmp_path / "stills"
    src.mkdir()
    frames = animated(src / "loop.webp", "WEBP")
    animated(src / "clip.gif", "GIF")
    Image.fromarray(frames[0]).save(src / "still.gif")
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--quality", "100", "--json")
    assert res.exit_code == 0, res.output
    rows = {Path(r["src"]).name: r for r in json.loads(res.stdout)["results"]}
    assert {r["status"] for r in rows.values()} == {"converted"}
    assert sorted(p.name for p in out.iterdir()) == ["clip.gif", "loop.webp", "still.png"]

    # The reference: each frame saved as its own PNG and converted as a still image.
    stills.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(stills / f"{i}.png")
    res = invoke("convert", stills, "--out", tmp_path / "stills-out", "--model", tiny_pair, "-q")
    assert res.exit_code == 0, res.output
    expected = [np.asarray(Image.open(tmp_path / "stills-out" / f"{i}.png").convert("RGB")) for i in range(4)]

    fmt, got, durations = read_frames(out / "loop.webp")
    assert fmt == "WEBP" and durations == DURATIONS and len(got) == 4
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)  # lossless WebP: exactly the still conversions
    fmt, got, durations = read_frames(out / "clip.gif")
    assert fmt == "GIF" and durations == DURATIONS and len(got) == 4  # 256 colours a frame: close, not equal
    for g, e in zip(got, expected):
        assert np.abs(g.astype(int) - e).mean() < 6


def test_an_animation_asked_for_as_jpeg_fails_and_writes_nothing(tiny_pair: Path, tmp_path: Path) -> None:
    """Refused while planning: not translated frame by frame first, and its output name stays free for
    the still of the same name (which was refused as "already written" before)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    animated(src / "clip.gif", "GIF")
    Image.new("RGB", (20, 16), (9, 99, 199)).save(src / "clip.png")
    res = invoke("convert", src, "--out", out, "--model", tiny_pair, "--format", "jpg", "--json")
    assert res.exit_code == 1, res.output
    rows = {Path(r["src"]).name: r for r in json.loads(res.stdout)["results"]}
    row = rows["clip.gif"]
    assert row["status"] == "failed" and "is an animation and JPEG holds one picture" in row["reason"]
    assert "--format webp" in row["reason"] and row["seconds"] == 0  # never decoded nor translated
    assert rows["clip.png"]["status"] == "converted" and sorted(p.name for p in out.iterdir()) == ["clip.jpg"]
    # the same for an output file named on the command line: refused before any frame is translated,
    # with advice about the name (no --format was given)
    res = invoke("convert", src / "clip.gif", "--out", tmp_path / "z.jpg", "--model", tiny_pair, "--json")
    assert res.exit_code == 1, res.output
    row = json.loads(res.stdout)["results"][0]
    assert "name the output z.webp, .png or .gif" in row["reason"] and "--format" not in row["reason"]
    assert row["seconds"] == 0 and not (tmp_path / "z.jpg").exists()
    # with --format jpg as well, the advice says to leave it out (z.webp with --format jpg contradicts)
    res = invoke("convert", src / "clip.gif", "--out", tmp_path / "z.jpg", "--format", "jpg", "--model", tiny_pair,
                 "--json")
    assert res.exit_code == 1 and "without --format jpg" in json.loads(res.stdout)["results"][0]["reason"]


def test_progress_counts_the_frames_of_an_animation(tiny_pair: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    animated(src / "clip.webp", "WEBP")
    res = invoke("convert", src, "--out", tmp_path / "out", "--model", tiny_pair)  # not a terminal: lines
    assert res.exit_code == 0, res.output
    assert "frames 4/4 (100%)" in res.output
