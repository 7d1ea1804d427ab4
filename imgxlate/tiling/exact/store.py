"""Where the exact tiler keeps whole maps between passes: :class:`MapStore`.

float32 in RAM (exact), float16 in RAM (half the memory) or float16 spilled to an unlinked temporary
file (``spill_dir``, :class:`_SpillMap`): tiles reach the file through one band of map rows in RAM
per map (a row of tiles shares its rows), written with one ``pwrite`` when the row of tiles is done
(:meth:`MapStore.release`) and read with one ``pread`` per row, so the file's pages never count in
the process's resident memory and no page is faulted in tile by tile.

The ``pwrite`` of a finished row runs on one background thread while the next row of tiles is
computed: a 96 MP image writes ~46 GB of maps, more than the kernel keeps dirty, so the writes are
throttled to the disk's speed, and that wait now overlaps the work instead of stopping it. A row's
buffers are handed out again only after its write is done (the next :meth:`MapStore.release` waits
for it), a map's rows are read only after its writes are done, and a write error (a full disk) is
raised from the next release, read or close.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from imgxlate.errors import DiskFullError
from imgxlate.tiling.exact.graph import Region


class MapStore:
    """Stored maps: ``dtype`` float32 or float16; ``spill_dir`` puts them in files instead of RAM.

    In RAM, a dropped map's buffer is kept for the next map of the same byte size (the residual
    blocks' maps all are): first writes to fresh pages cost a page fault per 4 KiB, which measured
    3.6 s of a 12 MP run's 22 s. A create that finds no buffer of its size frees the kept ones
    first, so the peak is never above what fresh buffers would reach."""

    def __init__(self, dtype: str = "float32", spill_dir: str | os.PathLike[str] | None = None) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"store dtype must be float32 or float16, got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.spill_dir = spill_dir
        # Maps in RAM by name; a spilled map is named here too (its value is None: read through the
        # store) so that ``name in store.maps`` means "created".
        self.maps: dict[str, np.ndarray | None] = {}
        self._spilled: dict[str, _SpillMap] = {}
        self._bands = _BandPool()
        self._files = _SpillFiles(spill_dir) if spill_dir is not None else None
        self._free: list[np.ndarray] = []  # dropped RAM buffers (flat), kept for reuse
        # The thread that writes finished rows of spilled maps (started with the first spilled map).
        self._writer: ThreadPoolExecutor | None = None

    @classmethod
    def for_choice(cls, kind: str) -> MapStore:
        """The store for a :class:`imgxlate.tiling.auto.TilingChoice` ``store``: "float32",
        "float16" or "spill" (float16 in an unlinked file in the temporary folder: half the disk
        traffic of float32, and the same precision as the float16 RAM store)."""
        if kind == "spill":
            return cls("float16", spill_dir=spill_directory())
        return cls(kind)

    def create(self, name: str, shape: tuple[int, ...]) -> None:
        if self.spill_dir is None:
            count = int(np.prod(shape))
            buf = next((b for b in self._free if b.size == count), None)
            if buf is None:
                self._free.clear()
                buf = _fresh(count, self.dtype)
            else:
                self._free.remove(buf)
            self.maps[name] = buf.reshape(shape)
            return
        assert self._files is not None
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="imgxlate-spill")
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self._spilled[name] = _SpillMap(shape, self.dtype, self.spill_dir, self._bands, self._files.take(nbytes))
        self.maps[name] = None

    def read(self, name: str, region: Region) -> np.ndarray:
        spilled = self._spilled.get(name)
        if spilled is not None:
            return spilled.read(region)
        y0, y1, x0, x1 = region
        return self.maps[name][:, :, y0:y1, x0:x1]  # type: ignore[index]

    def write(self, name: str, region: Region, value: np.ndarray) -> None:
        spilled = self._spilled.get(name)
        if spilled is not None:
            spilled.write(region, value)
            return
        y0, y1, x0, x1 = region
        self.maps[name][:, :, y0:y1, x0:x1] = value  # type: ignore[index]

    def release(self) -> None:
        """After a row of tiles: spilled rows go to their files (written in the background while the
        next row is computed) and the row buffers back to the pool (the next row reuses them: no fresh
        pages to fault in), those being written once their write is done."""
        self.sync()  # the previous row's writes: their buffers are handed out again below
        writing = [buf for spilled in self._spilled.values() if (buf := spilled.flush(self._writer)) is not None]
        self._bands.recycle(held=writing)

    def sync(self) -> None:
        """Wait for every background write; raise the first one's error (a full disk)."""
        for spilled in self._spilled.values():
            spilled.wait()

    def drop(self, name: str) -> None:
        arr = self.maps.pop(name, None)
        spilled = self._spilled.pop(name, None)
        if spilled is not None:
            assert self._files is not None
            spilled.wait()  # its file may be reused for the next map
            self._files.give(spilled.n * spilled.h * spilled.row_bytes, spilled.close())
        elif arr is not None:
            self._free.append(arr.reshape(-1))

    def close(self) -> None:
        """Wait for the background writes, then free everything; a write's error is raised after."""
        error: BaseException | None = None
        for spilled in self._spilled.values():
            while spilled.pending:
                try:
                    spilled.wait()
                except Exception as exc:  # noqa: BLE001 - raised below, once everything is freed
                    error = error or exc
        for name in list(self.maps):
            self.drop(name)
        self._free.clear()
        self._bands.clear()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._files is not None:
            self._files.close()
        if error is not None:
            raise error


# Buffers from this size up come straight from the kernel in 4 KiB pages (see _fresh).
_SMALL_PAGES_FROM = 4 << 20
# madvise(MADV_POPULATE_WRITE): fault every page in now, writable (Linux 5.14; Python names it only
# from 3.13 on, its value is 23 in the kernel's mman-common.h)
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


def _fresh(count: int, dtype: np.dtype) -> np.ndarray:
    """A new map buffer of ``count`` elements. On Linux a large one is an anonymous mapping without
    numpy's transparent-huge-page advice: where memory is fragmented (a page cache full of files, the
    usual state) the kernel compacts memory to fault in each huge page, and a 12 MP image's fresh map
    buffers (~1 GB) took 1.5 s to fault in that way against 0.5 s in 4 KiB pages; the run, 3 rounds
    alternating: 20.5 / 20.6 / 20.5 s -> 19.8 / 20.3 / 20.2 s.

    Its pages are then populated by the kernel in one call (every page of a map is written anyway).
    Faulted in one at a time as tiles are written from Python, they cost 12.8 us a page on the
    sixteenth session's VM: a 101x101x128 float16 tile written into fresh pages took 8.2 ms, into
    touched ones 0.47 ms (docs/benchmarks.md, "Map pages populated at creation"). Kernels before 5.14
    do not know the advice; there the pages fault in as before. The mapping is unmapped when the
    array goes."""
    nbytes = count * dtype.itemsize
    if nbytes < _SMALL_PAGES_FROM or not sys.platform.startswith("linux"):
        return np.empty(count, dtype)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # also where THP is "always" (no advice needed for huge pages)
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    with contextlib.suppress(OSError):  # EINVAL before Linux 5.14
        mapping.madvise(_MADV_POPULATE_WRITE)  # after the advice above: populated in 4 KiB pages
    return np.frombuffer(mapping, dtype, count)


# Positional I/O. Linux and macOS have pwrite/preadv (macOS's preadv from Python 3.11 on); Windows
# and older macOS Pythons have neither, and there a seek and a read or write under one lock does the
# same (each spilled map has its own file, but the background writer and the reader share this lock).
_SEEK_LOCK = threading.Lock()
_CHUNK = 1 << 30  # Windows' read and write take at most INT_MAX bytes at a time


def write_at(fd: int, view: memoryview, offset: int) -> None:
    """All of the bytes ``view`` into the file ``fd`` at ``offset``."""
    pwrite = getattr(os, "pwrite", None)
    done = 0
    while done < len(view):
        if pwrite is not None:
            done += pwrite(fd, view[done : done + _CHUNK], offset + done)
            continue
        with _SEEK_LOCK:
            os.lseek(fd, offset + done, os.SEEK_SET)
            done += os.write(fd, view[done : done + _CHUNK])


def read_at(fd: int, view: memoryview, offset: int) -> None:
    """Fill the writable bytes ``view`` from the file ``fd`` at ``offset``; bytes past the end of the
    file (rows never written) read as zeros, as in a hole."""
    preadv = getattr(os, "preadv", None)
    done = 0
    while done < len(view):
        if preadv is not None:
            got = preadv(fd, [view[done : done + _CHUNK]], offset + done)
        else:
            with _SEEK_LOCK:
                os.lseek(fd, offset + done, os.SEEK_SET)
                data = os.read(fd, min(len(view) - done, _CHUNK))
            got = len(data)
            view[done : done + got] = data
        if got <= 0:
            view[done:] = bytes(len(view) - done)
            return
        done += got


SPILL_ENV = "IMGXLATE_SPILL_DIR"
_IN_MEMORY = frozenset({"tmpfs", "ramfs"})


def spill_directory() -> str:
    """Where spilled maps go: ``$IMGXLATE_SPILL_DIR``; else the temporary folder, unless it lives in
    memory (``/tmp`` is a tmpfs on many Linux desktops: maps spilled there would fill RAM after all,
    only outside the process), then the user cache folder (``~/.cache/imgxlate/spill`` on Linux)
    where that one is on a disk."""
    chosen = os.environ.get(SPILL_ENV)
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        return chosen
    temp = tempfile.gettempdir()
    if filesystem_type(temp) not in _IN_MEMORY:
        return temp
    import platformdirs

    cache = os.path.join(platformdirs.user_cache_dir("imgxlate"), "spill")
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        return temp
    return cache if filesystem_type(cache) not in _IN_MEMORY else temp


def filesystem_type(path: str) -> str:
    """The type of the file system ``path`` is on (``ext4``, ``tmpfs``, ...), from ``/proc/self/mounts``
    (Linux); "" where that cannot be read."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return ""
    real = os.path.realpath(path)
    best, kind = "", ""
    for point, fstype in mounts:
        point = point.replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    return kind


class _BandPool:
    """Row buffers of spilled maps, handed out during a row of tiles and taken back together after
    it (:meth:`recycle`), when no view of them is alive any more; only buffers of the sizes the last
    row used are kept."""

    def __init__(self) -> None:
        self.free: dict[tuple[int, ...], list[np.ndarray]] = {}
        self.lent: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        key = (*shape, dtype.num)
        stack = self.free.get(key)
        buf = stack.pop() if stack else np.empty(shape, dtype)
        self.lent.append(buf)
        return buf

    def recycle(self, held: Sequence[np.ndarray] = ()) -> None:
        """Take back every lent buffer but those ``held`` (still being written: they stay lent until
        the next recycle)."""
        busy = {id(buf) for buf in held}
        free: dict[tuple[int, ...], list[np.ndarray]] = {}
        kept = []
        for buf in self.lent:
            if id(buf) in busy:
                kept.append(buf)
            else:
                free.setdefault((*buf.shape, buf.dtype.num), []).append(buf)
        self.free, self.lent = free, kept

    def clear(self) -> None:
        self.free, self.lent = {}, []


class _SpillMap:
    """One map of shape (N, C, H, W) in an unlinked temporary file, laid out (N, H, C, W): the rows of
    a row of tiles are one contiguous stretch of the file for all channels.

    Writes go into a RAM band of rows (the rows of the tile being written; the tiles of one row of
    tiles share them) and reach the file in one ``pwrite`` per image when the band is flushed. Reads
    fill a RAM band of the rows asked for with one ``pread`` and slice it; the next tile of the row
    asks for the same rows and reads nothing. Measured at 12 MP (bundled model, 2 threads), the
    memory-mapped file this replaces spent 5.9 s in tile writes (page faults after every row) of a
    29 s run; a float16 RAM store 1.0 s."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, spill_dir: str | os.PathLike[str],
                 bands: _BandPool, file: Any) -> None:
        self.n, self.c, self.h, self.w = shape
        self.dtype, self.dir, self.bands = dtype, os.fspath(spill_dir), bands
        self.row_bytes = self.c * self.w * dtype.itemsize
        self.file = file
        self.fd = file.fileno()
        # The band being written: rows [y0, y1), buffer (N, rows, C, W), column ranges written.
        self.wband: tuple[int, int, np.ndarray, list[tuple[int, int]]] | None = None
        self.rband: tuple[int, int, np.ndarray] | None = None  # the band last read
        self.pending: list[Future[None]] = []  # background writes of this map, in order

    def write(self, region: Region, value: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        band = self.wband
        if band is None or band[:2] != (y0, y1):
            self.flush()
            band = (y0, y1, self.bands.take((self.n, y1 - y0, self.c, self.w), self.dtype), [])
            self.wband = band
        band[2][:, :, :, x0:x1] = value.transpose(0, 2, 1, 3)
        band[3].append((x0, x1))
        if self.rband is not None and self.rband[0] < y1 and y0 < self.rband[1]:
            self.rband = None  # those rows changed

    def flush(self, writer: ThreadPoolExecutor | None = None) -> np.ndarray | None:
        """The band being written, to the file (columns no tile wrote keep the file's values); on
        ``writer``'s thread when given (then the band's buffer is returned: it is in use until
        :meth:`wait`), else now."""
        if self.wband is None:
            return None
        y0, _, buf, written = self.wband
        self.wband = None
        if _uncovered(written, self.w):
            old = np.empty_like(buf)
            self._pread(old, y0)
            keep = np.ones(self.w, bool)
            for x0, x1 in written:
                keep[x0:x1] = False
            buf[:, :, :, keep] = old[:, :, :, keep]
        if writer is None:
            self.wait()  # earlier background writes of these rows must not land after this one
            self._pwrite(buf, y0)
            return None
        self.pending.append(writer.submit(self._pwrite, buf, y0))
        return buf

    def wait(self) -> None:
        """Wait for this map's background writes; raise the first one's error."""
        while self.pending:
            future = self.pending[0]
            try:
                future.result()
            finally:
                # a write that ended (well or with an error, raised once) is forgotten; one a Ctrl-C
                # interrupted the wait for is still running: it stays, so close() waits for it
                # before the file is closed (its descriptor could otherwise be reused mid-write)
                if future.done():
                    self.pending.pop(0)

    def _pwrite(self, buf: np.ndarray, y0: int) -> None:
        for i in range(self.n):
            try:
                write_at(self.fd, memoryview(buf[i]).cast("B"), (i * self.h + y0) * self.row_bytes)
            except OSError as exc:
                raise self._disk_error(exc) from exc

    def read(self, region: Region) -> np.ndarray:
        """(N, C, rows, columns) of ``region``: a view of the row band (valid until the store's
        next :meth:`MapStore.release`)."""
        y0, y1, x0, x1 = region
        if self.wband is not None and self.wband[0] < y1 and y0 < self.wband[1]:
            self.flush()
        band = self.rband
        if band is None or not (band[0] <= y0 and y1 <= band[1]):
            buf = self.bands.take((self.n, y1 - y0, self.c, self.w), self.dtype)
            self._pread(buf, y0)
            band = self.rband = (y0, y1, buf)
        return band[2][:, y0 - band[0] : y1 - band[0], :, x0:x1].transpose(0, 2, 1, 3)

    def _pread(self, buf: np.ndarray, y0: int) -> None:
        self.wait()  # rows still being written are read once they are in the file
        for i in range(self.n):
            read_at(self.fd, memoryview(buf[i]).cast("B"), (i * self.h + y0) * self.row_bytes)

    def _disk_error(self, exc: OSError) -> OSError:
        from imgxlate._atomic import is_disk_full

        if not is_disk_full(exc):
            return exc
        return DiskFullError(
            f"disk full in {self.dir!r} while keeping the exact tiler's maps there (a large image "
            f"runs with its maps in a temporary file); free some space there, point {SPILL_ENV} at a "
            "folder with room, or allow more memory with --max-memory"
        )

    def close(self) -> Any:
        """Forget the map; hand back its file (for :class:`_SpillFiles` to reuse)."""
        self.wband = self.rband = None
        return self.file


class _SpillFiles:
    """Unlinked temporary files for spilled maps, a dropped map's file kept for the next map of the same
    byte size (the residual blocks' maps all are). Measured with ``pwrite`` of 48 MB on this VM's
    ext4: 0.40 GB/s into a file already truncated to its size (filling holes), 4.8 GB/s appending to
    a new file, 8.6 GB/s over pages of a file written before (still in the page cache). So files are
    never truncated, rows of tiles arrive in order (appends), and files are reused."""

    def __init__(self, spill_dir: str | os.PathLike[str]) -> None:
        self.dir = os.fspath(spill_dir)
        self.free: dict[int, list[Any]] = {}

    def take(self, nbytes: int) -> Any:
        stack = self.free.get(nbytes)
        if stack:
            return stack.pop()
        return tempfile.TemporaryFile(dir=self.dir, prefix="imgxlate-map-")

    def give(self, nbytes: int, file: Any) -> None:
        self.free.setdefault(nbytes, []).append(file)

    def close(self) -> None:
        for stack in self.free.values():
            for file in stack:
                file.close()
        self.free = {}


def _uncovered(ranges: list[tuple[int, int]], width: int) -> bool:
    """Do the column ranges leave any of [0, width) out?"""
    end = 0
    for x0, x1 in sorted(ranges):
        if x0 > end:
            return True
        end = max(end, x1)
    return end < width
