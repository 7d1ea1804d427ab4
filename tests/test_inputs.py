"""Input walking and output planning (no model, no decoding: only names and folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgxlate.errors import UsageError
from imgxlate.inputs import InputFile, collect_inputs, plan_outputs, walked_folders

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


def test_a_file_reached_through_two_inputs_keeps_the_outer_folders_layout_in_any_order(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`convert P P/sub/c.png` wrote sub/c.png but `convert P/sub/c.png P` wrote c.png (and `P/sub P`
    likewise): the first input to reach a file chose its place. The outer folder's layout wins."""
    expected = ["B.JPG", "a.jpg", "sub/c.png", "sub/deep/d one:two.jpeg", "sub/deep/ünï.png"]
    for inputs in ([tree, tree / "sub/c.png"], [tree / "sub/c.png", tree], [tree / "sub", tree],
                   [tree, tree / "sub"], [tree / "sub/deep/ünï.png", tree / "sub", tree]):
        files = collect_inputs(inputs, suffixes=SUFFIXES)
        assert sorted(rels(files)) == expected, inputs
        named = {f.rel.as_posix() for f in files if f.explicit}
        assert named == {str(p.relative_to(tree).as_posix()) for p in inputs if p.is_file()}, inputs
    # the same file spelled another way (absolute against relative, a `..` detour): no "same file" note
    monkeypatch.chdir(tree.parent)
    for inputs in ([tree.resolve(), Path("in/sub/c.png")], [Path("in/sub/c.png"), tree.resolve()],
                   [Path("in/sub"), Path("in/sub/../").resolve().parent / "in"]):
        files = collect_inputs(inputs, suffixes=SUFFIXES)
        assert sorted(rels(files)) == expected and not [f for f in files.found if f.status == "skipped"], inputs


def test_missing_input_and_empty_glob_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        collect_inputs([tmp_path / "nope"], suffixes=SUFFIXES)
    with pytest.raises(UsageError, match="no file matches"):
        collect_inputs([str(tmp_path / "*.jpg")], suffixes=SUFFIXES)
    with pytest.raises(UsageError, match="no inputs"):
        collect_inputs([], suffixes=SUFFIXES)
    # every match inside --out (earlier results): said so, not "no file matches"
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"every file .* matches \(1\) is inside the output folder"):
        collect_inputs([str(tmp_path / "pics" / "*.jpg")], suffixes=SUFFIXES, out_dir=tmp_path)


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
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), tmp_path / "out", _png, fmt="png")
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "would both be written to" in plans[1].reason and "--format same" in plans[1].reason
    # under --format same two files written in one format (a.bmp and a.png both as PNG): --format same
    # cannot help, so it is not advised
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), tmp_path / "out", _png, fmt="same")
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "rename one of them" in plans[1].reason and "--format" not in plans[1].reason
    assert "its own --out" not in plans[1].reason  # one folder: another --out would not help
    # from two folders (x/a.bmp and y/a.png, both written as PNG): one --out per folder
    touch(tmp_path / "x" / "b.bmp")
    touch(tmp_path / "y" / "b.png")
    plans = plan_outputs(collect_inputs([tmp_path / "x", tmp_path / "y"], suffixes=[*SUFFIXES, ".bmp"]),
                         tmp_path / "out", _png, fmt="same")
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "convert each input folder into its own --out" in plans[1].reason


def test_plan_collision_of_one_name_in_two_folders_and_a_folder_in_the_way(tmp_path: Path) -> None:
    """The same name in two input folders: the advice is one --out per folder (another --format would
    not help); a folder where an output goes is a failure with a reason, not "output exists"."""
    for d in ("d1", "d2"):
        touch(tmp_path / d / "x.png")
    plans = plan_outputs(collect_inputs([tmp_path / "d1", tmp_path / "d2"], suffixes=SUFFIXES), tmp_path / "out",
                         _png)
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "its own --out" in plans[1].reason and "--format" not in plans[1].reason
    touch(tmp_path / "a.png")
    (tmp_path / "o" / "a.png").mkdir(parents=True)
    for overwrite in (False, True):
        plan = plan_outputs(collect_inputs([tmp_path / "a.png"], suffixes=SUFFIXES), tmp_path / "o", _png,
                            overwrite=overwrite)[0]
        assert plan.status == "failed" and "a folder stands where the output" in plan.reason


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


# ---------------------------------------------------------------------------- patterns (gitignore rules)


def test_include_matches_extensions_case_insensitively(tree: Path) -> None:
    assert rels(collect_inputs([tree], include=["*.jpg"], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg"]
    assert rels(collect_inputs([tree], include=["*.JPG"], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg"]


def test_exclude_a_folder_name_at_any_depth(tree: Path) -> None:
    assert rels(collect_inputs([tree], exclude=["sub"], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg"]
    assert rels(collect_inputs([tree], exclude=["deep/"], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg", "sub/c.png"]
    # anchored: only the top-level a.jpg
    touch(tree / "sub" / "a.jpg")
    assert "sub/a.jpg" in rels(collect_inputs([tree], exclude=["/a.jpg"], suffixes=SUFFIXES))
    assert "a.jpg" not in rels(collect_inputs([tree], exclude=["/a.jpg"], suffixes=SUFFIXES))


def test_double_star_and_negation(tree: Path) -> None:
    assert rels(collect_inputs([tree], include=["sub/**/*.png"], suffixes=SUFFIXES)) == [
        "sub/c.png", "sub/deep/ünï.png"
    ]
    assert rels(collect_inputs([tree], exclude=["*.png", "!ünï.png"], suffixes=SUFFIXES)) == [
        "B.JPG", "a.jpg", "sub/deep/d one:two.jpeg", "sub/deep/ünï.png"
    ]


def test_input_glob_is_case_insensitive_and_does_not_leave_its_root(tree: Path) -> None:
    assert rels(collect_inputs([str(tree / "*.JPG")], suffixes=SUFFIXES)) == ["B.JPG", "a.jpg"]
    assert rels(collect_inputs([str(tree / "sub" / "*")], suffixes=SUFFIXES, recursive=False)) == ["c.png"]


def test_found_says_why_things_are_left_out(tree: Path) -> None:
    files = collect_inputs([tree], exclude=["sub/deep"], suffixes=SUFFIXES)
    why = {f.path.relative_to(tree).as_posix(): (f.status, f.reason) for f in files.found}
    assert why["notes.txt"] == ("ignored", "not an image suffix")
    assert why[".hidden.jpg"][0] == "ignored" and "hidden" in why[".hidden.jpg"][1]
    assert why["sub/deep"] == ("ignored", "folder excluded by --exclude")


def test_non_regular_files_loops_and_folder_links(tmp_path: Path) -> None:
    import os

    root = tmp_path / "in"
    touch(root / "a.png")
    os.mkfifo(root / "p.png")
    (root / "l1.png").symlink_to("l2.png")
    (root / "l2.png").symlink_to("l1.png")
    (root / "gone.png").symlink_to("nowhere.png")
    (root / "link").symlink_to(root)
    files = collect_inputs([root], suffixes=SUFFIXES)
    assert rels(files) == ["a.png"]
    why = {f.path.name: (f.status, f.reason) for f in files.found}
    assert why["p.png"][0] == "skipped" and "named pipe" in why["p.png"][1]
    assert why["l1.png"][0] == "skipped" and "symlink loop" in why["l1.png"][1]
    assert why["gone.png"][0] == "skipped" and "broken symlink" in why["gone.png"][1]
    assert why["link"][0] == "skipped" and "not followed" in why["link"][1]
    # named on the command line: that input fails (it was asked for), nothing hangs
    named = collect_inputs([root / "p.png", root / "l1.png"], suffixes=SUFFIXES)
    assert list(named) == [] and [f.status for f in named.found] == ["failed", "failed"]


def test_unreadable_folder_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    root = tmp_path / "in"
    touch(root / "a.png")
    touch(root / "locked" / "b.png")
    real = os.scandir

    def scandir(path: object) -> object:  # what a mode-000 folder gives a non-root user
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    files = collect_inputs([root], suffixes=SUFFIXES)
    assert rels(files) == ["a.png"]
    (failed,) = [f for f in files.found if f.status == "failed"]
    assert failed.path == root / "locked" and "permission denied" in failed.reason


# ------------------------------------------------------------------------------------ single output file


def test_one_file_and_an_image_out_writes_that_file(tmp_path: Path) -> None:
    src = touch(tmp_path / "photo.jpg")
    out = tmp_path / "painting.png"
    (plan,) = plan_outputs(collect_inputs([src], suffixes=SUFFIXES), out, _same)
    assert plan.dst == out and plan.status == "pending"
    out.write_bytes(b"old")
    assert plan_outputs(collect_inputs([src], suffixes=SUFFIXES), out, _same)[0].status == "skipped"
    (tmp_path / "folder.png").mkdir()  # an existing folder with an image-like name stays a folder
    (plan,) = plan_outputs(collect_inputs([src], suffixes=SUFFIXES), tmp_path / "folder.png", _same)
    assert plan.dst == tmp_path / "folder.png" / "photo.jpg"


def test_image_out_with_several_inputs_is_a_usage_error(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="names one image file"):
        plan_outputs(collect_inputs([tree], suffixes=SUFFIXES), tmp_path / "x.png", _same)


def test_too_long_names_fail_while_planning(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / ("a" * 251 + ".jpg"))
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), tmp_path / "out", lambda p: ".webp")
    assert plans[0].status == "failed" and "name too long" in plans[0].reason


def test_an_out_named_as_an_image_imgxlate_cannot_write_is_refused(tmp_path: Path) -> None:
    """--out name.bmp used to become a folder name.bmp/ holding a.png; an existing folder of that name
    is still a folder."""
    touch(tmp_path / "a.png")
    files = collect_inputs([tmp_path / "a.png"], suffixes=SUFFIXES)
    with pytest.raises(UsageError, match="not .bmp"):
        plan_outputs(files, tmp_path / "name.bmp", _png)
    (tmp_path / "old.bmp").mkdir()
    assert plan_outputs(files, tmp_path / "old.bmp", _png)[0].dst == tmp_path / "old.bmp" / "a.png"


def test_failure_reasons_give_output_advice_only_for_errors_of_writing() -> None:
    """A refused read (an input's 403, an unreadable source) is not told to check the output folder; a
    full disk or a name too long is told what to do about the output."""
    import errno

    from imgxlate.batch import failure_reason

    denied = failure_reason(PermissionError(errno.EACCES, "Permission denied", "in/a.jpg"))
    assert denied == ("'in/a.jpg': Permission denied; check the permissions of that file and of the folders it "
                      "is in") and "output" not in denied
    full = failure_reason(OSError(errno.ENOSPC, "No space left on device", "out/a.png"))
    assert "'out/a.png'" in full and "disk is full" in full
    long = failure_reason(OSError(errno.ENAMETOOLONG, "File name too long", "out/x.png"))
    assert "shorten" in long
    assert failure_reason(ValueError("bad\nsecond line")) == "ValueError: bad"


def test_nas_and_system_folders_are_not_walked_unless_given(tmp_path: Path) -> None:
    """Synology keeps several thumbnails per photo in @eaDir (a folder named like the photo)."""
    root = tmp_path / "lib"
    touch(root / "a.jpg")
    touch(root / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_XL.jpg")
    touch(root / "sub" / "#recycle" / "old.jpg")
    touch(root / "$RECYCLE.BIN" / "x.jpg")
    files = collect_inputs([root], suffixes=SUFFIXES)
    assert rels(files) == ["a.jpg"]
    ignored = {f.path.name: f.reason for f in files.found if f.status == "ignored"}
    assert "NAS or system folder" in ignored["@eaDir"] and "#recycle" in ignored
    assert rels(collect_inputs([root / "@eaDir"], suffixes=SUFFIXES)) == ["a.jpg/SYNOPHOTO_THUMB_XL.jpg"]


def test_a_glob_below_a_folder_with_brackets_in_its_name(tmp_path: Path) -> None:
    touch(tmp_path / "2023 [Paris]" / "a.jpg")
    touch(tmp_path / "2023 [Paris]" / "b.png")
    files = collect_inputs([str(tmp_path / "2023 [Paris]" / "*.jpg")], suffixes=SUFFIXES)
    assert [f.src.name for f in files] == ["a.jpg"]
    touch(tmp_path / "P" / "a.jpg")  # where no such folder exists, [..] is still a character class
    assert [f.src.parent.name for f in collect_inputs([str(tmp_path / "[OP]" / "*.jpg")], suffixes=SUFFIXES)] == ["P"]


def test_an_empty_file_at_the_output_is_replaced_not_counted_as_done(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "a.png")
    touch(root / "b.png")
    out = tmp_path / "out"
    touch(out / "a.png", b"")  # left by something else: imgxlate verifies its results before the rename
    touch(out / "b.png")
    plans = plan_outputs(collect_inputs([root], suffixes=SUFFIXES), out, _same)
    assert [(p.status, p.replace) for p in plans] == [("pending", True), ("skipped", False)]


def test_overwrite_never_replaces_a_file_inside_a_walked_input_folder(tmp_path: Path) -> None:
    """--out inside the input: the output folder is not walked, so a picture of the user's in it that
    has an input's name looks exactly like an earlier result."""
    root = tmp_path / "lib"
    touch(root / "x.png")
    touch(root / "y.png")
    mine = touch(root / "sub" / "x.png", b"my own photo")
    files = collect_inputs([root], out_dir=root / "sub", suffixes=SUFFIXES)
    plans = plan_outputs(files, root / "sub", _same, overwrite=True, protected=walked_folders([root]))
    assert [p.status for p in plans] == ["failed", "pending"]
    assert "inside the input folder" in plans[0].reason and "delete the old results first" in plans[0].reason
    assert mine.read_bytes() == b"my own photo"
    other = tmp_path / "elsewhere"  # an --out outside the inputs: --overwrite replaces as asked
    touch(other / "x.png")
    assert [p.status for p in plan_outputs(files, other, _same, overwrite=True, protected=walked_folders([root]))] == [
        "pending", "pending"]


def test_no_images_says_what_was_found(tmp_path: Path) -> None:
    from imgxlate.batch import plan_conversion

    for name in ("clip.mp4", ".x.jpg", "IMG_0001", "notes.txt"):
        touch(tmp_path / "lib" / name)
    with pytest.raises(UsageError) as err:
        plan_conversion(tmp_path / "lib", tmp_path / "out")
    text = str(err.value)
    assert "1 video (`imgxlate video` converts videos)" in text
    assert "1 hidden file or folder" in text and "2 files without an image suffix" in text


def test_overwrite_under_a_glob_root_protects_only_what_the_pattern_would_read(tmp_path: Path) -> None:
    """A quoted '*.png' in a folder, --out res: res/a.png is never read by the pattern, so --overwrite
    replaces it; '**/*.png' would read it (were res not the output folder), so it is kept."""
    root = tmp_path / "c2"
    touch(root / "a.png")
    touch(root / "res" / "a.png")
    flat = str(root / "*.png")
    files = collect_inputs([flat], out_dir=root / "res", suffixes=SUFFIXES)
    assert [p.status for p in plan_outputs(files, root / "res", _same, overwrite=True,
                                           protected=walked_folders([flat]))] == ["pending"]
    deep = str(root / "**" / "*.png")
    files = collect_inputs([deep], out_dir=root / "res", suffixes=SUFFIXES)
    plans = plan_outputs(files, root / "res", _same, overwrite=True, protected=walked_folders([deep]))
    assert [p.status for p in plans] == ["failed"]
    kept = plan_outputs(files, root / "res", _same, protected=walked_folders([deep]))
    assert kept[0].status == "skipped" and "delete it to convert again" in kept[0].reason


def test_a_pattern_whose_matches_are_all_in_system_folders_says_so(tmp_path: Path) -> None:
    touch(tmp_path / "lib" / "@eaDir" / "a.jpg" / "THUMB.jpg")
    with pytest.raises(UsageError, match="outside NAS and system folders"):
        collect_inputs([str(tmp_path / "lib" / "**" / "*.jpg")], suffixes=SUFFIXES)
    from imgxlate.inputs import left_out_summary

    found = collect_inputs([tmp_path / "lib"], suffixes=SUFFIXES).found
    assert left_out_summary(found) == "1 NAS or system folder (give one as an input to convert it)"


@pytest.fixture
def case_blind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """tmp_path/usb ignores case, as an exFAT SD card or a default macOS / Windows disk does (the probe
    itself is tested on this disk below, and was checked by hand on an exFAT image). Files cannot be
    made to exist under two spellings here, so what is looked up is the plan, not the disk."""
    from imgxlate import _paths

    usb = tmp_path / "usb"
    usb.mkdir()
    monkeypatch.setattr(_paths, "_case_root", lambda folder: str(usb) if folder.startswith(str(usb)) else None)
    return usb


def test_the_probe_says_this_disk_keeps_case(tmp_path: Path) -> None:
    from imgxlate._paths import _case_root, _folds_case_at, _swap_ascii, path_key

    if _case_root(str(tmp_path)) is not None:
        pytest.skip("the temporary folder is on a disk that ignores case")
    touch(tmp_path / "Trip" / "a.jpg")
    (tmp_path / "empty").mkdir()
    assert not _folds_case_at(str(tmp_path / "Trip")) and not _folds_case_at(str(tmp_path))
    assert not _folds_case_at(str(tmp_path / "empty"))  # asked with a temp file, which is gone again
    assert list((tmp_path / "empty").iterdir()) == []
    assert path_key(tmp_path / "Trip") != path_key(tmp_path / "TRIP")
    assert _swap_ascii("Straße") == "sTRAßE"  # str.swapcase gives "sTRASSE", a name that never exists


def test_on_a_disk_that_ignores_case_an_out_in_another_case_is_the_input_folder(case_blind: Path) -> None:
    """`--out usb/TRIP` for the input `usb/trip` wrote over the photos with --overwrite (the folder
    checks compared the spellings), and `--out usb/trip/VG` walked the earlier results in usb/trip/vg."""
    from imgxlate.batch import plan_conversion
    from imgxlate.inputs import WalkedFolder

    trip = case_blind / "trip"
    touch(trip / "a.jpg")
    touch(trip / "vg" / "a.jpg")
    with pytest.raises(UsageError, match="--out is the input folder"):
        plan_conversion(trip, case_blind / "TRIP", overwrite=True)
    files = collect_inputs([trip], out_dir=case_blind / "TRIP" / "VG", suffixes=SUFFIXES)
    assert [f.rel.as_posix() for f in files] == ["a.jpg"]  # vg is the output folder: not read
    assert WalkedFolder(trip).would_read(case_blind / "TRIP" / "VG" / "A.JPG")  # so it is kept, not replaced


def test_on_a_disk_that_ignores_case_two_names_for_one_output_collide(tmp_path: Path, case_blind: Path) -> None:
    """IMG_1.jpg and img_1.JPG (on a disk that keeps case) are one file on such a disk. The second was
    reported as another run's file, and with --overwrite the first result was replaced while both were
    counted converted."""
    touch(tmp_path / "in" / "IMG_1.jpg")
    touch(tmp_path / "in" / "img_1.JPG")
    files = collect_inputs([tmp_path / "in"], suffixes=SUFFIXES)
    if len(files) < 2:
        pytest.skip("the temporary folder is on a disk that ignores case: the two inputs are one file")
    plans = plan_outputs(files, case_blind / "o", _same, overwrite=True, fmt="png")
    assert [p.status for p in plans] == ["pending", "failed"]
    assert "would both be written to" in plans[1].reason and "which ignores case" in plans[1].reason
    assert "--format same" not in plans[1].reason  # it would collide in any format


def test_only_the_part_of_a_path_on_a_disk_that_ignores_case_is_folded(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Pics (a disk that keeps case) with a card mounted at Pics/usb: the whole key was folded
    ('.../pics/usb/a.jpg'), so it was not inside the input folder '.../Pics', and --overwrite
    replaced the user's own Pics/usb/a.jpg."""
    from imgxlate import _paths
    from imgxlate._paths import path_key
    from imgxlate.inputs import WalkedFolder

    pics = tmp_path / "Pics"
    card = pics / "usb"
    touch(pics / "a.jpg")
    mine = touch(card / "a.jpg", b"my own")
    root = str(card.resolve())  # the card's file system starts here, as at a mount point
    monkeypatch.setattr(_paths, "_case_root", lambda folder: root if folder.startswith(root) else None)
    assert path_key(card / "A.JPG") == str(card.resolve()) + "/a.jpg"  # folded below the card only
    assert WalkedFolder(pics).would_read(card / "a.jpg")
    plans = plan_outputs(collect_inputs([pics], out_dir=card, suffixes=SUFFIXES), card, _same, overwrite=True,
                         protected=walked_folders([pics]))
    assert [p.status for p in plans] == ["failed"] and mine.read_bytes() == b"my own"


def test_the_one_file_named_as_out_is_replaced_with_overwrite(tmp_path: Path) -> None:
    """`convert photo.jpg --out painting.jpg --overwrite` (the README's example, run twice): the
    named output beside the input was taken for one of the user's pictures and never replaced."""
    src = touch(tmp_path / "photo.jpg")
    touch(tmp_path / "painting.jpg")
    files = collect_inputs([src], suffixes=SUFFIXES)
    plans = plan_outputs(files, tmp_path / "painting.jpg", _same, overwrite=True, protected=walked_folders([src]))
    assert [(p.status, p.replace) for p in plans] == [("pending", True)]


def test_a_file_named_through_a_link_protects_the_folder_it_was_named_in(tmp_path: Path) -> None:
    """Best/a.jpg, a link to ../originals/a.jpg: the target's folder was protected, and --overwrite
    replaced the user's own Best/a.png beside the link."""
    touch(tmp_path / "originals" / "a.jpg")
    (tmp_path / "Best").mkdir()
    (tmp_path / "Best" / "a.jpg").symlink_to(tmp_path / "originals" / "a.jpg")
    mine = touch(tmp_path / "Best" / "a.png", b"mine")
    src = tmp_path / "Best" / "a.jpg"
    plans = plan_outputs(collect_inputs([src], suffixes=SUFFIXES), tmp_path / "Best", lambda p: ".png",
                         overwrite=True, protected=walked_folders([src]))
    assert [p.status for p in plans] == ["failed"] and mine.read_bytes() == b"mine"


def test_many_files_named_in_one_folder_are_one_protected_folder(tmp_path: Path) -> None:
    """A shell's *.jpg names every file: one protected entry per file made a resume quadratic (1000
    named files with their outputs present: 28.8 s of planning, 0.13 s before)."""
    import time

    names = [touch(tmp_path / "many" / f"IMG_{i:04d}.jpg") for i in range(1500)]
    for n in names:
        touch(tmp_path / "out" / n.name)
    protected = walked_folders(names)
    assert len(protected) == 1 and protected[0].top_only
    t = time.perf_counter()
    plans = plan_outputs(collect_inputs(names, suffixes=SUFFIXES), tmp_path / "out", _same, protected=protected)
    assert all(p.status == "skipped" for p in plans) and time.perf_counter() - t < 20


def test_a_file_converted_into_its_own_folder_never_replaces_the_pictures_beside_it(tmp_path: Path) -> None:
    """`convert P/IMG_0001.jpg --out P --format png` said "pass --overwrite", which then replaced the
    user's own P/IMG_0001.png: the folder of a file given by name holds the user's pictures too."""
    src = touch(tmp_path / "P" / "IMG_0001.jpg")
    mine = touch(tmp_path / "P" / "IMG_0001.png", b"my own png")
    files = collect_inputs([src], suffixes=SUFFIXES)
    protected = walked_folders([src])
    kept = plan_outputs(files, tmp_path / "P", lambda p: ".png", protected=protected)
    assert kept[0].status == "skipped" and "--overwrite does not replace it" in kept[0].reason
    refused = plan_outputs(files, tmp_path / "P", lambda p: ".png", overwrite=True, protected=protected)
    assert refused[0].status == "failed" and mine.read_bytes() == b"my own png"
    touch(tmp_path / "P" / "sub" / "IMG_0001.png")  # below the file's folder: not a neighbour
    deeper = plan_outputs(files, tmp_path / "P" / "sub", lambda p: ".png", overwrite=True, protected=protected)
    assert deeper[0].status == "pending"


def test_names_a_windows_formatted_disk_refuses_fail_while_planning(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Photos named "2014-08-01 17:41:55.jpg" converted to an exFAT stick failed one by one after each
    was translated, with "No such file or directory". The disk is asked once, before any work."""
    from imgxlate import _atomic

    touch(tmp_path / "in" / "2014-08-01 17:41:55.jpg")
    touch(tmp_path / "in" / "ok.jpg")
    files = collect_inputs([tmp_path / "in"], suffixes=SUFFIXES)
    assert _atomic.refused_characters(tmp_path / "o") == frozenset()  # this disk takes them all
    assert [p.status for p in plan_outputs(files, tmp_path / "o", _same)] == ["pending", "pending"]
    monkeypatch.setattr(_atomic, "_refused_in", lambda folder: frozenset(':"'))  # as exFAT answers
    plans = plan_outputs(files, tmp_path / "o", _same)
    assert [p.status for p in plans] == ["failed", "pending"]
    assert "this disk does not allow : in file names" in plans[0].reason and "rename the input" in plans[0].reason
    with pytest.raises(UsageError, match="--out .*10:00: this disk does not allow : .* choose another --out"):
        plan_outputs(files, tmp_path / "10:00", _same)  # a folder still to be made: every file would fail


def test_an_explicit_file_without_an_image_suffix_keeps_its_whole_name(tmp_path: Path) -> None:
    """scan.2024.01 and scan.2024.02 both became scan.2024.jpg (one then failed as a collision); a
    3D camera's DSCF0001.MPO (read by Pillow's JPEG plugin) is named as an image, but not walked beside
    the JPEG of the same picture and stem that the camera writes with it (two results, or a collision).
    A lone MPO (a Nintendo 3DS's, or one whose JPEG was deleted) is walked: it was left out silently."""
    files = collect_inputs([touch(tmp_path / "scan.2024.01"), touch(tmp_path / "scan.2024.02"),
                            touch(tmp_path / "photo.HEIC"), touch(tmp_path / "DSCF0001.MPO")])
    plans = plan_outputs(files, tmp_path / "o", lambda p: ".jpg")
    assert [p.dst.name for p in plans] == ["scan.2024.01.jpg", "scan.2024.02.jpg", "photo.jpg", "DSCF0001.jpg"]
    assert [p.status for p in plans] == ["pending"] * 4
    touch(tmp_path / "cam" / "DSCF0002.MPO")
    touch(tmp_path / "cam" / "DSCF0002.JPG")
    found = collect_inputs([tmp_path / "cam"])
    assert rels(found) == ["DSCF0002.JPG"]
    assert [(f.path.name, f.status) for f in found.found] == [("DSCF0002.MPO", "ignored")]
    assert "JPEG twin 'DSCF0002.JPG'" in found.found[0].reason
    touch(tmp_path / "cam" / "HNI_0001.MPO")
    touch(tmp_path / "cam" / "sub" / "HNI_0002.mpo")
    touch(tmp_path / "cam" / "HNI_0002.jpg")  # a twin in another folder is not this one's
    assert rels(collect_inputs([tmp_path / "cam"])) == ["DSCF0002.JPG", "HNI_0001.MPO", "HNI_0002.jpg",
                                                        "sub/HNI_0002.mpo"]
    # a twin the patterns leave out does not count: the MPO is then the picture converted
    assert rels(collect_inputs([tmp_path / "cam"], include=["*.mpo"])) == ["DSCF0002.MPO", "HNI_0001.MPO",
                                                                          "sub/HNI_0002.mpo"]
    assert "DSCF0002.MPO" in rels(collect_inputs([tmp_path / "cam"], exclude=["*.jpg"]))
    assert rels(collect_inputs([str(tmp_path / "cam" / "DSCF*.MPO")])) == ["DSCF0002.MPO"]
    touch(tmp_path / "cam2" / "DSCF0003.MPO")
    touch(tmp_path / "cam2" / "dscf0003.jpeg")  # the twin's real name is said, whatever its case
    found = collect_inputs([tmp_path / "cam2"])
    assert rels(found) == ["dscf0003.jpeg"] and "JPEG twin 'dscf0003.jpeg'" in found.found[0].reason


def test_patterns_match_decomposed_names_hash_names_and_dot_slash(tmp_path: Path) -> None:
    """macOS and NAS folders spell 'Café' decomposed (NFD): --include 'Café*' matched nothing and
    --exclude 'Été' let the folder through; '#draft*' was a gitignore comment and './drafts' matched
    nothing, all silently."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Café Noël.jpg")
    touch(tmp_path / "in" / nfd)
    touch(tmp_path / "in" / unicodedata.normalize("NFD", "Été") / "x.jpg")
    touch(tmp_path / "in" / "#draft1.jpg")
    touch(tmp_path / "in" / "drafts" / "d.jpg")
    touch(tmp_path / "in" / "a" / "drafts" / "e.jpg")
    root = tmp_path / "in"
    assert [f.rel.name for f in collect_inputs([root], include=["Café*"], suffixes=SUFFIXES)] == [nfd]
    left = rels(collect_inputs([root], exclude=["Été", "#draft*", "./drafts"], suffixes=SUFFIXES))
    assert left == [nfd, "a/drafts/e.jpg"]
    assert [f.rel.name for f in collect_inputs([str(root / "Café*.jpg")], suffixes=SUFFIXES)] == [nfd]


def test_a_glob_ending_in_a_slash_takes_folders_only(tmp_path: Path) -> None:
    """'g/*/' took g/top.jpg too, though a trailing '/' means folders (the shell's, and gitignore's)."""
    touch(tmp_path / "g" / "top.jpg")
    touch(tmp_path / "g" / "s1" / "a.jpg")
    assert rels(collect_inputs([str(tmp_path / "g" / "*") + "/"], suffixes=SUFFIXES)) == ["s1/a.jpg"]
    assert rels(collect_inputs([str(tmp_path / "g" / "*")], suffixes=SUFFIXES)) == ["top.jpg", "s1/a.jpg"]
