"""A full disk never leaves a truncated checkpoint or model under its final name (a real tmpfs)."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from imgxlate.errors import ImgxlateError, TrainingError
from imgxlate.train.checkpoint import load_checkpoint, save_checkpoint
from imgxlate.train.export import export_generators
from imgxlate.train.networks import ResnetGenerator


@pytest.fixture()
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A 256 KiB tmpfs (or ``@pytest.mark.parametrize("small_disk", [SIZE], indirect=True)``), mounted
    for the test (needs root and mount rights; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = getattr(request, "param", "256k")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=False, capture_output=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _state(step: int, kib: int) -> dict:
    return {"format": "imgxlate-cyclegan", "format_version": 1, "step": step, "blob": torch.zeros(kib * 256)}


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(small_disk: Path) -> None:
    path = small_disk / "checkpoints" / "last.pt"
    save_checkpoint(path, _state(1, 64))  # fits
    for kib in (190, 230, 400):  # more than the ~188 KiB left: fails at different points of the write
        with pytest.raises(TrainingError, match="disk full"):
            save_checkpoint(path, _state(2, kib))
        assert load_checkpoint(path)["step"] == 1
        assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


@pytest.mark.parametrize("small_disk", ["4m"], indirect=True)
def test_a_checkpoint_too_big_for_the_disk_is_said_to_be_disk_full(small_disk: Path) -> None:
    """With more than 1 MiB still free once the temp file is gone, only the write's own errno tells
    "disk full" (torch.save reports it as a RuntimeError)."""
    path = small_disk / "checkpoints" / "last.pt"
    save_checkpoint(path, _state(1, 1024))  # 1 MiB
    with pytest.raises(TrainingError, match=r"\(disk full\)"):
        save_checkpoint(path, _state(2, 3 * 1024))  # 3 MiB: more than the ~3 MiB left
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_export_on_a_full_disk_writes_no_model(small_disk: Path) -> None:
    gen = ResnetGenerator(ngf=16, n_blocks=3)  # ~300 KB of weights: more than the disk
    with pytest.raises(ImgxlateError, match="disk full"):
        export_generators(
            {"a2b": gen}, small_disk / "model", "x", "y", {"ngf": 16, "n_blocks": 3}, 32, 1, 0.1
        )
    assert not (small_disk / "model").exists()  # made by the export, and removed with nothing written


# The old pair (ngf 4) is ~160 KiB with its card, a new file (ngf 8) ~170 KiB. On 384 KiB the new a2b
# fits beside the old pair and the new b2a does not: neither beside the old pair and the new a2b's temp
# file, nor (as a one-by-one export would have it) beside the old b2a and the new a2b.
@pytest.mark.parametrize("small_disk", ["384k"], indirect=True)
def test_a_pair_that_does_not_fit_leaves_the_old_pair(small_disk: Path) -> None:
    """Neither new file is renamed into place when the second one does not fit."""
    from imgxlate.metadata import read_onnx_metadata

    model = small_disk / "model"
    tiny = {"ngf": 4, "n_blocks": 1}
    export_generators(
        {"a2b": ResnetGenerator(**tiny), "b2a": ResnetGenerator(**tiny)}, model, "x", "y", tiny, 32, 1, 0.1
    )
    old = {p.name: p.read_bytes() for p in model.iterdir()}
    bigger = {"ngf": 8, "n_blocks": 1}
    with pytest.raises(ImgxlateError, match="disk full"):
        export_generators(
            {"a2b": ResnetGenerator(**bigger), "b2a": ResnetGenerator(**bigger)},
            model, "x", "y", bigger, 32, 2, 0.2, overwrite=True,
        )
    assert {p.name: p.read_bytes() for p in model.iterdir()} == old  # no temp file, nothing replaced
    assert read_onnx_metadata(str(model / "a2b.onnx")).steps == 1


@pytest.mark.parametrize("small_disk", ["8m"], indirect=True)
def test_resuming_into_a_read_only_run_folder_says_so_without_a_traceback(
    small_disk: Path, folders: tuple[Path, Path]
) -> None:
    from train_helpers import tiny_config
    from typer.testing import CliRunner

    from imgxlate.train.cli import app
    from imgxlate.train.loop import train

    run = small_disk / "run"
    train(tiny_config(*folders, run, max_steps=2, export=False))
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=False, capture_output=True)
    if remount.returncode:
        pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
    result = CliRunner().invoke(app, ["--resume", str(run), "--max-steps", "3", "--json"])
    assert result.exit_code == 1, result.output
    assert "cannot write" in result.output and "Read-only file system" in result.output
    assert f"--resume {run}" in result.output and "Traceback" not in result.output
    assert json.loads(result.stdout)["error"]["exit_code"] == 1
    assert load_checkpoint(run)["step"] == 2


@pytest.mark.parametrize("small_disk", ["4m"], indirect=True)
def test_a_disk_that_fills_up_during_training_is_one_message_and_json(
    small_disk: Path, folders: tuple[Path, Path]
) -> None:
    """The log (or TensorBoard, which writes from a thread of its own) hits the full disk: one message
    naming the file and --resume, the JSON error object, no traceback from closing them after."""
    from train_helpers import tiny_config
    from typer.testing import CliRunner

    from imgxlate.train.cli import app
    from imgxlate.train.loop import train

    run = small_disk / "run"
    train(tiny_config(*folders, run, max_steps=2, export=False))
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 1024))  # less than a page left
    result = CliRunner().invoke(app, ["--resume", str(run), "--max-steps", "40", "--log-every", "1", "--json"])
    assert result.exit_code == 1, result.output
    said = json.loads(result.stdout)["error"]
    assert "disk full" in said["message"] and f"--resume {run}" in said["message"], said
    assert "Traceback" not in result.output
    assert load_checkpoint(run)["step"] == 2
