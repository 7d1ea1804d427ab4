"""Atomic, verified file writes: a temp file in the target folder, checked, then ``os.replace``.

A crash, a kill or Ctrl-C leaves either the old file or the complete new one, never half a file. A
full disk is an error (:class:`~imgxlate.errors.DiskFullError`, also an ``OSError`` with errno
``ENOSPC``), never a short file under the final name:

- :func:`write_bytes_atomic` writes every byte (a short ``write`` is retried, then reported), flushes,
  ``fsync``\\ s and compares the size on disk with the data before the rename;
- :func:`atomic_open` gives a file object for writers that stream (``torch.save``, ``json.dump``); on
  exit the same flush, ``fsync`` and size check run before the rename;
- :func:`atomic_path` gives a temp *path* for writers that open files themselves (FFmpeg, PyAV);
  the file is ``fsync``\\ ed before the rename. Such a writer must report its own write errors:
  Pillow's encoders do not (they drop the rest of a short write), so images are encoded in memory
  and written with :func:`write_bytes_atomic`.

After the rename the folder is ``fsync``\\ ed too, so the new name survives a power cut.

Temp files are named ``.imgxlate-tmp-XXXXXXXX<suffix>``. One that a SIGKILL left behind is removed by
:func:`remove_stale_temps` once it is older than the run, has not changed for two minutes and no live
process holds it open.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from imgxlate.errors import DiskFullError, OutputExistsError

TEMP_PREFIX = ".imgxlate-tmp-"
# mkstemp's names: the prefix, 8 characters of [a-z0-9_], then the suffix we gave (the target's).
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}(\.[^/]*)?")
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

__all__ = [
    "TEMP_PREFIX",
    "atomic_open",
    "atomic_path",
    "disk_full_error",
    "explain_write_error",
    "folder_write_problem",
    "is_disk_full",
    "is_temp_name",
    "remove_stale_temps",
    "write_bytes_atomic",
]


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT (no space left, quota exceeded), however wrapped."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def disk_full_error(target: str | os.PathLike[str], detail: str = "") -> DiskFullError:
    """The one "disk full" error every writer raises: names the file, what happened and what to do."""
    more = f" ({detail})" if detail else ""
    return DiskFullError(
        f"disk full while writing {os.fspath(target)!r}{more}; free some space or choose another "
        "output folder, then run the command again"
    )


# Characters that FAT, exFAT and NTFS (SD cards, USB sticks, Windows disks, and network shares of them)
# refuse in names; Linux and macOS disks take them, and photo names have them ("17:41:55.jpg").
WINDOWS_FORBIDDEN = frozenset('<>:"|?*\\')


def forbidden_names_advice(chars: Iterable[str], fix: str = "rename the input") -> str:
    """Why names with ``chars`` cannot be written, and ``fix`` as the first thing to do."""
    shown = " ".join(sorted(chars))
    return (f"this disk does not allow {shown} in file names (FAT, exFAT and NTFS disks and their network shares "
            f"do not); {fix}, or write to a disk formatted for Linux or macOS")


def refused_characters(folder: str | os.PathLike[str]) -> frozenset[str]:
    """Which of :data:`WINDOWS_FORBIDDEN` the file system of ``folder`` (or of the nearest folder above
    it that exists, where it would be made) refuses in names. For a check before any work, made only
    when an output name holds one of them."""
    probe = Path(os.path.abspath(folder))
    while not probe.is_dir() and probe.parent != probe:
        probe = probe.parent
    return _refused_in(str(probe))


@functools.lru_cache(maxsize=64)
def _refused_in(probe: str) -> frozenset[str]:
    """A temp file named with each character is made and removed in the existing folder ``probe``
    (nothing is left); asked once per folder."""
    refused = set()
    for char in sorted(WINDOWS_FORBIDDEN):
        try:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=char, dir=probe)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.EILSEQ):
                refused.add(char)
            continue
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return frozenset(refused)


def explain_write_error(exc: OSError) -> str:
    """What an OS error while writing a file means and what to do, for messages that name the file."""
    code = exc.errno
    what = exc.strerror or str(exc)
    names = "".join(os.path.basename(os.fspath(n)) for n in (exc.filename, exc.filename2) if n)
    folder_there = all(os.path.isdir(os.path.dirname(os.fspath(n)) or ".") for n in (exc.filename, exc.filename2) if n)
    if code in (errno.EINVAL, errno.ENOENT, errno.EILSEQ) and WINDOWS_FORBIDDEN & set(names) and folder_there:
        return f"{what}; {forbidden_names_advice(WINDOWS_FORBIDDEN & set(names))}"
    if code in _DISK_FULL_ERRNOS:
        return f"{what}; the disk is full: free some space or choose another output folder"
    if code == errno.ENAMETOOLONG:
        return (
            f"{what}: the name or the whole path is longer than the file system allows (usually 255 bytes "
            "per name, 4096 per path); shorten the input's name or write to a shorter output path"
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"{what}; check that the output folder is writable"
    if code == errno.EROFS:
        return f"{what}; the output folder is on a read-only file system: write somewhere else"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"{what}; a file stands where a folder is needed: move it, or write somewhere else"
    return what


def folder_write_problem(folder: str | os.PathLike[str]) -> str:
    """Why files cannot be written into ``folder`` ("" when they can), leaving no trace: a temp file of
    this module's naming is made and removed in the folder, or where it does not exist yet in the
    nearest folder above it that does (where it would be created). For a check before any work, so
    that a read-only or unwritable output folder is reported once, not after every image was
    translated. A full disk is not refused here (the batch stops on it, and it may have room for a
    few files)."""
    probe = Path(os.path.abspath(folder))
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        return f"{str(probe)!r} is a link to {os.readlink(probe)!r}, which does not exist; create that folder or remove the link"
    try:
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=probe)
    except OSError as exc:
        if is_disk_full(exc):
            return ""
        return explain_write_error(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return ""


def is_temp_name(name: str) -> bool:
    """True for a name this module gives its temp files."""
    return _TEMP_NAME.fullmatch(name) is not None


def _mode_for_new_file() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; file systems that cannot sync a folder (some FUSE, Windows) are skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if is_disk_full(exc):
            raise
    finally:
        os.close(fd)


def _sync_fd(fd: int, target: Path, expected: int | None) -> None:
    """fsync ``fd`` and check the size on disk; ENOSPC or a short file -> DiskFullError."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(target, "the data could not be flushed to disk") from exc
        raise
    if expected is not None:
        size = os.fstat(fd).st_size
        if size != expected:
            raise disk_full_error(target, f"only {size} of {expected} bytes reached the disk")


def _place(tmp: Path, target: Path, replace: bool) -> None:
    """Give the finished temp file its name: ``os.replace``, or with ``replace`` False only where no
    file is there yet (one a concurrent run wrote since the caller looked is kept:
    :class:`OutputExistsError`). That is a hard link to the new name, which fails when the name
    exists, then the temp name removed; where the file system has no hard links, an existence check
    just before the rename (a tiny window remains there)."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except OSError:  # the name is taken, or no hard links here (EPERM, ENOTSUP, EXDEV; Windows on FAT: EINVAL)
        if os.path.exists(target):  # a file is there (a dangling link is none: it is written over, as before)
            raise OutputExistsError(
                f"{str(target)!r} appeared while this file was being made (another run writing into the same "
                "folder?); it is kept as it is (pass --overwrite to replace it)"
            ) from None
        os.replace(tmp, target)
        return
    with contextlib.suppress(OSError):  # the file is in place; a temp name left is swept later
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it is fsynced and renamed onto ``target``, else
    removed.

    ``suffix`` defaults to the target's own suffix, so writers that pick a format from the file
    name (FFmpeg, OpenCV) still see the right extension. The writer must raise on a failed write;
    ``ENOSPC`` from it, from the folder's or the temp file's creation, from the fsync or from the
    rename becomes :class:`DiskFullError`. ``replace`` False: a file that is at ``target`` by then is
    kept and :class:`OutputExistsError` raised (see :func:`_place`).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=TEMP_PREFIX, suffix=suffix if suffix is not None else target.suffix, dir=target.parent
        )
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(target, exc.strerror or "") from exc
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would have.
    os.chmod(tmp_path, _mode_for_new_file())
    try:
        yield tmp_path
        if tmp_path.is_file():
            with open(tmp_path, "rb+") as fh:  # writable: Windows refuses to flush a read-only handle
                _sync_fd(fh.fileno(), target, None)
        _place(tmp_path, target, replace)
        _fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise disk_full_error(target, exc.strerror or "") from exc
        raise


class _CountingFile:
    """A binary file wrapper that counts the bytes handed to ``write`` (the size the file must have)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.written = 0

    def write(self, data: Any) -> int:
        n = self._fh.write(data)
        self.written += n if n is not None else memoryview(data).nbytes
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[IO[bytes]]:
    """Yield a binary file object writing a temp file beside ``target``; on success the data is
    flushed, fsynced, its size on disk checked against what was written, and the file renamed onto
    ``target``. For sequential writers (``torch.save(obj, fh)``, ``fh.write(...)``); a writer that
    seeks back is fine too (the size is then checked against the furthest position written)."""
    target = Path(target)
    with atomic_path(target, suffix) as tmp, open(tmp, "wb") as raw:
        counting = _CountingFile(raw)
        try:
            yield counting  # type: ignore[misc]
            raw.flush()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(target, exc.strerror or "") from exc
            raise
        end = max(raw.tell(), 0)
        expected = counting.written if counting.written == end else max(end, os.fstat(raw.fileno()).st_size)
        _sync_fd(raw.fileno(), target, expected)


def _write_all(fd: int, data: bytes | memoryview, target: Path) -> None:
    """os.write until every byte is written: a short write is continued, ENOSPC is DiskFullError."""
    view = memoryview(data).cast("B") if memoryview(data).ndim else memoryview(data)
    done = 0
    while done < len(view):
        try:
            n = os.write(fd, view[done:])
        except InterruptedError:  # pragma: no cover - PEP 475 retries, some platforms do not
            continue
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(target, f"{done} of {len(view)} bytes written") from exc
            raise
        if n <= 0:
            raise disk_full_error(target, f"the system wrote nothing after {done} of {len(view)} bytes")
        done += n


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes | bytearray | memoryview, *,
                       replace: bool = True) -> None:
    """Write ``data`` to ``target`` atomically and verified: every byte written, fsynced, the size on
    disk equal to ``len(data)``, then renamed into place. Disk full -> :class:`DiskFullError`.
    ``replace`` False: a file already at ``target`` is kept (:class:`OutputExistsError`)."""
    target = Path(target)
    expected = memoryview(data).nbytes
    with atomic_path(target, replace=replace) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0))
        try:
            _write_all(fd, data, target)
            _sync_fd(fd, target, expected)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------- stale temps


def _open_files() -> set[tuple[int, int]] | None:
    """(st_dev, st_ino) of every file a live process holds open, from /proc; None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held: set[tuple[int, int]] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at (then its files are not counted: see below)
        for fd in fds:
            with contextlib.suppress(OSError):
                st = os.stat(fd_dir / fd)
                held.add((st.st_dev, st.st_ino))
    return held


# Without /proc (macOS, Windows) a temp file is only taken as stale when it is this old.
_STALE_WITHOUT_PROC_S = 24 * 3600
# With /proc, a temp file must also be unmodified for this long: /proc shows only this PID namespace's
# processes, so a run in a container writing into the same shared folder cannot be seen holding its
# file open; a file it is still writing has a fresh mtime. (An image's temp file lives for well under
# a second; a video's or a checkpoint's is written continuously.)
_QUIET_S = 120


def remove_stale_temps(folders: Iterable[str | os.PathLike[str]], started: float, *,
                       quiet_s: float = _QUIET_S) -> list[Path]:
    """Remove temp files of this module's naming left in ``folders`` (not recursive) by a killed run.

    A temp file is removed only when it is a regular file, its mtime is before ``started`` (the
    current run's start, ``time.time()``) and at least ``quiet_s`` seconds ago (0 for a caller that
    knows every writer that could hold one has ended), and no live process holds it open (checked in /proc; where there is no /proc, only files older than a day are
    removed). Returns the paths removed; files that cannot be removed are left alone silently (they
    are someone else's).
    """
    candidates: list[tuple[Path, os.stat_result]] = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not is_temp_name(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime < started:
                candidates.append((Path(entry.path), st))
    if not candidates:
        return []
    held = _open_files()
    removed: list[Path] = []
    now = time.time()
    for path, st in candidates:
        if now - st.st_mtime < (_STALE_WITHOUT_PROC_S if held is None else quiet_s):
            continue
        if held is not None and (st.st_dev, st.st_ino) in held:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
