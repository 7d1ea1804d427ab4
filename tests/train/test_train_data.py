import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import write_images

from imgxlate.errors import TrainingError, UsageError
from imgxlate.train.data import (
    EpochSampler,
    UnpairedDataset,
    UnreadableImageWarning,
    find_images,
    load_rgb,
    scan_folder,
)


def test_load_rgb_modes(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 4), 77).save(gray)
    assert load_rgb(gray).mode == "RGB" and load_rgb(gray).getpixel((0, 0)) == (77, 77, 77)

    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black -> white
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black -> mid grey
    rgba.save(tmp_path / "rgba.png")
    img = load_rgb(tmp_path / "rgba.png")
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((2, 0)) == (255, 0, 0)
    assert all(120 <= c <= 135 for c in img.getpixel((1, 0)))

    sixteen = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    sixteen.save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    assert load_rgb(tmp_path / "16.png").getpixel((0, 0)) == (255, 255, 255)  # scaled, not clipped
    Image.fromarray(np.full((3, 3), 32896, dtype=np.uint16)).save(tmp_path / "16mid.png")
    assert load_rgb(tmp_path / "16mid.png").getpixel((0, 0)) == (128, 128, 128)

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    pal.save(tmp_path / "pal.png", transparency=0)
    img = load_rgb(tmp_path / "pal.png")
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 1)) == (0, 255, 0)

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = load_rgb(tmp_path / "cmyk.jpg").getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60


def test_exif_rotation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (10, 20)


def test_find_images_recursive_and_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "a" / "sub", 2, seed=0)
    write_images(tmp_path / "a" / ".hidden", 2, seed=0)
    (tmp_path / "a" / "notes.txt").write_text("x")
    files = find_images(tmp_path / "a")
    assert [f.name for f in files] == ["img 00.png", "img 01.png"]
    with pytest.raises(UsageError, match="does not exist") as err:  # exit 2, as convert's missing input
        find_images(tmp_path / "missing", "domain A")
    assert "missing" in str(err.value) and "domain A" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="has no image files") as err:
        find_images(tmp_path / "empty", "domain B")
    assert "empty" in str(err.value) and ".jpg, .jpeg, .png" in str(err.value)


def test_find_images_leaves_out_nas_and_system_folders_and_walks_a_linked_loop_once(tmp_path: Path) -> None:
    """Synology's @eaDir thumbnails, recycle bins and __MACOSX were read as training images (convert
    leaves them out: one rule, imgxlate.inputs.SYSTEM_FOLDERS); a link back up the tree looped."""
    write_images(tmp_path / "b", 2, seed=0)
    for junk in ("@eaDir/img 00.png", "#recycle", "__MACOSX", "sub/@EADIR"):
        write_images(tmp_path / "b" / junk, 1, seed=1)
    (tmp_path / "b" / "loop").symlink_to(tmp_path / "b")  # followed (datasets are built of links), once
    write_images(tmp_path / "elsewhere", 1, seed=2)
    (tmp_path / "b" / "linked").symlink_to(tmp_path / "elsewhere")
    files = find_images(tmp_path / "b")
    assert [f.relative_to(tmp_path / "b").as_posix() for f in files] == [
        "img 00.png", "img 01.png", "linked/img 00.png"]


def test_only_corrupt_files_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"not a png at all")
    (folder / "y.jpg").write_bytes(b"")
    with pytest.warns(UnreadableImageWarning), pytest.raises(TrainingError, match="none can be read") as err:
        scan_folder(str(folder), "domain A")
    assert str(folder) in str(err.value)


def test_corrupt_file_skipped_with_one_warning(tmp_path: Path) -> None:
    a = write_images(tmp_path / "a", 2, seed=0)
    b = write_images(tmp_path / "b", 2, seed=1)
    (tmp_path / "a" / "broken.png").write_bytes(b"garbage")
    with pytest.warns(UnreadableImageWarning, match="broken.png"):
        files_a = scan_folder(str(tmp_path / "a"), "domain A")
    assert files_a == a
    # a file whose header reads but whose data is truncated: found at first load, replaced, warned once
    good = a[0].read_bytes()
    a[0].write_bytes(good[: len(good) // 2])
    ds = UnpairedDataset(a, b, load_size=36, image_size=32, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # every position of an epoch, three times: each A file is loaded at least three times
        items = [ds[(0, p)] for p in range(len(ds)) for _ in range(3)]
    hits = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert len(hits) == 1 and "img 00.png" in str(hits[0].message)
    assert all(item["A"].shape == (3, 32, 32) for item in items)
    assert ds.bad == {a[0]}


def test_dataset_items_deterministic_and_upscaled(tmp_path: Path) -> None:
    a = write_images(tmp_path / "a", 3, seed=0, size=(12, 10))  # smaller than the crop
    b = write_images(tmp_path / "b", 5, seed=1)
    ds = UnpairedDataset(a, b, load_size=20, image_size=32, seed=7)
    assert len(ds) == 5
    x, y = ds[(2, 3)], ds[(2, 3)]
    assert x["A"].shape == (3, 32, 32) and x["B"].shape == (3, 32, 32)
    assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    assert x["A"].min() >= -1 and x["A"].max() <= 1
    # one epoch visits each A index max(len)/len(A) times, give or take one
    counts = np.bincount([int(ds.permutation(0)[p]) % 3 for p in range(5)], minlength=3)
    assert counts.max() - counts.min() <= 1


def test_sampler_shards_ranks() -> None:
    r0 = EpochSampler(steps_per_epoch=3, batch_size=2, start_step=0, rank=0, world_size=2)
    r1 = EpochSampler(steps_per_epoch=3, batch_size=2, start_step=0, rank=1, world_size=2)
    take = lambda s, n: [k for _, k in zip(range(n), s)]
    k0, k1 = take(r0, 6), take(r1, 6)
    assert not set(k0) & set(k1)
    assert sorted(k0 + k1) == [(0, p) for p in range(12)]
    resumed = EpochSampler(steps_per_epoch=3, batch_size=2, start_step=4, rank=0, world_size=2)
    assert take(resumed, 2) == [(1, 4), (1, 5)]
