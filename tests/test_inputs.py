"""Input walking and output planning (no model, no decoding: only names and folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgxlate.errors import UsageError
from imgxlate.inputs import InputFile, collect_inputs, plan_outputs

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif"}


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for rel in [
        "a.jpg", "B.JPG", "notes.txt", "sub/c.png", "sub/deep/d one:two.jpeg", "sub/deep/ünï.png",
        ".hidden.jpg", ".cache/e.jpg", "sub/.git/f.png",
    ]:
        touch(root / rel)
    return root


def rels(files: list[InputFile]) -> list[str]:
    return [f.rel.as_posix() for f in files]


def test_walk_recursive_sorted_skips_hidden_and_unknown_suffixes(tree: Path) -> None:
    files = collect_inputs([tree], suffixes=SUFFIXES)
    assert rels(files) == ["B.JPG", "a.jpg", "sub/c.png", "sub/deep/d one:two.jpeg", "sub/deep/ünï.png"]
    assert all(not f.explicit for f in files)


def test_no_recursive(tree: Path) -> None:
    assert rels(collect_inputs([tree], recursive=False, suffixes=SUFFIXES)) == ["B.JPG", "a.jpg"]


def test_out_inside_input_is_not_walked(tree: Path) -> None:
    touch(tree / "out" / "a.jpg")
    files = collect_inputs([tree], out_dir=tree / "out", suffixes=SUFFIXES)
    assert "out/a.jpg" not in rels(files)
    assert "a.jpg" in rels(files)


def test_include_exclude(tree: Path) -> None:
    assert rels(collect_inputs([tree], include=["*.png"], suffixes=SUFFIXES)) == ["sub/c.png", "sub/deep/ünï.png"]
    assert rels(collect_inputs([tree], exclude=["sub/deep/*"], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg", "sub/c.png"]
    assert rels(collect_inputs([tree], include=["sub/**"], exclude=["*.jpeg"], suffixes=SUFFIXES)) == [
        "sub/c.png", "sub/deep/ünï.png"
    ]


def test_explicit_file_goes_to_its_name_and_keeps_odd_suffix(tree: Path) -> None:
    files = collect_inputs([tree / "sub/deep/d one:two.jpeg", tree / "notes.txt"], suffixes=SUFFIXES)
    assert rels(files) == ["d one:two.jpeg", "notes.txt"]
    assert all(f.explicit for f in files)


def test_glob_keeps_path_below_fixed_prefix(tree: Path) -> None:
    files = collect_inputs([str(tree / "sub" / "**" / "*.png")], suffixes=SUFFIXES)
    assert rels(files) == ["c.png", "deep/ünï.png"]  # .git/f.png is hidden


def test_duplicates_removed(tree: Path) -> None:
    files = collect_inputs([tree / "a.jpg", tree], suffixes=SUFFIXES)
    assert rels(files).count("a.jpg") == 1
    assert len(files) == 5


def test_missing_input_and_empty_glob_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        collect_inputs([tmp_path / "nope"], suffixes=SUFFIXES)
    with pytest.raises(UsageError, match="no file matches"):
        collect_inputs([str(tmp_path / "*.jpg")], suffixes=SUFFIXES)
    with pytest.raises(UsageError, match="no inputs"):
        collect_inputs([], suffixes=SUFFIXES)


def test_default_suffixes_come_from_images(tree: Path) -> None:
    files = collect_inputs([tree])
    assert "notes.txt" not in rels(files) and "B.JPG" in rels(files)


def _png(src: Path) -> str:
    return ".png"


def _same(src: Path) -> str:
    return src.suffix


def test_plan_mirrors_tree_and_applies_suffix(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plans = plan_outputs(collect_inputs([tree], suffixes=SUFFIXES), out, _same)
    assert [p.dst for p in plans] == [
        out / "B.JPG", out / "a.jpg", out / "sub/c.png", out / "sub/deep/d one:two.jpeg", out / "sub/deep/ünï.png"
    ]
    assert all(p.status == "pending" for p in plans)


def test_plan_collision_second_fails(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "a.png")
    touch(root / "a.jpg")
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), tmp_path / "out", _png)
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "already written to" in plans[1].reason


def test_plan_never_targets_an_input(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "a.png")
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), root, _same)
    assert plans[0].status == "failed" and "is an input file" in plans[0].reason


def test_plan_skips_existing_unless_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "a.png")
    touch(root / "b.png")
    out = tmp_path / "out"
    touch(out / "a.png")
    files = collect_inputs([root], suffixes=SUFFIXES)
    assert [p.status for p in plan_outputs(files, out, _same)] == ["skipped", "pending"]
    assert [p.status for p in plan_outputs(files, out, _same, overwrite=True)] == ["pending", "pending"]


def test_plan_out_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "a.png")
    with pytest.raises(UsageError, match="is a file"):
        plan_outputs(collect_inputs([root], suffixes=SUFFIXES), touch(tmp_path / "f"), _same)
