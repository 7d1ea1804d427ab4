"""imgxlate._atomic: verified atomic writes, "disk full" as an error, stale temp files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_fs import fill, small_tmpfs

from imgxlate import _atomic
from imgxlate._atomic import (
    TEMP_PREFIX,
    atomic_open,
    atomic_path,
    is_disk_full,
    is_temp_name,
    remove_stale_temps,
    write_bytes_atomic,
)
from imgxlate.errors import DiskFullError, ImgxlateError


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_write_bytes_atomic_writes_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    write_bytes_atomic(target, b"x" * 100_000)
    assert target.read_bytes() == b"x" * 100_000
    assert _temps(target.parent) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ------------------------------------------------------------------------------------ a real full disk


def test_full_tmpfs_is_disk_full_and_leaves_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 256) as small:
        fill(small, 64 * 1024)
        target = small / "out.bin"
        # 90 % of the free space + a bit more than is free: the case that used to leave a short file.
        with pytest.raises(DiskFullError) as info:
            write_bytes_atomic(target, os.urandom(80 * 1024))
        assert "disk full" in str(info.value) and "out.bin" in str(info.value)
        assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
        assert isinstance(info.value, ImgxlateError) and info.value.exit_code == 1
        assert not target.exists()
        assert _temps(small) == []


def test_full_tmpfs_atomic_open_stream(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 256) as small:
        fill(small, 32 * 1024)
        target = small / "ckpt.pt"
        with pytest.raises(DiskFullError), atomic_open(target) as fh:
            for _ in range(10):
                fh.write(os.urandom(8 * 1024))
        assert not target.exists()
        assert _temps(small) == []


def test_full_tmpfs_atomic_path_writer_error(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 256) as small:
        fill(small, 16 * 1024)
        target = small / "clip.mp4"
        with pytest.raises(DiskFullError) as info, atomic_path(target) as tmp:
            tmp.write_bytes(os.urandom(64 * 1024))  # Python's own writer raises ENOSPC
        assert is_disk_full(info.value)
        assert not target.exists() and _temps(small) == []


# ------------------------------------------------------------------------ injected faults (run anywhere)


def test_short_write_then_enospc_is_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the kernel does when a file system fills: a short write, then ENOSPC."""
    real_write = os.write
    budget = {"left": 5000}

    def write(fd: int, data: bytes) -> int:
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(memoryview(data)[: budget["left"]]))
        budget["left"] -= n
        return n

    monkeypatch.setattr(_atomic.os, "write", write)
    target = tmp_path / "out.jpg"
    with pytest.raises(DiskFullError, match="5000 of 12000 bytes"):
        write_bytes_atomic(target, b"y" * 12000)
    assert not target.exists() and _temps(tmp_path) == []


def test_short_write_is_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short write that is not an error (signal, pipe-like file systems) is continued, not lost."""
    real_write = os.write
    monkeypatch.setattr(_atomic.os, "write", lambda fd, data: real_write(fd, bytes(memoryview(data)[:777])))
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, bytes(range(256)) * 40)
    assert target.read_bytes() == bytes(range(256)) * 40


def test_silently_dropped_bytes_are_caught_by_the_size_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that claims success for bytes it dropped (Pillow's encoders did this on a full disk)
    still cannot put a short file under the final name: the size on disk is compared."""
    real_write = os.write
    calls = {"n": 0}

    def lying_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        view = memoryview(data)
        if calls["n"] == 1:
            real_write(fd, bytes(view[: len(view) // 2]))
        return len(view)

    monkeypatch.setattr(_atomic.os, "write", lying_write)
    target = tmp_path / "out.tif"
    with pytest.raises(DiskFullError, match="only 3000 of 6000 bytes"):
        write_bytes_atomic(target, b"z" * 6000)
    assert not target.exists() and _temps(tmp_path) == []


def test_enospc_from_fsync_is_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Delayed allocation / network file systems report a full disk only at fsync."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    target = tmp_path / "a.png"
    with pytest.raises(DiskFullError):
        write_bytes_atomic(target, b"abc")
    assert not target.exists() and _temps(tmp_path) == []


def test_atomic_path_keeps_other_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise ValueError("encoder failed")
    assert not (tmp_path / "x.txt").exists() and _temps(tmp_path) == []


def test_atomic_open_writes_sequential_and_seeking(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "a.bin") as fh:
        fh.write(b"0123456789")
        fh.seek(2)
        fh.write(b"xx")
    assert (tmp_path / "a.bin").read_bytes() == b"01xx456789"


def test_atomic_open_with_torch_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    with atomic_open(tmp_path / "w.pt") as fh:
        torch.save({"w": torch.arange(1000)}, fh)
    assert torch.load(tmp_path / "w.pt")["w"].sum().item() == sum(range(1000))


# --------------------------------------------------------------------------------------- stale temps


def test_temp_names() -> None:
    assert is_temp_name(".imgxlate-tmp-ab12_x9z.jpg")
    assert is_temp_name(".imgxlate-tmp-ab12_x9z")
    assert not is_temp_name(".imgxlate-tmp-remove-horse2zebra-123")  # registry's trash folder
    assert not is_temp_name("photo.imgxlate-tmp-ab12_x9z.jpg")
    assert not is_temp_name(".imgxlate-tmp-AB12X9ZQ.jpg")


def test_remove_stale_temps_only_old_unheld_own_files(tmp_path: Path) -> None:
    old = tmp_path / ".imgxlate-tmp-aaaaaaaa.jpg"
    held = tmp_path / ".imgxlate-tmp-bbbbbbbb.png"
    foreign = tmp_path / ".imgxlate-tmp-notours.jpg"
    folder = tmp_path / ".imgxlate-tmp-cccccccc"
    for p in (old, held, foreign):
        p.write_bytes(b"partial")
    folder.mkdir()
    past = time.time() - 3600
    for p in (old, held, foreign, folder):
        os.utime(p, (past, past))
    # written 30 s ago, before this run started, by a process /proc cannot show (a run in another
    # container writing into the same shared folder): recently modified, so kept
    recent = tmp_path / ".imgxlate-tmp-ffffffff.mp4"
    recent.write_bytes(b"being written elsewhere")
    os.utime(recent, (time.time() - 30, time.time() - 30))
    started = time.time()
    new = tmp_path / ".imgxlate-tmp-dddddddd.jpg"  # written after the run started: another run's
    new.write_bytes(b"in flight")
    with open(held, "rb"):  # an open handle: a live process (this one) is still writing it
        removed = remove_stale_temps([tmp_path, tmp_path / "missing"], started)
    assert removed == [old]
    assert not old.exists()
    assert held.exists() and foreign.exists() and folder.is_dir() and new.exists() and recent.exists()


def test_file_held_by_another_live_process_is_kept(tmp_path: Path) -> None:
    held = tmp_path / ".imgxlate-tmp-eeeeeeee.mp4"
    held.write_bytes(b"x")
    past = time.time() - 3600
    os.utime(held, (past, past))
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys,time; f=open({str(held)!r},'ab'); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("no /proc: open files cannot be seen; only day-old temp files are removed")
        assert remove_stale_temps([tmp_path], time.time()) == []
        assert held.exists()
    finally:
        child.kill()
        child.wait()
    assert remove_stale_temps([tmp_path], time.time()) == [held]


@pytest.mark.parametrize("link_errno", [None, errno.EPERM, errno.EINVAL], ids=["links", "eperm", "einval"])
def test_no_replace_keeps_a_file_that_appeared_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         link_errno: int | None) -> None:
    """``replace=False``: a new name is written as usual; a file another writer put at the target is
    kept, the writer gets OutputExistsError and no temp file stays. Without hard links (FAT, some
    network file systems: os.link fails with EPERM; Windows on FAT/exFAT with EINVAL) the same, by a
    check just before the rename. A dangling link at the name is written over (it is no file)."""
    from imgxlate.errors import OutputExistsError

    if link_errno is not None:
        def no_link(src: object, dst: object) -> None:
            raise OSError(link_errno, "no hard links here")

        monkeypatch.setattr(_atomic.os, "link", no_link)
    target = tmp_path / "out.png"
    write_bytes_atomic(target, b"mine", replace=False)
    assert target.read_bytes() == b"mine" and _temps(tmp_path) == []
    (tmp_path / "theirs.png").write_bytes(b"theirs")
    os.replace(tmp_path / "theirs.png", target)  # another run finished it meanwhile
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_bytes_atomic(target, b"second", replace=False)
    assert target.read_bytes() == b"theirs" and _temps(tmp_path) == []
    write_bytes_atomic(target, b"replaced")  # the default replaces
    assert target.read_bytes() == b"replaced"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "gone.png")
    write_bytes_atomic(dangling, b"new", replace=False)
    assert not dangling.is_symlink() and dangling.read_bytes() == b"new"


def test_disk_full_while_making_the_folder_or_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the output folder's creation or the temp file's is DiskFullError (a batch stops on
    it), as it is from a write."""
    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", full)
    with pytest.raises(DiskFullError, match="disk full"):
        write_bytes_atomic(tmp_path / "a.png", b"x")
    monkeypatch.undo()
    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(DiskFullError, match="disk full"):
        write_bytes_atomic(tmp_path / "new" / "a.png", b"x")
